"""Tenant publish/subscribe end to end: an application subscribes through
a real channel proxy (in front of a real calipso-api on an SQLite store);
real notifications go over the real RabbitMQ to a real notification
agent whose pipeline has the subscription publisher; the samples arrive
on a UDP socket (msgpack, CORD's wire), an HTTP server and the
subscription's AMQP queue in the test, and only the channel's projects'
ones."""

import json
import uuid

import pytest
import requests

from calipso_agent import storage
from tests.helpers import bus, daemons, fixtures, pubsub
from tests.helpers.basics import make_conf, wait_until
from tests.helpers.receivers import (
    HangingHTTPServer,
    SampleHTTPServer,
    UDPCollector,
)

pytestmark = pytest.mark.functional

PROJECTS = ['p-pubsub-1', 'p-pubsub-2']
FOREIGN = 'p-pubsub-foreign'
TOKEN = {'X-Auth-Token': daemons.CHANNEL_TOKEN}


@pytest.fixture(scope='module')
def service(tmp_path_factory, broker):
    workdir = tmp_path_factory.mktemp('pubsub')
    database = f'sqlite:///{workdir}/calipso.sqlite'
    store = storage.get_connection(make_conf(database__connection=database))
    api = daemons.APIServer(workdir / 'api', database).start()
    proxy = daemons.ProxyServer(workdir / 'proxy', PROJECTS, api.url, {})
    pubsub.make_channel(store, PROJECTS, proxy.channel_id)
    proxy.start()
    topic = bus.unique_topic()
    agent = daemons.AgentProcess(
        workdir / 'agent', topic,
        {'sources': [{'name': 'all', 'meters': ['*'], 'sinks': ['subs']}],
         'sinks': [{'name': 'subs', 'publishers': ['subscription://']}]},
        extra_config=(f'[database]\nconnection = {database}\n'
                      '[subscription]\nrefresh_interval = 0.3\n'
                      'counter_interval = 0.3\nhttp_timeout = 0.5\n'
                      'http_max_retries = 1\n'))
    agent.start()
    yield {'proxy': proxy, 'agent': agent, 'topic': topic, 'store': store,
           'channel': proxy.channel_id}
    agent.stop()
    proxy.stop()
    api.stop()
    store.close()
    bus.delete_queues(bus.topic_queues(topic, ('info', 'sample', 'error',
                                               'dead')))


def post(service, path, body, raw=False):
    data = body if raw else json.dumps(body)
    return requests.post(service['proxy'].url + path, data=data,
                         headers=TOKEN, timeout=30)


def notify(service, project, count=1):
    ids = [f'vm-{uuid.uuid4()}' for _ in range(count)]
    bus.publish_notifications(service['topic'], [
        fixtures.instance_exists(rid, tenant_id=project) for rid in ids])
    return ids


def listed(service):
    answer = requests.get(service['proxy'].url + '/v2/subscribe',
                          headers=TOKEN, timeout=30)
    assert answer.status_code == 200, answer.text
    return {s['app_id']: s for s in answer.json()}


def test_cord_client_unchanged_gets_msgpack_of_its_projects(service):
    udp = UDPCollector()
    try:
        # CORD's raw body, to CORD's path.
        raw = ('{"app_id": "cord-app", "target": "udp://127.0.0.1:PORT", '
               '"sub_info": ["instance", "memory"], "query": []}')
        answer = post(service, '/subscribe',
                      raw.replace('PORT', str(udp.port)), raw=True)
        assert answer.status_code == 201, answer.text
        assert wait_until(lambda: (notify(service, PROJECTS[0]) and False)
                          or udp.messages, 15, 1.0)
        mine = notify(service, PROJECTS[1], 3)
        notify(service, FOREIGN, 3)
        assert wait_until(lambda: set(mine) <= {
            m['resource_id'] for m in udp.messages}, 15)
        assert {m['project_id'] for m in udp.messages} <= set(PROJECTS)
        assert {m['counter_name'] for m in udp.messages} <= {'instance',
                                                              'memory'}
        assert post(service, '/unsubscribe',
                    {'app_id': 'cord-app'}).status_code == 200
        assert 'cord-app' not in listed(service)
    finally:
        udp.close()


def test_http_and_amqp_targets_and_counters(service):
    """A live HTTP target, a dead one (accepts, never answers) and an
    AMQP queue: the live one gets its samples, the batches are acked,
    whatever the dead one does."""
    live = SampleHTTPServer()
    hanging = HangingHTTPServer()
    try:
        answer = post(service, '/v2/subscribe', {
            'app_id': 'web', 'target': f'http://user:pw@127.0.0.1:'
                                       f'{live.port}/in',
            'sub_info': 'mem*',
            'query': [{'field': 'project_id', 'op': 'eq',
                       'value': PROJECTS[0]}]})
        assert answer.status_code == 201, answer.text
        assert 'pw' not in answer.text
        dead = post(service, '/v2/subscribe', {
            'app_id': 'dead', 'target': hanging.url, 'sub_info': '*'})
        assert dead.status_code == 201
        queued = post(service, '/v2/subscribe', {
            'app_id': 'queue', 'target': 'amqp://', 'sub_info': 'vcpus'})
        assert queued.status_code == 201
        queue = queued.json()['queue']
        assert wait_until(lambda: (notify(service, PROJECTS[0]) and False)
                          or live.samples(), 15, 1.0)
        mine = notify(service, PROJECTS[0], 3)
        notify(service, PROJECTS[1], 2)
        notify(service, FOREIGN, 2)
        assert wait_until(lambda: set(mine) <= {
            s['resource_id'] for s in live.samples()}, 15)
        assert {s['project_id'] for s in live.samples()} == {PROJECTS[0]}
        # Every notification acknowledged while the dead target hangs.
        assert wait_until(lambda: bus.unsettled_messages(
            f'{service["topic"]}.info') == 0, 15)
        assert {s['name'] for s in live.samples()} == {'memory'}
        got = []
        assert wait_until(lambda: got.extend(pubsub.read_queue(queue))
                          or set(mine) <= {m['resource_id'] for m in got},
                          15)
        assert {m['project_id'] for m in got} <= set(PROJECTS)
        shown = {}
        assert wait_until(lambda: shown.update(listed(service)) or (
            shown['web']['delivered'] > 0 and shown['dead']['dropped'] > 0),
            15)
        assert shown['web']['target'] == (f'http://***@127.0.0.1:'
                                          f'{live.port}/in')
        assert shown['dead']['last_error']
        assert 'pw' not in service['agent'].log()
        for app in ('web', 'dead', 'queue'):
            assert requests.delete(
                f'{service["proxy"].url}/v2/subscribe/{app}',
                headers=TOKEN, timeout=30).status_code == 200
        assert listed(service) == {}
    finally:
        hanging.close()
        live.close()


@pytest.mark.parametrize('body,status', [
    ('not json', 400),
    ('[]', 400),
    ('{"app_id": "a", "target": "udp://127.0.0.1:9"}', 400),
    ('{"app_id": "a", "target": "ftp://h/x", "sub_info": "cpu"}', 400),
    ('{"app_id": "a", "target": "udp://127.0.0.1", "sub_info": "cpu"}',
     400),
    ('{"app_id": "a", "target": "udp://h:1", "sub_info": "cpu", '
     '"query": [{"field": "x", "op": "eq", "value": 1}]}', 400),
    ('{"app_id": "a", "target": "udp://h:1", "sub_info": "cpu", '
     '"query": [{"field": "volume", "op": "like", "value": 1}]}', 400),
    (json.dumps({'app_id': 'a', 'target': 'udp://127.0.0.1:1',
                 'sub_info': 'cpu', 'query': [
                     {'field': 'project_id', 'op': 'ne',
                      'value': FOREIGN}]}), 403),
    (json.dumps({'app_id': 'a', 'target': 'udp://127.0.0.1:1',
                 'sub_info': 'cpu', 'query': [
                     {'field': 'project_id', 'op': 'in',
                      'value': [PROJECTS[0], FOREIGN]}]}), 403),
])
def test_bad_bodies_are_refused_with_json(service, body, status):
    answer = post(service, '/v2/subscribe', body, raw=True)
    assert answer.status_code == status, answer.text
    assert answer.json()['error_message']['faultcode'] == 'Client'
    assert listed(service).get('a') is None


def test_deleting_the_channel_removes_its_subscriptions(service):
    store = service['store']
    other = pubsub.make_channel(store, PROJECTS)
    record = pubsub.store_subscription(store, other, PROJECTS, {
        'app_id': 'x', 'target': 'amqp://', 'sub_info': 'cpu'})
    assert store.get_subscriptions(ids=[record['id']])
    store.delete_channel(other)
    assert store.get_subscriptions(channel_id=other) == []
