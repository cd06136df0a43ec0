"""Every route of the API, with every method, is either scoped by a
channel's proxy as its declaration says or refused by it: never passed
on untouched, never forgotten (calipso_agent/wsgi/v2_routes.py)."""

import json
import urllib.parse

import pytest
import webob

from calipso_agent.api.v2 import ROUTES as API_ROUTES
from calipso_agent.wsgi import v2_routes
from calipso_proxy.proxy import app as proxy_app
from calipso_proxy.proxy import backend as backend_mod
from calipso_proxy.proxy import token_gate
from tests.unit.proxy.proxy.test_isolation import proxy_conf

CHANNEL = ('project-a', 'project-b')
METHODS = ('GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS')
DECLARED = {declared.template: declared for declared in v2_routes.ROUTES}


class RecordingBackend:
    """A backend answering an empty in-scope document and recording what
    the proxy sent."""

    base_url = 'http://backend.invalid:8777'
    session = None

    def __init__(self):
        self.sent = []

    def request(self, method, path, params=(), body=None, headers=None):
        self.sent.append((method, path, list(params), body))
        item = {'project_id': CHANNEL[0], 'links': []}
        document = item if path.startswith((
            '/v2/samples/', '/v2/resources/', '/v2/capabilities')) else []
        return backend_mod.BackendResponse(200, 'application/json',
                                           json.dumps(document).encode())


def concrete_path(template):
    """A path matching ``template``: ``x1`` per segment, ``a/b`` for the
    rest of the path."""
    segments = []
    for pattern in template.strip('/').split('/'):
        if pattern.endswith(':path}'):
            segments.append(urllib.parse.quote('a/b', safe=''))
        elif pattern.startswith('{'):
            segments.append('x1')
        else:
            segments.append(pattern)
    return '/' + '/'.join(segments)


def ask(path, method):
    backend = RecordingBackend()
    proxy = proxy_app.ChannelProxy(proxy_conf(CHANNEL), backend=backend,
                                   auth=object())
    request = webob.Request.blank(path, method=method)
    request.environ[token_gate.AUTHENTICATED] = True
    if method in ('POST', 'PUT', 'PATCH'):
        request.body = b'{}'
        request.content_type = 'application/json'
    return request.get_response(proxy), backend.sent


def scope_term(params):
    return ('q.value', ','.join(CHANNEL)) in params


def test_the_api_serves_exactly_the_declared_routes():
    assert [route.template for route in API_ROUTES] == list(DECLARED)
    for route in API_ROUTES:
        declared = DECLARED[route.template]
        assert set(route.handlers) == set(declared.endpoints)
        assert route.public == declared.public
        for method, endpoint in declared.endpoints.items():
            assert route.handlers[method].__name__ == (
                endpoint.handler.rpartition('.')[2])


@pytest.mark.parametrize('template', [r.template for r in API_ROUTES])
@pytest.mark.parametrize('method', METHODS)
def test_each_api_route_and_method_is_scoped_or_refused(template, method):
    declared = DECLARED[template]
    endpoint = declared.endpoints.get('GET' if method == 'HEAD' else method)
    path = concrete_path(template)
    response, sent = ask(path, method)
    proxied = {m for m, e in declared.endpoints.items()
               if e.proxy != v2_routes.REFUSED}
    if endpoint is None or endpoint.proxy == v2_routes.REFUSED:
        assert sent == []
        # '/' holds an empty segment: refused (400) before any routing.
        expected = 400 if path == '/' else 405 if proxied else 404
        assert response.status_int == expected
        if method != 'HEAD':
            assert response.json['error_message']['faultcode'] == 'Client'
        return
    kind = endpoint.proxy
    if kind == v2_routes.SUBSCRIBE:
        if method == 'POST':
            # An empty body is no subscription: refused, not forwarded.
            assert response.status_int == 400 and sent == []
            return
        [(sent_method, sent_path, params, body)] = sent
        assert sent_method in ('GET', 'DELETE')
        assert sent_path.startswith('/v2/subscribe') and params == []
        return
    assert response.status_int == 200, response.body
    [(sent_method, _, params, body)] = sent
    if kind == v2_routes.QUERY:
        assert sent_method == 'POST'
        assert json.loads(json.loads(body)['filter']) == {
            'in': {'project_id': list(CHANNEL)}}
    elif kind in (v2_routes.LIST, v2_routes.STATISTICS):
        assert sent_method == 'GET' and scope_term(params)
    elif kind == v2_routes.ITEM:
        assert sent_method == 'GET' and params == []
    elif kind == v2_routes.INVENTORY:
        # Forwarded as asked: the API scopes it by the declared projects.
        assert sent_method == 'GET' and params == []
    else:
        assert kind == v2_routes.PUBLIC
        assert sent_method == 'GET' and not scope_term(params)


def test_item_outside_the_channel_is_not_found():
    class OtherProject(RecordingBackend):
        def request(self, *args, **kwargs):
            super().request(*args, **kwargs)
            return backend_mod.BackendResponse(
                200, 'application/json',
                json.dumps({'project_id': 'project-z'}).encode())
    proxy = proxy_app.ChannelProxy(proxy_conf(CHANNEL),
                                   backend=OtherProject(), auth=object())
    request = webob.Request.blank('/v2/samples/s1')
    request.environ[token_gate.AUTHENTICATED] = True
    assert request.get_response(proxy).status_int == 404


@pytest.mark.parametrize('path', ['/v2/unknown', '/v2', '/v2/meters/a/b',
                                  '/v3/meters', '/healthcheck'])
def test_unknown_path_is_refused(path):
    response, sent = ask(path, 'GET')
    assert response.status_int == 404
    assert sent == []


def test_a_declaration_needs_a_known_proxy_kind():
    with pytest.raises(ValueError):
        v2_routes.Declaration('/v2/new', {
            'GET': v2_routes.Endpoint('new.read', 'forward')})


@pytest.mark.parametrize('method, path', [
    ('GET', '/v2/polling/sources'), ('HEAD', '/v2/polling/sources'),
    ('PUT', '/v2/polling/sources/host_source'),
    ('DELETE', '/v2/polling/sources/host_source'),
    ('GET', '/v2/polling/sources/host_source')])
def test_the_polling_routes_are_refused(method, path):
    # Admins only: the probing level of the polling agents is never a
    # channel's to read or change.
    response, sent = ask(path, method)
    assert response.status_int == 404
    assert sent == []


def test_proxy_answer_has_an_etag_and_is_not_modified_on_it():
    proxy = proxy_app.ChannelProxy(proxy_conf(CHANNEL),
                                   backend=RecordingBackend(), auth=object())

    def get(**headers):
        request = webob.Request.blank('/v2/meters', headers=headers)
        request.environ[token_gate.AUTHENTICATED] = True
        return request.get_response(proxy)
    first = get()
    assert first.status_int == 200 and first.etag
    again = get(**{'If-None-Match': f'"{first.etag}"'})
    assert again.status_int == 304 and again.body == b''
    assert get(**{'If-None-Match': '"other"'}).body == first.body
