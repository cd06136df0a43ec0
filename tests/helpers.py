"""Test helpers shared by the unit and functional suites."""

import contextlib
import copy
import datetime
import glob
import http.server
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid

import kombu
import msgpack
import requests
import yaml
from oslo_config import cfg
from oslo_messaging import opts as messaging_opts
from stevedore import driver

from calipso_agent import opts, storage
from calipso_agent import sample as sample_mod
from calipso_proxy.controller import channels
from calipso_proxy.proxy import tenant_auth

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get('CALIPSO_SHARED_DIR',
                        os.path.join(os.path.dirname(REPO), 'shared'))
FIXTURES = os.path.join(SHARED, 'fixtures')
NOTIFICATIONS = os.path.join(FIXTURES, 'notifications')
EXPECTED = os.path.join(FIXTURES, 'expected')
CEILOMETER_METERS = os.path.join(FIXTURES, 'ceilometer', 'meters.yaml')
ETC = os.path.join(REPO, 'etc', 'calipso')
METERS_D = os.path.join(ETC, 'meters.d')

# A [keystone_authtoken] service user: enough for the middleware to load
# (it contacts Keystone only to validate a token).
KEYSTONE_SERVICE_USER = (
    'auth_type = password\nauth_url = http://127.0.0.1:5000/identity\n'
    'username = calipso\npassword = secret\nproject_name = service\n'
    'user_domain_name = Default\nproject_domain_name = Default\n')

RABBIT_URL = os.environ.get('CALIPSO_TEST_RABBIT_URL',
                            'rabbit://guest:guest@127.0.0.1:5672/')


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


def fixture_names():
    return sorted(os.path.basename(p)[:-len('.json')]
                  for p in glob.glob(os.path.join(NOTIFICATIONS, '*.json')))


def load_envelope(name):
    with open(os.path.join(NOTIFICATIONS, name + '.json')) as handle:
        return json.load(handle)


def load_expected(name):
    with open(os.path.join(EXPECTED, name + '.samples.json')) as handle:
        return json.load(handle)


def _instant(value):
    ts = datetime.datetime.fromisoformat(value.replace('Z', '+00:00'))
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=datetime.UTC)
    return ts


def _json_equal(a, b):
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k])
                                            for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_json_equal, a, b))
    return a == b


def _context_fallback(ctxt, field):
    keys = {'user_id': ('user_id', 'user'),
            'project_id': ('project_id', 'tenant_id')}[field]
    for key in keys:
        if (ctxt or {}).get(key) is not None:
            return ctxt[key]
    return None


def sample_differences(got, expected, ctxt, meters=None):
    """How ``got`` differs from Ceilometer's ``expected`` samples under the
    fixtures' comparison rules (README of the fixtures); [] when equal.

    ``meters``: compare only these meter names (the ones Ceilometer ships)
    when the agent defines more.
    """
    if meters is not None:
        got = [s for s in got if s['name'] in meters]
    problems = []
    if len(got) != len(expected):
        problems.append(f'{len(got)} samples, expected {len(expected)}')
    by_key = {}
    for sample in got:
        by_key.setdefault((sample['name'], sample['resource_id']),
                          []).append(sample)
    for want in expected:
        key = (want['name'], want['resource_id'])
        if not by_key.get(key):
            problems.append(f'missing {key}')
            continue
        have = by_key[key].pop(0)
        for field in ('type', 'unit', 'source'):
            if have[field] != want[field]:
                problems.append(f'{key} {field}: {have[field]!r} != '
                                f'{want[field]!r}')
        for field in ('user_id', 'project_id'):
            wanted = want[field]
            if wanted is None:
                wanted = _context_fallback(ctxt, field)
            if have[field] != wanted:
                problems.append(f'{key} {field}: {have[field]!r} != '
                                f'{wanted!r}')
        if not math.isclose(have['volume'], want['volume'], rel_tol=1e-9,
                            abs_tol=1e-9):
            problems.append(f'{key} volume: {have["volume"]!r} != '
                            f'{want["volume"]!r}')
        if _instant(have['timestamp']) != _instant(want['timestamp']):
            problems.append(f'{key} timestamp: {have["timestamp"]} != '
                            f'{want["timestamp"]}')
        metadata = json.loads(json.dumps(have['resource_metadata'],
                                         default=str))
        if not _json_equal(metadata, want['resource_metadata']):
            problems.append(f'{key} resource_metadata: {metadata!r} != '
                            f'{want["resource_metadata"]!r}')
    return problems


# ---------------------------------------------------------------------------
# Functional helpers: the notification agent as a subprocess, RabbitMQ.
# ---------------------------------------------------------------------------


AMQP_URL = 'amqp://' + RABBIT_URL.split('://', 1)[1]
TELEMETRY_SECRET = 'functional-secret'
INSTANCE_EXISTS = 'nova_legacy__ceilometer-tests__instance_exists'
INSTANCE_METERS = ('disk.ephemeral.size', 'disk.root.size', 'memory',
                   'vcpus')


def wait_until(predicate, timeout, interval=0.1):
    """Poll ``predicate`` until it returns a true value (returned) or
    ``timeout`` seconds passed (its last, false, value is returned)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def broker_available(url=AMQP_URL, timeout=2):
    try:
        with kombu.Connection(url, connect_timeout=timeout) as conn:
            conn.connect()
            return True
    except Exception:
        return False


def unique_topic(prefix='calipso_test'):
    return f'{prefix}_{uuid.uuid4().hex}'


def topic_queues(topic, priorities=('info', 'sample', 'error')):
    """The queue names oslo.messaging uses for ``topic`` without a pool."""
    return [f'{topic}.{priority}' for priority in priorities]


def queue_counts(name, url=AMQP_URL):
    """(ready message count, consumer count) of queue ``name``, or None
    when it does not exist. The count is RabbitMQ's ``message_count``:
    messages delivered but not yet acknowledged are not in it."""
    with kombu.Connection(url) as conn:
        channel = conn.channel()
        try:
            ok = channel.queue_declare(name, passive=True)
        except conn.channel_errors:
            return None
        finally:
            with contextlib.suppress(Exception):
                channel.close()
    return ok.message_count, ok.consumer_count


def delete_queues(names, url=AMQP_URL):
    """Delete the queues ``names`` (only queues a test created!)."""
    with kombu.Connection(url) as conn:
        for name in names:
            channel = conn.channel()
            try:
                channel.queue_delete(name)
            except conn.channel_errors:
                pass
            finally:
                with contextlib.suppress(Exception):
                    channel.close()


def publish_raw(routing_key, body, exchange='nova',
                content_type='application/json', url=AMQP_URL):
    """Put ``body`` (bytes) on ``exchange`` as is, bypassing oslo.messaging.

    Like oslo's Notifier, it first declares the exchange and the
    ``routing_key`` queue (non-durable, as oslo.messaging declares them), so
    the message waits there even if the agent is not consuming yet.
    """
    with kombu.Connection(url) as conn:
        channel = conn.channel()
        target = kombu.Exchange(exchange, 'topic', durable=False)
        kombu.Queue(routing_key, target, routing_key=routing_key,
                    durable=False, auto_delete=False)(channel).declare()
        producer = kombu.Producer(channel)
        producer.publish(body, exchange=exchange, routing_key=routing_key,
                         content_type=content_type, content_encoding='utf-8',
                         serializer=None, declare=[], retry=True)


def notifier_conf(exchange, url=RABBIT_URL):
    """A ConfigOpts for an oslo.messaging Notifier sending to
    ``exchange`` (control_exchange), as nova's or neutron's is."""
    from oslo_messaging import opts as messaging_opts
    conf = cfg.ConfigOpts()
    conf([], project='calipso-functional', default_config_files=[])
    for group, options in messaging_opts.list_opts():
        conf.register_opts(options, group=group)
    conf.set_override('transport_url', url)
    conf.set_override('control_exchange', exchange)
    return conf


def _parse_notification_time(value):
    text = str(value).replace('T', ' ').replace('Z', '')
    ts = datetime.datetime.fromisoformat(text)
    if ts.tzinfo is not None:
        ts = ts.astimezone(datetime.UTC).replace(tzinfo=None)
    return ts


def publish_notifications(topic, notifications, exchange='nova',
                          publisher_id=None, priority=None,
                          keep_timestamps=False, url=RABBIT_URL):
    """Send notifications with oslo.messaging's own Notifier (driver
    messagingv2), the way nova sends them.

    ``notifications``: envelopes (``load_envelope``) or any dicts with
    ``event_type`` and ``payload``, and optionally ``ctxt``,
    ``publisher_id``, ``priority``; ``publisher_id`` and ``priority``
    given here override theirs (defaults: 'compute.host1', 'info'). The
    Notifier makes the message id and, unless ``keep_timestamps`` (then
    the envelope's ``timestamp``), the timestamp. Returns the message ids
    the Notifier gave them, in order (recorded from its ``uuid4`` calls).
    """
    from unittest import mock

    import oslo_messaging
    from oslo_messaging.notify import notifier as notifier_module
    from oslo_utils import timeutils

    message_ids = []

    class RecordingUUID:
        """The uuid module, as the Notifier sees it, noting uuid4s."""

        def __getattr__(self, name):
            return getattr(uuid, name)

        def uuid4(self):
            value = uuid.uuid4()
            message_ids.append(str(value))
            return value

    conf = notifier_conf(exchange, url)
    transport = oslo_messaging.get_notification_transport(conf)
    notifier = oslo_messaging.Notifier(transport,
                                       publisher_id='compute.host1',
                                       driver='messagingv2', topics=[topic],
                                       retry=3)
    sent = 0
    try:
        recording = mock.patch.object(notifier_module, 'uuid',
                                      RecordingUUID())
        for item in notifications:
            prepared = notifier.prepare(
                publisher_id=(publisher_id or item.get('publisher_id')
                              or 'compute.host1'))
            level = str(priority or item.get('priority') or 'info').lower()
            send = getattr(prepared, {'warning': 'warn'}.get(level, level))
            if keep_timestamps and item.get('timestamp'):
                timeutils.set_time_override(
                    _parse_notification_time(item['timestamp']))
            try:
                with recording:
                    send(dict(item.get('ctxt') or {}), item['event_type'],
                         item['payload'])
            finally:
                if keep_timestamps:
                    timeutils.clear_time_override()
            sent += 1
    finally:
        transport.cleanup()
    if len(message_ids) != sent:
        raise AssertionError(f'{sent} notifications sent but the Notifier '
                             f'made {len(message_ids)} message ids')
    return message_ids


def instance_exists(instance_id, **payload):
    """The instance exists fixture envelope about ``instance_id`` (4
    samples with Ceilometer's meters.yaml; None: no instance_id at all),
    ``payload`` keys replaced; a value of None removes the key."""
    envelope = copy.deepcopy(load_envelope(INSTANCE_EXISTS))
    envelope['publisher_id'] = 'compute.host1'
    payload['instance_id'] = instance_id
    for key, value in payload.items():
        if value is None:
            envelope['payload'].pop(key, None)
        else:
            envelope['payload'][key] = value
    return envelope


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


class UDPCollector:
    """A UDP socket on 127.0.0.1 collecting msgpack datagrams (what the
    udp:// publisher sends), in a background thread."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.sock.bind(('127.0.0.1', 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.url = f'udp://127.0.0.1:{self.port}'
        self.messages = []
        self.errors = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                self.messages.append(msgpack.unpackb(data, raw=False))
            except Exception as exc:
                self.errors.append(f'{type(exc).__name__}: {exc}')

    def close(self):
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


class SampleHTTPServer:
    """An HTTP server on 127.0.0.1:``port`` recording the JSON bodies
    POSTed to it (what the http:// publisher sends), answering 200 after
    ``delay`` seconds."""

    def __init__(self, port=0, delay=0):
        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                time.sleep(delay)
                length = int(self.headers.get('Content-Length') or 0)
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.send_header('Content-Length', '0')
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', port),
                                                      Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        daemon=True)
        self._thread.start()

    def samples(self):
        out = []
        for body in list(self.received):
            out.extend(body if isinstance(body, list) else [body])
        return out

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def daemon_defaults(url):
    """The [DEFAULT] section every daemon run by the tests gets."""
    return (f'[DEFAULT]\n'
            f'transport_url = {url}\n'
            f'use_stderr = true\n'
            f'graceful_shutdown_timeout = 10\n')


class AgentProcess:
    """calipso-agent-notification run as ``python -m``, in its own session
    (process group), with a generated config file and pipeline.yaml in
    ``workdir``. Its log (oslo.log, on stderr) goes to ``stderr_path``;
    restarts append to it, ``log()`` reads the current run's part.
    """

    READY = 'listening on exchanges'
    MODULE = 'calipso_agent.cmd.agent_notification'

    def __init__(self, workdir, topic, pipeline, exchanges=('nova',
                 'neutron'), batch_size=100, batch_timeout=1,
                 backoff=(0.2, 2), url=RABBIT_URL, extra_config='',
                 batched_consumer=True, workers=1):
        self.workdir = str(workdir)
        self.topic = topic
        self.config_file = os.path.join(self.workdir, 'calipso.conf')
        self.pipeline_file = os.path.join(self.workdir, 'pipeline.yaml')
        self.meters_dir = os.path.join(self.workdir, 'meters.d')
        self.stderr_path = os.path.join(self.workdir, 'agent.stderr.log')
        self.stdout_path = os.path.join(self.workdir, 'agent.stdout.log')
        os.makedirs(self.meters_dir, exist_ok=True)
        with open(self.pipeline_file, 'w') as handle:
            yaml.safe_dump(pipeline, handle)
        with open(self.config_file, 'w') as handle:
            handle.write(
                daemon_defaults(url) +
                f'[notification]\n'
                f'workers = {workers}\n'
                f'batch_size = {batch_size}\n'
                f'batch_timeout = {batch_timeout}\n'
                f'exchanges = {",".join(exchanges)}\n'
                f'topics = {topic}\n'
                f'pipeline_cfg_file = {self.pipeline_file}\n'
                f'requeue_backoff_initial = {backoff[0]}\n'
                f'requeue_backoff_max = {backoff[1]}\n'
                f'batched_amqp_consumer = {batched_consumer}\n'
                f'dead_letter_queue = {topic}.dead\n'
                f'[meter]\n'
                f'meter_definitions_dirs = {self.meters_dir}\n'
                f'meter_definitions_paths = {CEILOMETER_METERS}\n'
                f'[publisher]\n'
                f'telemetry_secret = {TELEMETRY_SECRET}\n'
                f'{extra_config}')
        self.process = None
        self._log_offset = 0

    def start(self, wait_ready=True, timeout=30):
        assert self.process is None or self.process.poll() is not None
        self._log_offset = (os.path.getsize(self.stderr_path)
                            if os.path.exists(self.stderr_path) else 0)
        with open(self.stderr_path, 'ab') as err, \
                open(self.stdout_path, 'ab') as out:
            self.process = subprocess.Popen(
                [sys.executable, '-m', self.MODULE,
                 '--config-file', self.config_file],
                cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                start_new_session=True)
        if wait_ready:
            self.wait_ready(timeout)
        return self

    @property
    def pid(self):
        return self.process.pid

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def log(self, all_runs=False):
        try:
            with open(self.stderr_path, 'rb') as handle:
                if not all_runs:
                    handle.seek(self._log_offset)
                return handle.read().decode('utf-8', 'replace')
        except FileNotFoundError:
            return ''

    def wait_for_log(self, text, timeout):
        """Whether ``text`` appears in this run's log within ``timeout``
        seconds (False at once if the agent died)."""
        return wait_until(lambda: text in self.log() or not self.alive(),
                          timeout) and text in self.log()

    def wait_ready(self, timeout=30):
        if not self.wait_for_log(self.READY, timeout):
            log = self.log()
            self.stop()
            raise AssertionError(
                f'agent not listening after {timeout}s (exit code '
                f'{self.process.returncode}); log:\n{log[-4000:]}')

    def _signal_group(self, signum):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)

    def kill(self):
        """SIGKILL the whole process group (master and workers)."""
        if self.process is None:
            return None
        self._signal_group(signal.SIGKILL)
        return self.process.wait(10)

    def stop(self, timeout=15):
        """SIGTERM, then SIGKILL what is left of the group; the exit code
        of the master (None if never started)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # Workers outliving the master, or a master ignoring SIGTERM.
        self._signal_group(signal.SIGKILL)
        try:
            return self.process.wait(10)
        except subprocess.TimeoutExpired:
            return None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop()


def close_broker_connections(name_prefix, pids):
    """Make RabbitMQ close the AMQP connections whose client-declared
    connection name starts with ``name_prefix`` and ends with ``:<pid>``
    for one of ``pids``. Returns how many were closed."""
    listing = subprocess.run(
        ['rabbitmqctl', '-q', 'list_connections', 'pid', 'client_properties'],
        capture_output=True, text=True, timeout=60, check=True).stdout
    closed = 0
    for line in listing.splitlines():
        match = re.search(re.escape(name_prefix) + r'[^"]*:(\d+)"', line)
        if match and int(match.group(1)) in pids:
            subprocess.run(['rabbitmqctl', '-q', 'close_connection',
                            line.split('\t', 1)[0], 'calipso fault test'],
                           capture_output=True, timeout=60, check=True)
            closed += 1
    return closed


# --- Storage contract: plain-Python reference semantics -------------------
# What every storage driver must answer, computed in Python over a list of
# sample dicts (Sample.as_dict()) with query.matches: the oracle of the
# property tests in tests/storage_contract.py.

from calipso_agent.storage import base as storage_base  # noqa: E402
from calipso_agent.storage import query as storage_query  # noqa: E402


def sample_dict(item):
    """A stored or returned sample (Sample, or a mapping) as a dict."""
    if hasattr(item, 'as_dict'):
        return item.as_dict()
    return dict(item)


def instant(value):
    """An aware UTC datetime from an ISO 8601 string or datetime (None
    stays None)."""
    if value is None:
        return None
    return storage_base.parse_timestamp(value)


def _order_value(sample, field):
    value = sample.get(field)
    if field in storage_query.TIME_FIELDS:
        value = instant(value)
    elif field in storage_query.NUMBER_FIELDS and value is not None:
        value = float(value)
    # None sorts first; the contract tests never order by a field that is
    # None in their data (drivers differ: NULLS FIRST or LAST).
    return (0, 0) if value is None else (1, value)


def reference_order(samples, orderby=None):
    """``samples`` sorted as query_samples sorts (default: timestamp
    descending); ties keep their order."""
    orderby = storage_query.validate_orderby(orderby) or [('timestamp',
                                                           'desc')]
    result = list(samples)
    for field, direction in reversed(orderby):
        result.sort(key=lambda s, f=field: _order_value(s, f),
                    reverse=direction == 'desc')
    return result


def reference_query_samples(samples, filter_expr=None, orderby=None,
                            limit=None):
    """The sample dicts ``query_samples`` returns over ``samples``."""
    expression = (storage_query.validate(filter_expr)
                  if filter_expr is not None else None)
    found = [sample_dict(s) for s in samples]
    found = [s for s in found if storage_query.matches(expression, s)]
    found = reference_order(found, orderby)
    return found if limit is None else found[:limit]


def group_key(value):
    """A hashable, kind-aware key of a group value: True, 1 and '1' are
    three groups, 1 and 1.0 one; None (missing) is its own group."""
    if value is None:
        return None
    if isinstance(value, bool):
        return ('bool', value)
    if isinstance(value, (int, float)):
        return ('number', float(value))
    if isinstance(value, str):
        return ('string', value)
    raise TypeError(f'cannot group by a {type(value).__name__} '
                    f'({value!r})')


def _group_value(sample, field):
    value = storage_query.field_value(sample, field)
    return None if value is storage_query._MISSING else value


def _sort_group(key):
    # None first, then by kind name and value: a total order over keys.
    return tuple((0,) if k is None else (1, k[0], k[1]) for k in key)


def _population_stddev(values):
    mean = math.fsum(values) / len(values)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values)
                     / len(values))


def reference_statistics(samples, sample_filter=None, period=None,
                         groupby=None, aggregates=None,
                         cardinality_counts_none=False):
    """The Statistics (as dicts) ``get_statistics`` returns over
    ``samples`` (base.Connection.get_statistics semantics).

    ``cardinality_counts_none``: whether a field that is None counts as
    one more distinct value. The interface does not say; the contract
    follows SQL's COUNT DISTINCT (and both drivers): it does not.
    """
    period, groupby, aggregates = storage_base.check_statistics_args(
        period, groupby, aggregates)
    expression = (sample_filter.expression()
                  if sample_filter is not None else None)
    found = [sample_dict(s) for s in samples]
    found = [s for s in found if storage_query.matches(expression, s)]
    if not found:
        return []
    for s in found:
        s['_ts'] = instant(s['timestamp'])
    origin = None
    if period:
        origin = (sample_filter.start_timestamp
                  if sample_filter is not None
                  and sample_filter.start_timestamp is not None
                  else min(s['_ts'] for s in found))
    partitions = {}
    for s in found:
        start = (storage_base.period_start(s['_ts'], origin, period)
                 if period else None)
        values = tuple(_group_value(s, f) for f in groupby)
        key = (start, tuple(group_key(v) for v in values), s['unit'])
        partitions.setdefault(key, (values, []))[1].append(s)
    result = []
    for (start, gkey, unit), (values, members) in partitions.items():
        volumes = [float(s['volume']) for s in members]
        first = min(s['_ts'] for s in members)
        last = max(s['_ts'] for s in members)
        computed = {
            'count': len(volumes), 'min': min(volumes),
            'max': max(volumes), 'sum': math.fsum(volumes),
            'avg': math.fsum(volumes) / len(volumes),
            'stddev': _population_stddev(volumes),
        }
        stats = dict.fromkeys(storage_base.Statistics.__slots__)
        stats.update(
            unit=unit, duration_start=first, duration_end=last,
            duration=(last - first).total_seconds(),
            groupby=dict(zip(groupby, values, strict=True))
            if groupby else None)
        if period:
            stats.update(period=period, period_start=start,
                         period_end=start + datetime.timedelta(
                             seconds=period))
        else:
            stats.update(period=0, period_start=first, period_end=last)
        if not aggregates:
            for name in ('count', 'min', 'max', 'avg', 'sum'):
                stats[name] = computed[name]
            stats['aggregate'] = {}
        else:
            stats['aggregate'] = {}
            for func, param in aggregates:
                if func == 'cardinality':
                    distinct = {s.get(param) for s in members}
                    if not cardinality_counts_none:
                        distinct.discard(None)
                    stats['aggregate'][f'cardinality/{param}'] = len(
                        distinct)
                else:
                    stats[func] = computed[func]
                    stats['aggregate'][func] = computed[func]
        result.append(((start or 0, _sort_group(gkey), str(unit)), stats))
    # Sorted by period (without one, a single period: every group covers
    # the whole range), then group values (None first; the interface
    # leaves the order of mixed kinds open), then unit.
    return [stats for _, stats in sorted(result, key=lambda item: item[0])]


# --- Collector: the daemon as a subprocess, a private PostgreSQL ----------


class CollectorProcess(AgentProcess):
    """calipso-collector run as ``python -m`` in its own session, consuming
    ``topic`` (its [publisher_notifier] metering_topic) into ``database``;
    same life cycle and log handling as AgentProcess."""

    READY = 'listening on topic'
    MODULE = 'calipso_agent.cmd.collector'

    def __init__(self, workdir, topic, database, batch_size=50,
                 batch_timeout=1, backoff=(0.2, 1), url=RABBIT_URL,
                 secret=TELEMETRY_SECRET, workers=1, extra_config=''):
        self.workdir = str(workdir)
        self.topic = topic
        self.database = database
        os.makedirs(self.workdir, exist_ok=True)
        self.config_file = os.path.join(self.workdir, 'collector.conf')
        self.stderr_path = os.path.join(self.workdir,
                                        'collector.stderr.log')
        self.stdout_path = os.path.join(self.workdir,
                                        'collector.stdout.log')
        with open(self.config_file, 'w') as handle:
            handle.write(
                daemon_defaults(url) +
                f'[collector]\n'
                f'requeue_backoff_initial = {backoff[0]}\n'
                f'requeue_backoff_max = {backoff[1]}\n'
                f'workers = {workers}\n'
                f'batch_size = {batch_size}\n'
                f'batch_timeout = {batch_timeout}\n'
                f'dead_letter_queue = {topic}.dead\n'
                f'[publisher_notifier]\n'
                f'metering_topic = {topic}\n'
                f'[publisher]\n'
                f'telemetry_secret = {secret}\n'
                f'[database]\n'
                f'connection = {database}\n'
                f'retry_interval = 0.5\n'
                f'{extra_config}')
        self.process = None
        self._log_offset = 0



def publish_samples(topic, samples, per_notification=50,
                    secret=TELEMETRY_SECRET, url=RABBIT_URL, pause=0.0,
                    stop=None):
    """Put ``samples`` on the bus as notifier:// does (signed meter
    messages, ``per_notification`` to a notification, topic ``topic`` on
    the control exchange), ``pause`` seconds apart; ``stop`` (an Event)
    ends it early. Returns how many samples were sent."""
    from calipso_agent.publisher import notifier

    conf = make_conf(transport_url=url, publisher__telemetry_secret=secret)
    publisher = notifier.NotifierPublisher(
        conf, urllib.parse.urlparse(f'notifier://?topic={topic}'))
    sent = 0
    try:
        for start in range(0, len(samples), per_notification):
            if stop is not None and stop.is_set():
                break
            chunk = samples[start:start + per_notification]
            publisher.publish_samples(chunk)
            sent += len(chunk)
            if pause:
                time.sleep(pause)
    finally:
        publisher.close()
    return sent


class PrivatePostgres:
    """A PostgreSQL server of the test's own (never the shared one): a
    fresh cluster in a temporary directory, on a spare loopback port,
    run as the ``postgres`` user when the tests run as root (initdb
    refuses root). Superuser ``calipso``, trust authentication, database
    ``postgres``. ``cleanup()`` stops it and deletes the directory."""

    USER = 'calipso'

    def __init__(self):
        import pwd
        import tempfile

        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix='calipso-pg-')
        self.data = os.path.join(self.dir, 'data')
        self.logfile = os.path.join(self.dir, 'postgres.log')
        self.prefix = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam('postgres')
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
            self.prefix = ['runuser', '-u', 'postgres', '--']
        self.url = (f'postgresql+psycopg://{self.USER}@127.0.0.1:'
                    f'{self.port}/postgres')
        self._run('initdb', '-D', self.data, '-U', self.USER, '-A', 'trust',
                  '-E', 'UTF8', '--no-sync', '--no-instructions')

    def _run(self, *args, check=True):
        return subprocess.run(self.prefix + list(args), capture_output=True,
                              text=True, timeout=60, check=check,
                              stdin=subprocess.DEVNULL)

    def start(self):
        options = (f'-p {self.port} -c listen_addresses=127.0.0.1 '
                   f'-c unix_socket_directories={self.dir} -c fsync=off '
                   f'-c max_connections=50')
        result = self._run('pg_ctl', '-D', self.data, '-l', self.logfile,
                           '-o', options, '-w', '-t', '30', 'start',
                           check=False)
        if result.returncode != 0:
            raise AssertionError(f'private PostgreSQL did not start:\n'
                                 f'{result.stdout}{result.stderr}'
                                 f'{self.log()[-2000:]}')
        return self

    def stop(self, mode='immediate'):
        """pg_ctl stop; ``immediate`` is a crash: no checkpoint, clients
        cut off, recovery from the WAL at the next start."""
        return self._run('pg_ctl', '-D', self.data, '-m', mode, '-w',
                         '-t', '30', 'stop', check=False).returncode == 0

    def running(self):
        return self._run('pg_ctl', '-D', self.data, 'status',
                         check=False).returncode == 0

    def log(self):
        try:
            with open(self.logfile, errors='replace') as handle:
                return handle.read()
        except FileNotFoundError:
            return ''

    def _postmaster_pid(self):
        try:
            with open(os.path.join(self.data, 'postmaster.pid')) as handle:
                return int(handle.readline())
        except (FileNotFoundError, ValueError):
            return None

    def cleanup(self):
        import shutil

        if os.path.isdir(self.data) and self.running() and not self.stop():
            pid = self._postmaster_pid()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.cleanup()


# --- calipso-api: the real gunicorn server as a process --------------------


def api_command():
    """calipso-api of this environment: its console script, else the
    module."""
    script = os.path.join(os.path.dirname(sys.executable), 'calipso-api')
    if os.path.exists(script):
        return [script]
    return [sys.executable, '-m', 'calipso_agent.cmd.api']


def keystone_authtoken_config(keystone, user=None):
    """``[keystone_authtoken]`` of a service validating tokens with the
    test Keystone (tests/identity.py) as ``user`` (default: its service
    user ``calipso``); no memcached (an in-process token cache)."""
    user = user or keystone.service_user
    return (f'[keystone_authtoken]\n'
            f'www_authenticate_uri = {keystone.url}\n'
            f'auth_url = {keystone.url}\n'
            f'auth_type = password\n'
            f'username = {user.name}\n'
            f'password = {user.password}\n'
            f'project_name = {user.project_name}\n'
            f'user_domain_name = Default\n'
            f'project_domain_name = Default\n'
            # The fixture's catalog has only a public identity endpoint.
            f'interface = public\n')


class APIServer:
    """calipso-api (gunicorn) in a session of its own on a free loopback
    port, with a generated calipso.conf in ``workdir``; ``url`` is its
    base URL once ``start()`` saw /healthcheck answer. ``extra_config``
    is appended to the file (e.g. ``keystone_authtoken_config``)."""

    def __init__(self, workdir, database, auth_strategy='noauth',
                 workers=1, threads=4, extra_config=''):
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.port = free_port()
        self.url = f'http://127.0.0.1:{self.port}'
        self.config_file = os.path.join(self.workdir, 'calipso-api.conf')
        self.log_path = os.path.join(self.workdir, 'calipso-api.log')
        with open(self.config_file, 'w') as handle:
            handle.write(
                f'[DEFAULT]\nuse_stderr = true\n'
                f'[database]\nconnection = {database}\n'
                f'[api]\nhost = 127.0.0.1\nport = {self.port}\n'
                f'workers = {workers}\nthreads = {threads}\n'
                f'auth_strategy = {auth_strategy}\n'
                f'{extra_config}')
        self.process = None

    def start(self, timeout=30):
        import requests

        with open(self.log_path, 'ab') as log:
            self.process = subprocess.Popen(
                api_command() + ['--config-file', self.config_file],
                cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True)
        deadline = time.monotonic() + timeout
        with requests.Session() as session:
            session.trust_env = False  # loopback, never through a proxy
            while True:
                with contextlib.suppress(requests.ConnectionError):
                    if session.get(f'{self.url}/healthcheck',
                                   timeout=2).status_code == 200:
                        return self
                if self.process.poll() is not None or (
                        time.monotonic() > deadline):
                    self.stop()
                    raise AssertionError(
                        f'calipso-api did not answer on {self.url}:\n'
                        f'{self.log()[-4000:]}')
                time.sleep(0.1)

    def log(self):
        try:
            with open(self.log_path, errors='replace') as handle:
                return handle.read()
        except FileNotFoundError:
            return ''

    def stop(self, timeout=15):
        """SIGTERM the group, SIGKILL what is left; the master's exit
        code (None if never started)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()


@contextlib.contextmanager
def keystone_api(keystone, workdir, samples):
    """The base URL of a calipso-api authenticating with the test Keystone
    over an SQLite store in ``workdir`` holding ``samples``."""
    database = f'sqlite:///{workdir}/calipso.sqlite'
    store = storage.get_connection(make_conf(database__connection=database))
    try:
        assert not store.record_samples(samples).rejected
    finally:
        store.close()
    with APIServer(workdir, database, auth_strategy='keystone',
                   extra_config=keystone_authtoken_config(keystone)) as api:
        yield api.url


# --- calipso-proxy ----------------------------------------------------------

CHANNEL_TOKEN = 'channel-token-of-the-tenant'


class ProxyServer:
    """calipso-proxy in a session of its own on a free loopback port, with
    the config file the controller would write (``options``: more
    ``[proxy]`` options; no ``credentials``: no token sent to the
    backend)."""

    def __init__(self, workdir, projects, backend_url, credentials,
                 **options):
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.port = free_port()
        self.url = f'http://127.0.0.1:{self.port}'
        self.config_file = os.path.join(self.workdir, 'proxy.conf')
        self.log_path = os.path.join(self.workdir, 'proxy.log')
        self.channel_id = f'channel-{uuid.uuid4()}'
        lines = ['[DEFAULT]', 'use_stderr = true', '[proxy]',
                 f'channel_id = {self.channel_id}',
                 'liveness_socket = '
                 f'{channels.liveness_socket(self.channel_id)}',
                 f'authorized_projects = {",".join(projects)}',
                 f'backend_url = {backend_url}',
                 f'token_hash = {tenant_auth.token_hash(CHANNEL_TOKEN)}',
                 'keystone_token_cache_time = 0',
                 'host = 127.0.0.1', f'port = {self.port}']
        lines += [f'{k} = {v}' for k, v in options.items()]
        lines += ['[service_credentials]']
        lines += [f'{k} = {v}' for k, v in credentials.items()]
        with open(self.config_file, 'w') as handle:
            handle.write('\n'.join(lines) + '\n')
        self.process = None

    def start(self, timeout=30):
        with open(self.log_path, 'ab') as log:
            self.process = subprocess.Popen(
                [sys.executable, '-m', 'calipso_proxy.cmd.proxy',
                 '--config-file', self.config_file], cwd=REPO,
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f'{self.url}/healthcheck',
                                timeout=2).status_code == 200:
                    return self
            if self.process.poll() is not None or (
                    time.monotonic() > deadline):
                self.stop()
                with open(self.log_path) as handle:
                    raise AssertionError(handle.read()[-4000:])
            time.sleep(0.1)

    def stop(self):
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def get(self, path, token=CHANNEL_TOKEN, **kwargs):
        headers = {'X-Auth-Token': token} if token else {}
        headers.update(kwargs.pop('headers', {}))
        return requests.get(self.url + path, headers=headers, timeout=30,
                            **kwargs)


# --- dead letters and databases of a test's own -----------------------------

SHARED_POSTGRESQL_URL = os.environ.get(
    'CALIPSO_TEST_SHARED_POSTGRESQL_URL',
    'postgresql://root@127.0.0.1:5432/postgres')


@contextlib.contextmanager
def shared_postgresql_database():
    """The SQLAlchemy URL of a database of the caller's own on the shared
    PostgreSQL server, created empty and dropped (WITH (FORCE)) at the
    end; ``None`` when the server does not answer."""
    import psycopg
    import sqlalchemy as sa

    server = sa.engine.make_url(SHARED_POSTGRESQL_URL)
    admin_url = server.set(drivername='postgresql').render_as_string(
        hide_password=False)
    name = f'calipso_test_{uuid.uuid4().hex}'
    try:
        with psycopg.connect(admin_url, autocommit=True,
                             connect_timeout=3) as admin:
            admin.execute(f'CREATE DATABASE {name}')
    except psycopg.OperationalError:
        yield None
        return
    try:
        yield server.set(drivername='postgresql+psycopg',
                         database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_url, autocommit=True,
                             connect_timeout=10) as admin:
            admin.execute(f'DROP DATABASE {name} WITH (FORCE)')


def read_dead_letters(queue, url=AMQP_URL):
    """[(headers, body)] of the dead letters in ``queue``, left there."""
    letters = []
    with kombu.Connection(url) as conn:
        channel = conn.channel()
        try:
            while True:
                message = channel.basic_get(queue, no_ack=False)
                if message is None:
                    break
                body = message.body
                # py-amqp decodes the text of a body that names its
                # encoding: the bytes that were sent.
                if isinstance(body, str):
                    body = body.encode(message.content_encoding or 'utf-8',
                                       'surrogateescape')
                letters.append((dict(message.headers or {}), body))
        except conn.channel_errors:
            return []
        finally:
            with contextlib.suppress(Exception):
                channel.close()
    return letters


def oslo_body(message_text):
    """An oslo.messaging 2.0 body around ``message_text`` (the JSON text
    of the message, as is: it may be what no encoder would make)."""
    return ('{"oslo.version": "2.0", "oslo.message": '
            + json.dumps(message_text) + '}').encode()


def nested_json(levels, leaf='{}'):
    """JSON text of objects nested ``levels`` deep (no encoder needed)."""
    return '{"a": ' * levels + leaf + '}' * levels


# --- self-metrics (calipso_agent.metrics) ------------------------------------


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
