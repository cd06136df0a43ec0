"""The proxy's subscription routes: a body is checked and scoped before
anything is forwarded; CORD's paths go to /v2/subscribe; the backend
learns the channel."""

import json

import pytest
import webob

from calipso_agent import project_scope
from calipso_proxy.proxy import app as proxy_app
from calipso_proxy.proxy import backend as backend_mod
from calipso_proxy.proxy import token_gate
from tests.unit.proxy.proxy.test_isolation import proxy_conf

CHANNEL = ('project-a', 'project-b')


class Backend:
    base_url = 'http://backend.invalid:8777'
    session = None

    def __init__(self):
        self.sent = []

    def request(self, method, path, params=(), body=None, headers=None):
        self.sent.append((method, path, body))
        return backend_mod.BackendResponse(201, 'application/json', b'{}')


def ask(method, path, body=None):
    backend = Backend()
    proxy = proxy_app.ChannelProxy(proxy_conf(CHANNEL), backend=backend,
                                   auth=object())
    request = webob.Request.blank(path, method=method)
    request.environ[token_gate.AUTHENTICATED] = True
    if body is not None:
        request.body = body if isinstance(body, bytes) else json.dumps(
            body).encode()
    return request.get_response(proxy), backend.sent


@pytest.mark.parametrize('path', ['/subscribe', '/v2/subscribe'])
def test_subscribe_is_forwarded_scoped(path):
    response, sent = ask('POST', path, {
        'app_id': 'a', 'target': 'udp://10.0.0.1:5000',
        'sub_info': 'cpu_*',
        'query': [{'field': 'project_id', 'op': 'eq',
                   'value': 'project-a'}]})
    assert response.status_int == 201
    [(method, forwarded_path, body)] = sent
    assert (method, forwarded_path) == ('POST', '/v2/subscribe')
    assert json.loads(body)['query'] == [
        {'field': 'project_id', 'op': 'eq', 'value': 'project-a'},
        {'field': 'project_id', 'op': 'in', 'value': list(CHANNEL)}]


@pytest.mark.parametrize('body,status', [
    (b'', 400), (b'{', 400),
    ({'app_id': 'a', 'target': 'udp://h:1', 'sub_info': 'cpu',
      'query': [{'field': 'project', 'op': 'ne', 'value': 'project-z'}]},
     403),
    ({'app_id': 'a', 'target': 'gopher://h:1', 'sub_info': 'cpu'}, 400),
])
def test_bad_bodies_are_not_forwarded(body, status):
    response, sent = ask('POST', '/v2/subscribe', body)
    assert response.status_int == status
    assert response.json['error_message']['faultcode'] == 'Client'
    assert sent == []


def test_cord_unsubscribe_is_a_delete():
    _, sent = ask('POST', '/unsubscribe', {'app_id': 'my.app'})
    assert sent == [('DELETE', '/v2/subscribe/my.app', None)]
    _, sent = ask('POST', '/unsubscribe', {'app_id': '../x'})
    assert sent == []


def test_the_backend_is_told_the_channel():
    client = backend_mod.BackendClient(proxy_conf(CHANNEL),
                                       session=object())
    assert client.scope_headers[project_scope.CHANNEL_HEADER] == (
        'channel-1')
