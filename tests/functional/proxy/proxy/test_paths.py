"""No path trick reaches the backend unscoped (issue 11, item 4).

A real calipso-proxy in front of a recording backend (an HTTP server
that keeps every request it gets and answers empty JSON). Random raw
paths (encoded and plain dot segments, empty segments, encoded slashes,
double encoding) on every route, with and without query strings, are
sent as they are (http.client never normalizes). Every request the
backend got must be an item read whose id is exactly one segment the
proxy checked (no dot or empty part, no query string), or carry the
channel's project constraint; and every one names the channel's
projects in X-Calipso-Project-Scope.
"""

import http.client
import http.server
import json
import threading
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calipso_agent.api import rbac
from tests.helpers import daemons

pytestmark = pytest.mark.functional

CHANNEL = ['p-allowed-1', 'p-allowed-2']
ROUTES = ['/v2/meters', '/v2/meters/cpu', '/v2/meters/cpu/statistics',
          '/v2/samples', '/v2/resources', '/v2/query/samples',
          '/v2/capabilities', '/v2/samples/x', '/v2/resources/x', '/v2',
          '', '/v2/inventory', '/v2/inventory/x', '/v2/inventory/x/clique',
          '/v2/topology']
SEGMENTS = ['.', '..', '%2E', '%2e', '%2E%2E', '%2e%2E', '.%2E', '', 'x',
            'vm-1', 'a%2Fb', '%2F', 'a%2F..%2Fb', '%2F%2E%2F', '%252E',
            '%252E%252E', ';', '%00', '%3F', '%23', 'samples', 'resources',
            'statistics', 'v2', '...', 'a.b', '%5C', '\\..']
QUERIES = ['', '?', '?limit=5', '?q.field=project_id&q.value=p-foreign',
           '?q.field=resource_id&q.value=x',
           '?q.field=project_id&q.op=in&q.value=p-allowed-1,p-foreign',
           '?project_id=p-foreign', '?project_id=p-allowed-1,p-foreign',
           '?project_id=p-allowed-2&type=host']


class RecordingBackend:
    """The backend: (method, raw path, headers, body) of every request."""

    def __init__(self):
        self.received = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get('Content-Length') or 0)
                recorder.received.append((self.command, self.path,
                                          dict(self.headers),
                                          self.rfile.read(length)))
                body = b'{}' if self.path.startswith(
                    '/v2/capabilities') else b'[]'
                self.send_response(200)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_HEAD = _answer  # noqa: N815

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0),
                                                      Handler)
        self.url = f'http://127.0.0.1:{self.server.server_address[1]}'
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope='module')
def recorded(tmp_path_factory):
    backend = RecordingBackend()
    proxy = daemons.ProxyServer(tmp_path_factory.mktemp('proxy-paths'),
                                CHANNEL, backend.url, {})
    try:
        yield backend, proxy.start()
    finally:
        proxy.stop()
        backend.close()


def send_raw(proxy, method, raw_path, body=None):
    connection = http.client.HTTPConnection('127.0.0.1', proxy.port,
                                            timeout=30)
    try:
        connection.putrequest(method, raw_path, skip_accept_encoding=True)
        connection.putheader('X-Auth-Token', daemons.CHANNEL_TOKEN)
        if body is not None:
            connection.putheader('Content-Type', 'application/json')
            connection.putheader('Content-Length', str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def scoped(method, path, body):
    """Whether a forwarded request carries the channel's constraint."""
    route, _, query = path.partition('?')
    if method == 'POST':
        expression = json.loads(json.loads(body)['filter'])
        scope = {'in': {'project_id': CHANNEL}}
        return expression == scope or (
            'and' in expression and expression['and'][0] == scope)
    params = urllib.parse.parse_qsl(query, keep_blank_values=True)
    fields = [v for k, v in params if k == 'q.field']
    ops = [v for k, v in params if k == 'q.op']
    values = [v for k, v in params if k == 'q.value']
    return ('project_id', 'in', ','.join(CHANNEL)) in zip(
        fields, ops, values, strict=True)


def inventory_read(method, path):
    """Whether a forwarded request is an inventory read the proxy
    checked: GET, no dot or empty segment once decoded, every project_id
    of the channel (the API reads it in the declared scope)."""
    route, _, query = path.partition('?')
    segments = route.split('/')
    if method != 'GET' or segments[:3] not in (['', 'v2', 'inventory'],
                                               ['', 'v2', 'topology']):
        return False
    if any(part in ('', '.', '..') for segment in segments[1:]
           for part in urllib.parse.unquote(segment).split('/')):
        return False
    named = [project for key, value in urllib.parse.parse_qsl(query)
             if key == 'project_id' for project in value.split(',')]
    return all(project in CHANNEL for project in named)


def item_read(method, path):
    """Whether a forwarded request reads one id the proxy checked: one
    segment after /v2/samples or /v2/resources, no dot or empty part
    once decoded, no query string."""
    segments = path.split('/')
    if method != 'GET' or '?' in path or len(segments) != 4 or (
            segments[:3] not in (['', 'v2', 'samples'],
                                 ['', 'v2', 'resources'])):
        return False
    identifier = urllib.parse.unquote(segments[3])
    return all(part not in ('', '.', '..')
               for part in identifier.split('/'))


raw_paths = st.builds(
    lambda route, extra, query: route + ''.join('/' + s for s in extra)
    + query,
    st.sampled_from(ROUTES), st.lists(st.sampled_from(SEGMENTS),
                                      max_size=4),
    st.sampled_from(QUERIES))


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(['GET', 'HEAD', 'POST']), raw_path=raw_paths)
def test_no_path_reaches_the_backend_unscoped(recorded, method, raw_path):
    backend, proxy = recorded
    raw_path = raw_path if raw_path.startswith('/') else '/' + raw_path
    body = json.dumps({'filter': json.dumps(
        {'=': {'counter_name': 'cpu'}})}).encode() if method == 'POST' \
        else None
    seen = len(backend.received)
    status, answer = send_raw(proxy, method, raw_path, body)
    assert status < 500, (raw_path, answer)
    if status >= 400 and method != 'HEAD':
        assert json.loads(answer)['error_message']['faultstring']
    for got_method, path, headers, got_body in backend.received[seen:]:
        assert headers.get(rbac.SCOPE_HEADER) == ','.join(CHANNEL)
        if path.startswith('/v2/capabilities'):
            continue
        assert item_read(got_method, path) or inventory_read(
            got_method, path) or scoped(got_method, path, got_body), (
            raw_path, path)


@pytest.mark.parametrize('raw_path', [
    '/v2/samples/%2E', '/v2/resources/%2E', '/v2/samples/..',
    '/v2/samples/%2e%2E', '/v2/resources/a%2F..%2Fb', '/v2/samples//x',
    '/v2/samples/%2E?q.field=resource_id&q.value=x', '/v2//samples',
    '/v2/./samples', '/v2/meters/%2E%2E/statistics'])
def test_dot_and_empty_segments_are_400_and_not_forwarded(recorded,
                                                          raw_path):
    backend, proxy = recorded
    seen = len(backend.received)
    status, answer = send_raw(proxy, 'GET', raw_path)
    assert status == 400, answer
    assert json.loads(answer)['error_message']['faultcode'] == 'Client'
    assert backend.received[seen:] == []


def test_an_id_is_forwarded_as_one_encoded_segment(recorded):
    backend, proxy = recorded
    seen = len(backend.received)
    send_raw(proxy, 'GET', '/v2/resources/a%2Fb.c%3Fd')
    ((_, path, _, _),) = backend.received[seen:]
    assert path == '/v2/resources/a%2Fb.c%3Fd'


def test_item_routes_take_no_query_string(recorded):
    backend, proxy = recorded
    seen = len(backend.received)
    status, answer = send_raw(proxy, 'GET',
                              '/v2/samples/x?q.field=project_id&q.value=z')
    assert status == 400, answer
    assert backend.received[seen:] == []


@pytest.mark.parametrize('method, raw_path, body', [
    ('GET', '/v2/polling/sources', None),
    ('PUT', '/v2/polling/sources/host_source', b'{"interval": 1}'),
    ('PUT', '/v2/polling/sources/%2E', b'{"interval": 1}')])
def test_the_polling_routes_are_refused(recorded, method, raw_path, body):
    backend, proxy = recorded
    seen = len(backend.received)
    status, answer = send_raw(proxy, method, raw_path, body)
    assert status in (400, 404), answer
    assert json.loads(answer)['error_message']['faultcode'] == 'Client'
    assert backend.received[seen:] == []
