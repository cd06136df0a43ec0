"""End to end through ``calipso run``, as a new user runs the product.

On a RabbitMQ virtual host of its own (the product consumes the default
``notifications`` topic), in a temporary state directory: the shared
fixtures go on the bus with ``calipso-replay``; the samples appear in the
API and its statistics; a channel is created with the controller and its
proxy, queried with python-ceilometerclient (library and CLI), shows its
project only; the inventory the agent keeps from the same notifications
is listed by the API and, limited to a channel's project, by its proxy;
the polling agent stores this host's meters; a tenant subscribed through
its channel's proxy receives its samples, and only those, as datagrams;
``calipso run`` stopped by SIGTERM while notifications are still queued,
started again, stores every sample exactly once.
"""

import collections
import contextlib
import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest
import requests
from ceilometerclient import client as ceilometer_client

from calipso_agent import inventory, replay, service
from calipso_agent.notification import base, manager
from calipso_agent.storage.sql import sqlite
from tests.helpers import basics, fixtures, receivers
from tests.helpers import inventory as inventory_helpers

pytestmark = pytest.mark.functional

CHANNELS = '/api/tenant/monitoring/monitoringchannel/'
# The fixture replayed many times while calipso run is stopped.
BULK = 'cinder__ceilometer-tests__volume_exists'
BULK_COUNT = 15000


def script(name):
    return os.path.join(os.path.dirname(sys.executable), name)


def rabbitmqctl(*args):
    return subprocess.run(['rabbitmqctl', '-q', *args], capture_output=True,
                          text=True, timeout=60)


@pytest.fixture(scope='module')
def vhost():
    if shutil.which('rabbitmqctl') is None:
        pytest.skip('rabbitmqctl is needed for a virtual host of the test')
    name = f'calipso-run-{uuid.uuid4().hex[:8]}'
    created = rabbitmqctl('add_vhost', name)
    assert created.returncode == 0, created.stderr
    granted = rabbitmqctl('set_permissions', '-p', name, 'guest', '.*',
                          '.*', '.*')
    assert granted.returncode == 0, granted.stderr
    yield f'rabbit://guest:guest@127.0.0.1:5672/{name}'
    rabbitmqctl('delete_vhost', name)


class Run:
    """``calipso run`` as a process of its own session."""

    def __init__(self, state_dir, transport_url):
        self.state_dir = str(state_dir)
        self.transport_url = transport_url
        self.api_port = basics.free_port()
        self.controller_port = basics.free_port()
        low = basics.free_port_range(3)
        self.proxy_ports = f'{low}-{low + 2}'
        self.api = f'http://127.0.0.1:{self.api_port}'
        self.controller = f'http://127.0.0.1:{self.controller_port}'
        self.output_path = os.path.join(self.state_dir, 'run.out')
        self.config_file = os.path.join(self.state_dir, 'calipso.conf')
        self.process = None
        self.offset = 0

    def start(self, timeout=90):
        os.makedirs(self.state_dir, exist_ok=True)
        self.offset = (os.path.getsize(self.output_path)
                       if os.path.exists(self.output_path) else 0)
        with open(self.output_path, 'ab') as output:
            self.process = subprocess.Popen(
                [script('calipso'), 'run', '--state-dir', self.state_dir,
                 '--transport-url', self.transport_url,
                 '--api-port', str(self.api_port),
                 '--controller-port', str(self.controller_port),
                 '--proxy-ports', self.proxy_ports],
                stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                start_new_session=True)
        running = basics.wait_until(
            lambda: ('Ctrl-C stops everything' in self.output()
                     or self.process.poll() is not None), timeout)
        assert running and self.process.poll() is None, self.output()

    def output(self):
        """What this start printed."""
        with open(self.output_path, errors='replace') as handle:
            handle.seek(self.offset)
            return handle.read()

    def stop(self, timeout=90):
        """SIGTERM to calipso run alone, as an init system sends it."""
        if self.process is None or self.process.poll() is not None:
            return None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            raise

    def get(self, path, **params):
        response = requests.get(self.api + path, params=params, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()


def expected_samples(config_file, paths):
    """(meter name, project) → count: what the agent's endpoints, as
    ``calipso run`` configured them, make of the envelopes."""
    conf = service.prepare_service(['--config-file', config_file],
                                   log_setup=False)
    endpoints = manager.load_endpoints(conf)
    counts = collections.Counter()
    for path in paths:
        priority, notification = base.from_envelope(
            replay.read_envelope(path))
        if priority not in base.SAMPLE_PRIORITIES:
            continue
        ids = set()
        for endpoint in endpoints:
            with contextlib.suppress(base.NotificationError):
                for sample in endpoint.process_notification(notification):
                    if sample.id not in ids:
                        ids.add(sample.id)
                        counts[sample.name, sample.project_id] += 1
    return counts


def replay_files(url, *args):
    result = subprocess.run([script('calipso-replay'), '--url', url,
                             '--quiet', *args],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def queued(url):
    """Messages ready or unacknowledged on the virtual host's queues."""
    listed = rabbitmqctl('list_queues', '-p', url.rsplit('/', 1)[1],
                         'messages')
    assert listed.returncode == 0, listed.stderr
    return sum(int(x) for x in listed.stdout.split() if x.isdigit())


# The polling agent stores this host's meters beside the notifications'.
HOST = socket.gethostname()


def polled(item):
    """Whether a sample or meter is of the host pollsters (resource id
    the host name, or ``<host>-<device or interface>``)."""
    resource = item.get('resource_id') or ''
    return resource == HOST or resource.startswith(HOST + '-')


def notification_samples(run):
    return [s for s in run.get('/v2/samples', limit=100000)
            if not polled(s)]


def stored_counts(run):
    counts = collections.Counter()
    for sample in notification_samples(run):
        counts[sample['meter'], sample['project_id']] += 1
    return counts


@pytest.fixture(scope='module')
def product(tmp_path_factory, vhost):
    run = Run(tmp_path_factory.mktemp('calipso-run') / 'state', vhost)
    run.start()
    try:
        yield run
    finally:
        run.stop()


@pytest.fixture(scope='module')
def replayed(product, vhost):
    files = replay.envelope_files([fixtures.NOTIFICATIONS])
    # With their own timestamps, so the inventory (newest event wins) is
    # the fixtures' whatever order the files are sent in.
    out = replay_files(vhost, '--keep-timestamps', fixtures.NOTIFICATIONS)
    assert out.strip() == f'calipso-replay: {len(files)} notifications sent'
    expected = expected_samples(product.config_file, files)
    assert sum(expected.values()) > 50
    stored = basics.wait_until(
        lambda: stored_counts(product) == expected or None, 60)
    got = stored_counts(product)
    assert stored, ('missing', expected - got, 'unexpected', got - expected)
    return expected


def test_meters_and_statistics_through_the_api(product, replayed):
    names = {m['name'] for m in product.get('/v2/meters') if not polled(m)}
    assert names == {name for name, _ in replayed}
    (stats,) = product.get('/v2/meters/volume.size/statistics')
    assert stats['count'] == sum(n for (name, _), n in replayed.items()
                                 if name == 'volume.size')


def create_channel(product, name, tenant_list):
    """(channel with its token, proxy URL) of a new channel."""
    created = requests.post(
        product.controller + CHANNELS, timeout=30,
        data=json.dumps({'name': name, 'tenant_list': tenant_list}))
    assert created.status_code == 201, created.text
    channel = created.json()
    url = basics.wait_until(lambda: requests.get(
        f'{product.controller}{CHANNELS}{channel["id"]}/',
        timeout=10).json()['ceilometer_url'], 60)
    assert url, product.output()
    return channel, url


def test_channel_proxy_shows_only_its_project(product, replayed):
    projects = collections.Counter()
    for (_, project), count in replayed.items():
        projects[project] += count
    ours = max((p for p in projects if p), key=projects.get)
    channel, url = create_channel(product, 'e2e', [ours])

    client = ceilometer_client.get_client(2, os_endpoint=url,
                                          os_token=channel['token'])
    assert {m.project_id for m in client.meters.list()} == {ours}
    listed = client.new_samples.list(limit=100000)
    assert len(listed) == projects[ours]
    assert {s.project_id for s in listed} == {ours}

    def cli(*args):
        result = subprocess.run(
            [script('ceilometer'), '--os-endpoint', url, '--os-token',
             channel['token'], *args], capture_output=True, text=True,
            timeout=60)
        assert result.returncode == 0, result.stderr
        # The table's rows, without its header.
        return [line for line in result.stdout.splitlines()
                if line.startswith('|')][1:]

    assert len(cli('sample-list', '--limit', '100000')) == projects[ours]
    meter_rows = cli('meter-list')
    assert meter_rows and all(f'| {ours} ' in row for row in meter_rows)


def expected_inventory(tmp_path):
    """The live objects the inventory endpoint makes of the fixtures as
    ``calipso-replay --keep-timestamps`` sends them (a broken timestamp
    replaced by the current time), applied in this process into a store
    of the test's own (any order gives the same graph)."""
    store = sqlite.Connection(basics.make_conf(),
                              f'sqlite:///{tmp_path}/expected.sqlite')
    now = datetime.datetime.now(datetime.UTC).isoformat()
    for name in fixtures.fixture_names():
        envelope = fixtures.load_envelope(name)
        if replay.kept_time(envelope) is None:
            envelope = dict(envelope, timestamp=now)
        _, notification = base.from_envelope(envelope)
        if inventory_helpers.endpoint().handles(notification['event_type']):
            store.apply_inventory(*inventory_helpers.split(
                inventory_helpers.changes_of(notification)))
    objects, _ = inventory_helpers.graph(store, created=False)
    return {i: o for i, o in objects.items()
            if o['state'] != inventory.DELETED}


def listed_inventory(url, token=None):
    response = requests.get(
        url + '/v2/inventory', params={'limit': 10000}, timeout=30,
        headers={'X-Auth-Token': token} if token else {})
    assert response.status_code == 200, response.text
    return {o['id']: (o['type'], o['state']) for o in response.json()}


def test_inventory_through_the_api_and_a_channel_proxy(product, replayed,
                                                       tmp_path):
    """The agent of calipso run keeps the inventory of the replayed nova,
    neutron and cinder notifications; the API lists it, and a channel's
    proxy only its project's objects."""
    live = expected_inventory(tmp_path)
    want = {i: (o['type'], o['state']) for i, o in live.items()}
    if not basics.wait_until(
            lambda: listed_inventory(product.api) == want or None, 60):
        got = listed_inventory(product.api)
        raise AssertionError(sorted(
            (i, got.get(i), want.get(i)) for i in set(got) | set(want)
            if got.get(i) != want.get(i)))

    projects = collections.Counter(o['project_id'] for o in live.values()
                                   if o.get('project_id'))
    ours = projects.most_common(1)[0][0]
    channel, url = create_channel(product, 'inventory', [ours])
    url = url.rstrip('/')
    token = channel['token']
    mine = {i: v for i, v in want.items()
            if live[i].get('project_id') == ours}
    assert len(mine) >= 2
    assert listed_inventory(url, token) == mine
    foreign = sorted(i for i, o in live.items()
                     if o.get('project_id') != ours)
    assert foreign
    for object_id in foreign:
        response = requests.get(f'{url}/v2/inventory/{object_id}',
                                headers={'X-Auth-Token': token}, timeout=30)
        assert response.status_code == 404, (object_id, response.text)
    other = next(p for p in projects if p != ours)
    response = requests.get(url + '/v2/inventory', timeout=30,
                            params={'project_id': other},
                            headers={'X-Auth-Token': token})
    assert response.status_code == 403, response.text
    # The topology page is served by the API and through the proxy.
    for base_url in (product.api, url):
        page = requests.get(base_url + '/ui/', timeout=30)
        assert page.status_code == 200 and '<html' in page.text.lower()


def test_a_tenant_subscribes_through_its_proxy_and_gets_only_its_samples(
        product, replayed, vhost):
    """CORD's subscribe body to the channel's proxy, a UDP target: the
    shipped pipeline's subscription publisher pushes the channel's samples
    as msgpack datagrams, and never another project's."""
    by_file = {}
    for path in replay.envelope_files([fixtures.NOTIFICATIONS]):
        counts = expected_samples(product.config_file, [path])
        if counts:
            by_file[path] = counts
    projects = collections.Counter()
    for counts in by_file.values():
        for (_, project), count in counts.items():
            projects[project] += count
    ours = max((p for p in projects if p), key=projects.get)
    mine = sorted(path for path, counts in by_file.items()
                  if {project for _, project in counts} == {ours})
    foreign = sorted(path for path, counts in by_file.items()
                     if ours not in {project for _, project in counts})
    assert mine and foreign
    channel, url = create_channel(product, 'pubsub', [ours])
    url = url.rstrip('/')
    headers = {'X-Auth-Token': channel['token'],
               'Content-Type': 'application/json'}
    receiver = receivers.UDPCollector()
    try:
        answer = requests.post(url + '/subscribe', headers=headers,
                               timeout=30, data=json.dumps({
                                   'app_id': 'cord-app',
                                   'target': receiver.url,
                                   'sub_info': '*', 'query': []}))
        assert answer.status_code == 201, answer.text
        # A subscription takes effect within the refresh interval.
        time.sleep(3)
        replay_files(vhost, *foreign, *mine)
        wanted = sum(sum(by_file[path].values()) for path in mine)
        assert basics.wait_until(
            lambda: len(receiver.messages) >= wanted, 60), (
            len(receiver.messages), wanted, product.output()[-2000:])
        time.sleep(2)
        assert receiver.errors == []
        assert {m['project_id'] for m in receiver.messages} == {ours}
        assert len(receiver.messages) == wanted

        def delivered():
            listed = requests.get(url + '/v2/subscribe', headers=headers,
                                  timeout=30)
            assert listed.status_code == 200, listed.text
            (subscription,) = listed.json()
            return subscription['delivered'] >= wanted
        assert basics.wait_until(delivered, 30)

        answer = requests.post(url + '/unsubscribe', headers=headers,
                               timeout=30,
                               data=json.dumps({'app_id': 'cord-app'}))
        assert answer.status_code == 200, answer.text
        time.sleep(3)
        before = len(receiver.messages)
        stored = len(notification_samples(product))
        replay_files(vhost, *mine)
        assert basics.wait_until(
            lambda: len(notification_samples(product)) >= stored + wanted,
            60)
        time.sleep(2)
        assert len(receiver.messages) == before
    finally:
        receiver.close()


def test_host_samples_are_polled_and_stored(product):
    """The polling agent of calipso run stores this host's meters (the
    shipped host source polls every 60 s, on the minute: run after the
    others, so that the wait mostly overlaps them)."""
    def host_meters():
        found = {m['name']: m for m in product.get('/v2/meters')
                 if polled(m)}
        return found if {'cpu', 'load.1', 'memory.total'} <= set(found) \
            else None
    found = basics.wait_until(host_meters, 150, interval=2)
    assert found, product.output()[-3000:]
    assert found['cpu']['type'] == 'cumulative'
    assert found['cpu']['unit'] == 'ns'
    assert found['memory.total']['resource_id'] == HOST
    (stats,) = product.get('/v2/meters/memory.total/statistics',
                           **{'q.field': 'resource_id', 'q.value': HOST})
    assert stats['max'] > 0


def test_stopped_with_queued_notifications_stores_each_once(
        product, replayed, vhost):
    path = os.path.join(fixtures.NOTIFICATIONS, BULK + '.json')
    per_meter = expected_samples(product.config_file, [path])
    per_notification = sum(per_meter.values())
    assert per_notification >= 1
    before = len(notification_samples(product))
    # One meter of the bulk, counted cheaply while the backlog is stored.
    meter = next(iter(per_meter))[0]
    query = {'q.field': 'meter', 'q.value': meter}
    meter_before = len(product.get('/v2/samples', limit=100000, **query))
    assert product.stop() == 0, product.output()
    replay_files(vhost, '--loop', '--count', str(BULK_COUNT), path)
    assert queued(vhost) == BULK_COUNT
    product.start()
    # SIGTERM as soon as the agent is storing the backlog.
    assert basics.wait_until(
        lambda: len(product.get('/v2/samples', limit=meter_before + 1,
                                **query)) > meter_before,
        60, interval=0.05)
    assert product.stop() == 0, product.output()
    left = queued(vhost)
    assert 0 < left < BULK_COUNT
    product.start()
    want = before + BULK_COUNT * per_notification

    def complete():
        return len(notification_samples(product)) >= want

    assert basics.wait_until(complete, 120)
    assert queued(vhost) == 0
    samples = notification_samples(product)
    assert len(samples) == want
    assert len({s['id'] for s in samples}) == want
    assert product.stop() == 0
    stopped = product.output().split('SIGTERM: stopping', 1)[1]
    assert 'agent stopped (status 0)' in stopped
    assert 'polling stopped (status 0)' in stopped
    assert 'controller stopped (status 0)' in stopped
