"""A parsed configuration, samples, publishers, waiting, ports and files: what
most tests need."""

import json
import os
import random
import socket
import threading
import time
import urllib.parse

import requests
from oslo_config import cfg
from oslo_messaging import opts as messaging_opts
from stevedore import driver

from calipso_agent import opts
from calipso_agent import sample as sample_mod
from calipso_proxy.controller import channels

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


ETC = os.path.join(REPO, 'etc', 'calipso')


METERS_D = os.path.join(ETC, 'meters.d')


def make_conf(**overrides):
    """A parsed ConfigOpts with every calipso and oslo.messaging option;
    ``group__name=value`` or ``name=value`` (DEFAULT) keyword overrides."""
    conf = cfg.ConfigOpts()
    opts.register_opts(conf)
    for group, options in messaging_opts.list_opts():
        conf.register_opts(options, group=group)
    conf([], project='calipso', default_config_files=[])
    for key, value in overrides.items():
        group, _, name = key.rpartition('__')
        conf.set_override(name, value, group=group or None)
    return conf


def make_sample(index=0, **overrides):
    """A cpu Sample whose resource_id, message_id and volume vary with
    ``index``; keyword ``overrides`` replace any Sample field."""
    fields = dict(
        name='cpu', type=sample_mod.TYPE_CUMULATIVE, unit='ns',
        volume=float(index), user_id='user-1', project_id='project-1',
        resource_id=f'vm-{index}', timestamp='2024-05-01T12:00:00+00:00',
        resource_metadata={'flavor': {'name': 'm1.small', 'vcpus': 1}},
        message_id=f'n-{index}')
    fields.update(overrides)
    return sample_mod.Sample(**fields)


def load_publisher(conf, url):
    """The publisher of ``url`` as the pipeline gets it: the
    calipso.publisher entry point named by its scheme, made with
    (conf, parsed url)."""
    parsed = urllib.parse.urlparse(url)
    return driver.DriverManager('calipso.publisher', parsed.scheme,
                                invoke_on_load=True,
                                invoke_args=(conf, parsed)).driver


class RecordingEndpoint:
    """An oslo.messaging notification endpoint recording the ``sample``
    notifications it gets as (publisher_id, event_type, payload) in
    ``received``; ``event`` is set on each."""

    def __init__(self):
        self.received = []
        self.event = threading.Event()

    def sample(self, ctxt, publisher_id, event_type, payload, metadata):
        self.received.append((publisher_id, event_type, payload))
        self.event.set()


def wait_until(predicate, timeout, interval=0.1):
    """Poll ``predicate`` until it returns a true value (returned) or
    ``timeout`` seconds passed (its last, false, value is returned)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def read_jsonl(path, bad_lines=None):
    """The JSON lines of ``path`` ([] if it does not exist); a torn last
    line (a writer killed mid-line) is left out. Lines that are not JSON
    raise, or are appended to the ``bad_lines`` list when one is given."""
    try:
        with open(path, 'rb') as handle:
            data = handle.read()
    except FileNotFoundError:
        return []
    lines = data.split(b'\n')
    if lines and lines[-1]:
        lines = lines[:-1]
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            if bad_lines is None:
                raise
            bad_lines.append((number, line[:200]))
    return records


def count_lines(path):
    try:
        with open(path, 'rb') as handle:
            return handle.read().count(b'\n')
    except FileNotFoundError:
        return 0


def free_port(kind=socket.SOCK_STREAM):
    """A loopback port nothing listens on (right now)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def free_port_range(count):
    """The first of ``count`` consecutive loopback ports free now, out of
    the ephemeral range and in a block of 2,000 of this pytest-xdist
    worker's own: two workers' controllers started at the same time
    would otherwise take the same proxy ports."""
    worker = os.environ.get('PYTEST_XDIST_WORKER', 'gw0')
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    start = 20000 + (index % 5) * 2000
    for _ in range(200):
        first = random.randrange(start, start + 2000 - count)
        if all(channels.port_is_free('127.0.0.1', port)
               for port in range(first, first + count)):
            return first
    raise AssertionError('no free port range')


def nested_json(levels, leaf='{}'):
    """JSON text of objects nested ``levels`` deep (no encoder needed)."""
    return '{"a": ' * levels + leaf + '}' * levels


def read_metrics(url):
    """{(sample name, ((label, value), ...)): value} of a /metrics page."""
    from prometheus_client import parser
    response = requests.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers['Content-Type'].startswith('text/plain')
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in parser.text_string_to_metric_families(
                response.text)
            for sample in family.samples}


def metric(values, name, **labels):
    """The value of one sample of ``read_metrics`` (0 when absent)."""
    return values.get((name, tuple(sorted(labels.items()))), 0)
