"""The polling agent: sources polled on their intervals, samples published.

Each source of polling.yaml (with the store's overrides applied) has a
``runner.SourceRunner`` polling it on its ticks; their samples go to the
``outbox.Outbox``, which hands them to the pipeline.yaml publishers and
retries until they accept them. A watchdog thread gives up the pollster
steps that run past ``[polling] pollster_timeout`` (``supervised``).

The ``PollingManager``'s control loop, every ``[polling]
cfg_check_interval`` seconds and on SIGHUP, reloads polling.yaml when its
modification time or size changed (an unusable file is reported and the
previous definition keeps running), reads the store's overrides
(``get_polling_overrides``, when the driver has it) and starts, updates
or stops the runners accordingly. A runner also reads the overrides at
each cycle (at most once a second for all runners), so an override is
applied at the next cycle of its source.
"""

import importlib.metadata
import logging
import os
import threading
import time

import cotyledon
from stevedore import extension

from calipso_agent import delivery, storage
from calipso_agent import pipeline as pipeline_mod
from calipso_agent.pollsters import (
    base,
    outbox,
    partitioning,
    sources,
    supervised,
)
from calipso_agent.pollsters import runner as runner_mod

LOG = logging.getLogger(__name__)

# Least seconds between two reads of the overrides in the store.
OVERRIDES_MAX_AGE = 1.0
# Seconds the outbox may take at stop to hand over what waits.
STOP_DRAIN = 10.0


def config_path(conf, path):
    return conf.find_file(path) or path


def polling_path(conf):
    return config_path(conf, conf.polling.cfg_file)


def pipeline_path(conf):
    return config_path(conf, conf.notification.pipeline_cfg_file)


def _load_failed(manager, entry_point, exc):
    LOG.error('Polling plugin %s (%s) not loaded: %s', entry_point.name,
              entry_point.value, delivery.one_line(exc))


def pollster_namespaces():
    """``calipso.poll`` and every installed ``calipso.poll.<family>``
    namespace (a namespace cannot hold two plugins of one name: the
    pollsters of one meter told apart by their discovery, as the host's
    and the instances' ``cpu``, are in namespaces of their own)."""
    groups = importlib.metadata.entry_points().groups
    return [base.POLL_NAMESPACE] + sorted(
        group for group in groups
        if group.startswith(base.POLL_NAMESPACE + '.'))


def load_pollsters(conf):
    """Every pollster plugin, its ``meter`` set to its name."""
    pollsters = []
    for namespace in pollster_namespaces():
        manager = extension.ExtensionManager(
            namespace, invoke_on_load=True, invoke_args=(conf,),
            on_load_failure_callback=_load_failed)
        for ext in manager:
            ext.obj.meter = ext.name
            pollsters.append(ext.obj)
    return pollsters


def load_discoveries(conf):
    """{name: plugin} of the ``calipso.discover`` namespace."""
    manager = extension.ExtensionManager(
        base.DISCOVER_NAMESPACE, invoke_on_load=True, invoke_args=(conf,),
        on_load_failure_callback=_load_failed)
    return {ext.name: ext.obj for ext in manager}


class PollingManager:
    """polling.yaml, the overrides, the runners, the outbox."""

    def __init__(self, conf, pipeline=None, store=None, partitioner=None,
                 pollsters=None, discoveries=None):
        self.conf = conf
        self.host = base.host_name(conf)
        self.path = polling_path(conf)
        self.pipeline = pipeline
        self.store = store
        self.partitioner = partitioner
        self.pollsters = (pollsters if pollsters is not None
                          else load_pollsters(conf))
        self.discoveries = (discoveries if discoveries is not None
                            else load_discoveries(conf))
        self.outbox = None
        self.file_definition = sources.PollingDefinition([])
        self.file_stamp = None
        self.overrides = {}
        self._overrides_read = None
        self._overrides_missing_logged = False
        self._overrides_failing = False
        self._overrides_lock = threading.Lock()
        self._bad_overrides = {}
        self.runners = {}
        self._reload = threading.Event()
        self._stopping = threading.Event()
        self._control = None
        self._watchdog = None

    # The definition.

    def _stamp(self):
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    def load_file(self):
        """Read polling.yaml; True when its definition is now in use. An
        unusable file is logged and the previous definition kept."""
        stamp = self._stamp()
        try:
            definition = sources.load_file(self.path)
        except sources.PollingFileError as exc:
            self.file_stamp = stamp
            LOG.error('Polling file refused, the previous definition (%s) '
                      'keeps running: %s',
                      ', '.join(self.file_definition.names()) or 'none', exc)
            return False
        self.file_stamp = stamp
        self.file_definition = definition
        LOG.info('Polling file %s: sources %s%s', self.path,
                 ', '.join(f'{s.name} (every {s.interval:g} s)'
                           for s in definition) or 'none',
                 f'; {len(definition.errors)} skipped'
                 if definition.errors else '')
        return True

    def file_changed(self):
        return self._stamp() != self.file_stamp

    def read_overrides(self, max_age=OVERRIDES_MAX_AGE):
        """The store's overrides, read at most every ``max_age`` seconds;
        the last ones known while the store fails."""
        getter = getattr(self.store, 'get_polling_overrides', None)
        if getter is None:
            if self.store is not None and not self._overrides_missing_logged:
                self._overrides_missing_logged = True
                LOG.info('The store driver keeps no polling overrides: '
                         'polling.yaml alone defines the sources')
            return self.overrides
        with self._overrides_lock:
            now = time.monotonic()
            if (self._overrides_read is not None
                    and now - self._overrides_read < max_age):
                return self.overrides
            self._overrides_read = now
            try:
                overrides = getter() or {}
            except Exception as exc:
                if not self._overrides_failing:
                    self._overrides_failing = True
                    LOG.error('Polling overrides cannot be read from the '
                              'store (%s); the last ones read stay in use',
                              delivery.one_line(exc))
                return self.overrides
            if self._overrides_failing:
                self._overrides_failing = False
                LOG.info('Polling overrides read from the store again')
            if overrides != self.overrides:
                LOG.info('Polling overrides: %s', overrides or 'none')
            self.overrides = overrides
            return overrides

    def _apply(self, definition, overrides):
        override = overrides.get(definition.name)
        fields = {f: override.get(f) for f in sources.OVERRIDE_FIELDS
                  if override.get(f) is not None} if override else None
        if not fields:
            return definition
        try:
            checked = sources.validate_override(fields)
        except sources.SourceError as exc:
            if self._bad_overrides.get(definition.name) != str(exc):
                self._bad_overrides[definition.name] = str(exc)
                LOG.error('Polling override of %s ignored: %s',
                          definition.name, exc)
            return definition
        return definition.overridden(checked)

    def effective(self, name):
        """The definition of source ``name`` with its override, now."""
        overrides = self.read_overrides()
        for definition in self.file_definition:
            if definition.name == name:
                return self._apply(definition, overrides)
        return None

    def effective_sources(self):
        overrides = self.read_overrides()
        return {d.name: self._apply(d, overrides)
                for d in self.file_definition}

    # Running.

    def reconcile(self):
        """Start, update and stop runners to match the definition."""
        wanted = self.effective_sources()
        for name in list(self.runners):
            if name not in wanted:
                runner = self.runners.pop(name)
                runner.stop()
                self.partitioner.leave(name)
                LOG.info('Polling source %s stopped', name)
        for name, definition in wanted.items():
            runner = self.runners.get(name)
            if runner is None:
                self.partitioner.join(name)
                runner = self.runners[name] = runner_mod.SourceRunner(
                    self, definition)
                runner.start()
                LOG.info('Polling source %s started: every %g s, meters %s',
                         name, definition.interval,
                         ', '.join(definition.meters))
            elif runner.definition != definition:
                runner.update(definition)

    def start(self):
        if self.pipeline is None:
            self.pipeline = pipeline_mod.Pipeline.from_file(
                self.conf, pipeline_path(self.conf))
        if self.partitioner is None:
            self.partitioner = partitioning.from_conf(self.conf)
        if self.store is None and self.conf.database.connection:
            try:
                self.store = storage.get_connection(self.conf)
            except Exception as exc:
                LOG.error('Store not opened, polling overrides unused: %s',
                          delivery.one_line(exc))
        options = self.conf.polling
        self.outbox = outbox.Outbox(
            self.pipeline.publish_samples, options.batch_size,
            options.max_pending_samples,
            (options.retry_backoff_initial, options.retry_backoff_max),
            self.conf.delivery.max_delivery_attempts)
        self.outbox.start()
        self.load_file()
        self.reconcile()
        self._control = threading.Thread(target=self._control_loop,
                                         daemon=True, name='polling-control')
        self._control.start()
        self._watchdog = supervised.Watchdog(
            min(1.0, options.pollster_timeout / 4),
            lambda: self.runners.values())
        self._watchdog.start()
        LOG.info('Polling agent %s polling %d sources', self.host,
                 len(self.runners))

    def request_reload(self):
        self._reload.set()

    def _control_loop(self):
        interval = self.conf.polling.cfg_check_interval
        while not self._stopping.is_set():
            reload = self._reload.wait(interval)
            if self._stopping.is_set():
                return
            try:
                if reload:
                    self._reload.clear()
                    LOG.info('Reload requested: reading %s', self.path)
                    self.load_file()
                elif self.file_changed():
                    LOG.info('Polling file %s changed', self.path)
                    self.load_file()
                self.read_overrides(max_age=0)
                self.reconcile()
            except Exception:
                LOG.exception('Polling control loop')

    def stop(self):
        self._stopping.set()
        self._reload.set()
        if self._watchdog is not None:
            self._watchdog.stop()
        for runner in self.runners.values():
            runner.stop()
        for runner in self.runners.values():
            runner.join(5)
        if self.outbox is not None:
            self.outbox.stop(STOP_DRAIN)
        if self.partitioner is not None:
            self.partitioner.stop()
        if self.pipeline is not None:
            self.pipeline.close()


class PollingService(cotyledon.Service):
    """The polling agent's worker (one per agent; several agents share
    the work through the coordination URL)."""

    name = 'calipso-agent-polling'

    def __init__(self, worker_id, conf):
        super().__init__(worker_id)
        self.conf = conf
        self.manager = None

    def run(self):
        self.manager = PollingManager(self.conf)
        self.manager.start()

    def reload(self):
        if self.manager is not None:
            self.manager.request_reload()

    def terminate(self):
        if self.manager is not None:
            self.manager.stop()
        super().terminate()
