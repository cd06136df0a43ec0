"""The reconciler: makes the running proxies match the stored channels.

Every ``[controller] reconcile_interval`` seconds (more often while a
proxy is starting) it starts the proxy of every stored channel that has
none running (a new channel, a proxy that died), restarts a proxy whose
config file is not the one its channel gives or that has not answered
its liveness check (calipso_proxy/proxy/liveness.py: answered by the proxy's
master, whatever its load) for ``proxy_start_timeout`` seconds, marks a channel
running (with its URL) once its proxy answers, and stops the proxies of
channels no longer stored. Proxies found running when it starts (a
restarted controller) are adopted: kept while they answer. A proxy that
keeps exiting, or never answers, before its first answer is started again
after a growing delay (``proxy_restart_backoff_initial``, doubled each
time up to ``proxy_restart_backoff_max``), not on every pass.

It runs as a thread of calipso-proxy-controller's main process, the
gunicorn arbiter, which forks the API workers: the thread is not copied
into them, so one reconciler runs whatever the number of workers, and it
dies with the controller.
"""

import logging
import threading
import time

import requests

from calipso_agent import metrics
from calipso_agent import storage as storage_mod
from calipso_proxy.controller import channels as channels_mod
from calipso_proxy.proxy import healthcheck, liveness

LOG = logging.getLogger(__name__)

STARTING_INTERVAL = 0.5


class Reconciler:
    """``connect()`` returns a new store connection, closed after each
    pass, so none stays open in the process gunicorn forks."""

    def __init__(self, conf, launcher, connect=None, lock=None,
                 clock=time.monotonic):
        self.conf = conf
        self.launcher = launcher
        self.connect = connect or (
            lambda: storage_mod.get_connection(conf))
        self.lock = lock or channels_mod.ControllerLock(conf)
        self.clock = clock
        self.http = requests.Session()
        self.http.trust_env = False
        # channel id -> (pid, clock of its start, adoption or last
        # healthcheck answer)
        self._seen = {}
        # channel id -> (starts since its proxy last answered, clock of
        # the last one, the configuration they were given)
        self._attempts = {}
        self._stop = threading.Event()
        self._thread = None
        self.starting = False

    def healthy(self, channel):
        """Whether the proxy of ``channel`` is alive: its master's
        liveness socket (answered whatever the load), else, for a proxy
        without one, its /healthcheck, answered by that proxy (the name
        in its healthcheck.IDENTITY_HEADER): another program on the port
        is no proxy of the channel."""
        timeout = self.conf.controller.proxy_healthcheck_timeout
        name = channels_mod.liveness_socket(channel['id'])
        if liveness.check(name, timeout):
            return True
        port = channel['port']
        try:
            answer = self.http.get(
                channels_mod.healthcheck_url(self.conf, port),
                timeout=self.conf.controller.proxy_healthcheck_timeout)
        except requests.RequestException:
            return False
        return (answer.status_code == 200 and answer.headers.get(
            healthcheck.IDENTITY_HEADER) == name)

    def run_once(self):
        """One reconciliation; whether a proxy is still starting."""
        store = self.connect()
        try:
            service = channels_mod.ChannelService(
                self.conf, self.launcher, lambda: store, self.lock)
            return self._reconcile(service)
        finally:
            store.close()

    def _reconcile(self, service):
        stored = {c['id']: c for c in service.list()}
        running = self.launcher.running()
        for channel_id in sorted(running.keys() - stored.keys()):
            service.stop_orphan(channel_id)
            self._seen.pop(channel_id, None)
        for known in (self._seen, self._attempts):
            for channel_id in list(known):
                if channel_id not in stored:
                    del known[channel_id]
        starting = False
        for channel_id, channel in stored.items():
            try:
                if not self._channel(service, channel,
                                     running.get(channel_id)):
                    starting = True
            except Exception:
                LOG.exception('Reconciling channel %s failed', channel_id)
                starting = True
        return starting

    def _started(self, channel, info):
        channel_id, now = channel['id'], self.clock()
        if info is not None:
            self._seen[channel_id] = (info['pid'], now)
        attempts, _, _ = self._attempts.get(channel_id, (0, None, None))
        self._attempts[channel_id] = (
            attempts + 1, now, channels_mod.render_config(self.conf,
                                                          channel))

    def _may_start(self, channel):
        """Whether the backoff of a proxy that has not answered since its
        last start(s) is over; a new configuration (an updated channel)
        starts at once."""
        channel_id = channel['id']
        attempts, last, config = self._attempts.get(channel_id,
                                                    (0, None, None))
        if not attempts or config != channels_mod.render_config(self.conf,
                                                               channel):
            return True
        controller = self.conf.controller
        delay = min(controller.proxy_restart_backoff_initial
                    * 2 ** (attempts - 1),
                    controller.proxy_restart_backoff_max)
        if self.clock() - last >= delay:
            LOG.warning('Proxy of channel %s has not answered since its '
                        'last %d start(s); starting it again after %.1fs',
                        channel_id, attempts, delay)
            return True
        return False

    def _channel(self, service, channel, info):
        """Reconcile one channel; whether its proxy answers."""
        channel_id = channel['id']
        if info is None:
            if not self._may_start(channel):
                return False
            reason = ('its proxy is no longer running'
                      if channel_id in self._seen else 'no proxy running')
            if channel_id in self._seen:
                metrics.proxy_restarted(channel_id, 'exited' if channel.get(
                    'state') == channels_mod.RUNNING else 'not_running')
            self._started(channel, service.start_proxy(channel_id, reason))
            return False
        if (channels_mod.read_config(self.conf, channel_id) !=
                channels_mod.render_config(self.conf, channel)):
            metrics.proxy_restarted(channel_id, 'config_changed')
            self._started(channel, service.restart_proxy(
                channel_id, 'its configuration changed'))
            return False
        now = self.clock()
        pid, since = self._seen.get(channel_id, (None, None))
        if pid != info['pid']:
            LOG.info('Proxy of channel %s (pid %s) found running',
                     channel_id, info['pid'])
            pid, since = info['pid'], now
        if self.healthy(channel):
            self._seen[channel_id] = (pid, now)
            self._attempts.pop(channel_id, None)
            if (channel.get('state') != channels_mod.RUNNING or
                    channel.get('proxy_url') != channels_mod.proxy_url(
                        self.conf, channel['port'])):
                service.mark_running(channel_id)
            return True
        self._seen[channel_id] = (pid, since)
        timeout = self.conf.controller.proxy_start_timeout
        if now - since > timeout and self._may_start(channel):
            metrics.proxy_restarted(channel_id, 'unresponsive')
            self._started(channel, service.restart_proxy(
                channel_id, f'no healthcheck answer for {timeout}s'))
        return False

    def _run(self):
        interval = self.conf.controller.reconcile_interval
        while not self._stop.is_set():
            try:
                self.starting = self.run_once()
            except Exception:
                LOG.exception('Reconciliation failed; retrying in %ss',
                              interval)
                self.starting = False
            self._stop.wait(min(interval, STARTING_INTERVAL)
                            if self.starting else interval)

    def start(self):
        """Run in a daemon thread until ``stop()``."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='calipso-reconciler')
        self._thread.start()
        LOG.info('Reconciler started (every %ss)',
                 self.conf.controller.reconcile_interval)

    def stop(self, timeout=None):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
