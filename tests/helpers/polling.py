"""The polling agent in tests: plugins that make observable samples, and
the agent as a process of its own.

The plugins are registered for the agent's processes by a distribution
written in a directory put on their PYTHONPATH (``plugin_path``); the
in-process tests hand them to ``PollingManager`` directly.
"""

import os
import signal
import subprocess
import sys
import threading
import urllib.parse

import yaml

from calipso_agent import sample as sample_mod
from calipso_agent.pipeline import MeterSelector, Pipeline, Sink, Source
from calipso_agent.pollsters import base
from calipso_agent.publisher import base as publisher_base
from tests.helpers.basics import REPO, read_jsonl, wait_until
from tests.helpers.daemons import AgentProcess

PLUGINS = {
    'calipso.poll': {
        'test.probe': 'tests.helpers.polling:ProbePollster',
        'test.broken': 'tests.helpers.polling:BrokenPollster',
        'test.hang': 'tests.helpers.polling:HangingPollster',
    },
    'calipso.discover': {
        'synthetic': 'tests.helpers.polling:SyntheticDiscovery',
    },
}


class SyntheticDiscovery(base.Discovery):
    """``synthetic://N``: the resources synthetic-0 .. synthetic-(N-1)
    (10 without N)."""

    def discover(self, context, param=None):
        return [f'synthetic-{i}' for i in range(int(param or 10))]


class ProbePollster(base.Pollster):
    """One sample per resource; the volume is the polling process id."""

    default_discovery = 'synthetic'

    def get_samples(self, context, cache, resources):
        for resource in resources:
            yield self.make_sample(context, resource, os.getpid(),
                                   metadata={'agent': os.getpid()})


class BrokenPollster(ProbePollster):
    def get_samples(self, context, cache, resources):
        raise RuntimeError('broken on purpose')


class HangingPollster(ProbePollster):
    """Hangs until ``release`` is set (an hour in an agent process)."""

    release = threading.Event()

    def get_samples(self, context, cache, resources):
        self.release.wait(3600)
        return []


def plugin_path(directory):
    """A directory holding a distribution that registers PLUGINS, for
    the PYTHONPATH of an agent process."""
    info = os.path.join(str(directory), 'calipso_test_plugins-1.0.dist-info')
    os.makedirs(info, exist_ok=True)
    with open(os.path.join(info, 'METADATA'), 'w') as handle:
        handle.write('Metadata-Version: 2.1\nName: calipso-test-plugins\n'
                     'Version: 1.0\n')
    with open(os.path.join(info, 'entry_points.txt'), 'w') as handle:
        for namespace, entries in PLUGINS.items():
            handle.write(f'[{namespace}]\n')
            for name, target in entries.items():
                handle.write(f'{name} = {target}\n')
            handle.write('\n')
    return str(directory)


def write_polling(path, sources):
    """Write a polling.yaml of ``sources`` (dicts) atomically."""
    temporary = f'{path}.tmp'
    with open(temporary, 'w') as handle:
        yaml.safe_dump({'sources': sources}, handle)
    os.replace(temporary, path)


class PollingAgentProcess(AgentProcess):
    """calipso-agent-polling in its own session, publishing to the JSON
    lines file ``samples_path`` (or the ``publishers`` given), polling
    ``sources``, with the test plugins registered."""

    READY = 'Polling agent'
    MODULE = 'calipso_agent.cmd.agent_polling'

    def __init__(self, workdir, sources, publishers=None, host='testhost',
                 extra_polling='', extra_config=''):
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.config_file = os.path.join(self.workdir, 'calipso.conf')
        self.pipeline_file = os.path.join(self.workdir, 'pipeline.yaml')
        self.polling_file = os.path.join(self.workdir, 'polling.yaml')
        self.samples_path = os.path.join(self.workdir, 'samples.jsonl')
        self.stderr_path = os.path.join(self.workdir, 'agent.stderr.log')
        self.stdout_path = os.path.join(self.workdir, 'agent.stdout.log')
        self.plugins = plugin_path(os.path.join(self.workdir, 'plugins'))
        with open(self.pipeline_file, 'w') as handle:
            yaml.safe_dump({
                'sources': [{'name': 'all', 'meters': ['*'],
                             'sinks': ['out']}],
                'sinks': [{'name': 'out', 'publishers': publishers or [
                    f'file://{self.samples_path}']}]}, handle)
        write_polling(self.polling_file, sources)
        with open(self.config_file, 'w') as handle:
            handle.write(
                f'[DEFAULT]\nuse_stderr = true\nhost = {host}\n'
                f'graceful_shutdown_timeout = 10\n{extra_config}\n'
                f'[notification]\npipeline_cfg_file = {self.pipeline_file}\n'
                f'[polling]\ncfg_file = {self.polling_file}\n'
                f'{extra_polling}\n')
        self.process = None
        self._log_offset = 0

    def start(self, wait_ready=True, timeout=30):
        assert self.process is None or self.process.poll() is not None
        self._log_offset = (os.path.getsize(self.stderr_path)
                            if os.path.exists(self.stderr_path) else 0)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [REPO, self.plugins] + [p for p in os.environ.get(
                'PYTHONPATH', '').split(os.pathsep) if p]))
        with open(self.stderr_path, 'ab') as err, \
                open(self.stdout_path, 'ab') as out:
            self.process = subprocess.Popen(
                [sys.executable, '-m', self.MODULE,
                 '--config-file', self.config_file],
                cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                start_new_session=True, env=env)
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def hangup(self):
        """SIGHUP to the master (it passes it to its workers)."""
        os.kill(self.process.pid, signal.SIGHUP)

    def samples(self):
        return read_jsonl(self.samples_path)


def by_timestamp(samples, meter=None):
    """{timestamp: [sample dicts]} of ``samples`` (of ``meter``)."""
    cycles = {}
    for item in samples:
        if meter is None or item['name'] == meter:
            cycles.setdefault(item['timestamp'], []).append(item)
    return cycles


def wait_for_cycles(agent, count, meter=None, timeout=60, after=None):
    """The sorted timestamps of the first ``count`` cycles (after the
    timestamp ``after``) the agent published, once there are that many."""
    def cycles():
        stamps = sorted(t for t in by_timestamp(agent.samples(), meter)
                        if after is None or t > after)
        return stamps[:count] if len(stamps) >= count else None
    found = wait_until(cycles, timeout, interval=0.2)
    assert found, (f'{count} cycles of {meter} not published within '
                   f'{timeout}s; log:\n{agent.log()[-3000:]}')
    return found


class RecordingPublisher(publisher_base.Publisher):
    """Keeps what it accepts by sample id (as a store would) and every
    call; ``fail_next`` calls raise ``PublisherError``, each after handing
    the first half of its samples over (a receiver that took part of the
    batch before failing)."""

    def __init__(self, fail_next=0):
        super().__init__(None, urllib.parse.urlparse('recording://'))
        self.kept = {}
        self.calls = []
        self.fail_next = fail_next
        self.lock = threading.Lock()

    def publish_samples(self, samples):
        with self.lock:
            self.calls.append(len(samples))
            if self.fail_next:
                self.fail_next -= 1
                for item in samples[:len(samples) // 2]:
                    self.kept.setdefault(item.id, []).append(item)
                raise publisher_base.PublisherError('receiver away')
            for item in samples:
                self.kept.setdefault(item.id, []).append(item)


def recording_pipeline(publisher):
    """A Pipeline sending every sample to ``publisher``."""
    sink = Sink('recording', [publisher])
    return Pipeline([Source('all', MeterSelector(['*']), [sink])], [sink])


def make_polled(meter, resource, timestamp, volume=1):
    return sample_mod.Sample(
        name=meter, type=sample_mod.TYPE_GAUGE, unit='x', volume=volume,
        user_id=None, project_id=None, resource_id=resource,
        timestamp=timestamp,
        id=base.polled_sample_id(meter, resource, timestamp))
