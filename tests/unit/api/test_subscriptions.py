"""/v2/subscribe on the API: only a channel's proxy (the reader role
with exactly the channel's projects) or an admin acts on a channel's
subscriptions; bodies are checked again; targets outside the allowed
networks are refused."""

import pytest

from calipso_agent import project_scope
from calipso_agent.api import app
from tests.helpers import pubsub
from tests.unit.api import support

PROJECTS = ['project-a', 'project-b']


def reader(projects, channel):
    return {'X-Roles': 'calipso_reader', 'X-Project-Id': 'service',
            'X-User-Id': 'proxy', 'X-Identity-Status': 'Confirmed',
            project_scope.HEADER: ','.join(projects),
            project_scope.CHANNEL_HEADER: channel}


@pytest.fixture
def api(tmp_path, empty_store):
    conf = support.make_conf(
        tmp_path, subscription__allowed_target_cidrs=['127.0.0.0/8'])
    channel = pubsub.make_channel(empty_store, PROJECTS)
    return support.Client(app.setup_app(conf=conf, storage=empty_store),
                          headers=reader(PROJECTS, channel)), channel


BODY = {'app_id': 'a', 'target': 'udp://127.0.0.1:9', 'sub_info': 'cpu'}


def test_the_channels_proxy_subscribes_lists_and_unsubscribes(api):
    client, channel = api
    created = client.post('/v2/subscribe', BODY)
    assert created.status_int == 201
    assert created.json['query'] == [
        {'field': 'project_id', 'op': 'in', 'value': PROJECTS}]
    # The same app_id again replaces it.
    assert client.post('/subscribe', dict(BODY, sub_info='mem')
                       ).status_int == 201
    [shown] = client.get('/v2/subscribe').json
    assert shown['sub_info'] == ['mem'] and shown['delivered'] == 0
    assert client.request('DELETE', '/v2/subscribe/a').status_int == 200
    assert client.post('/unsubscribe', {'app_id': 'a'}).status_int == 404
    assert client.get('/v2/subscribe').json == []


@pytest.mark.parametrize('headers', [
    support.member('project-a'),
    reader(['project-a'], 'CHANNEL'),
    reader(PROJECTS + ['project-c'], 'CHANNEL'),
    reader(PROJECTS, 'another-channel'),
])
def test_anyone_else_is_refused(api, headers):
    client, channel = api
    headers = {k: v.replace('CHANNEL', channel) for k, v in headers.items()}
    for method, path, body in (('POST', '/v2/subscribe', BODY),
                               ('GET', '/v2/subscribe', None),
                               ('DELETE', '/v2/subscribe/a', None)):
        answer = client.request(method, path, body=body, headers=headers)
        assert answer.status_int == 403, (method, answer.json)


def test_target_outside_the_allowed_networks_is_refused(api):
    client, _ = api
    answer = client.post('/v2/subscribe',
                         dict(BODY, target='http://192.0.2.1:80/'))
    assert answer.status_int == 400
    assert 'not one targets may point to' in answer.json[
        'error_message']['faultstring']


def test_a_foreign_project_is_refused(api):
    client, _ = api
    answer = client.post('/v2/subscribe', dict(BODY, query=[
        {'field': 'project_id', 'op': 'ne', 'value': 'project-z'}]))
    assert answer.status_int == 403
