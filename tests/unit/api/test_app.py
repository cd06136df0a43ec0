"""The application: routing, error classes, the lazy store."""

import logging
import math

import pytest
import webob

from calipso_agent.api import app
from calipso_agent.storage import base
from tests.helpers import basics
from tests.unit.api import support
from tests.unit.api.support import fault


class FailingStore:
    """A store whose reads raise ``error``."""

    url = 'sqlite://'

    def __init__(self, error):
        self.error = error

    def _fail(self, *args, **kwargs):
        raise self.error

    get_samples = get_meters = get_resources = _fail
    get_statistics = query_samples = record_samples = _fail


def test_unknown_path_is_404_json(client):
    for path in ('/v2', '/v3/meters', '/v2/meters/cpu/statistics/x',
                 '/v2//meters'):
        response = client.get(path)
        assert fault(response)[:2] == (404, 'Client'), path
        assert response.content_type == 'application/json'


@pytest.mark.parametrize('method, path, allowed', [
    ('POST', '/v2/samples', 'GET, HEAD'),
    ('DELETE', '/v2/meters', 'GET, HEAD'),
    ('PUT', '/v2/meters/cpu', 'GET, HEAD, POST'),
    ('GET', '/v2/query/samples', 'POST'),
    ('HEAD', '/v2/query/samples', 'POST'),
])
def test_wrong_method_is_405(client, method, path, allowed):
    response = client.request(method, path)
    assert response.status_code == 405
    assert response.headers['Allow'] == allowed
    if method != 'HEAD':
        assert fault(response)[1] == 'Client'


@pytest.mark.parametrize('path, params', [
    ('/v2/meters', ()), ('/v2/meters/cpu', ()),
    ('/v2/meters/cpu/statistics', [('period', '600')]),
    ('/v2/samples', ()), ('/v2/resources', ()),
    ('/v2/resources/vm-0', ()), ('/v2/resources/nope', ()),
    ('/v2/capabilities', ()), ('/v2/meters/cpu/statistics',
                               [('period', '-1')]),
    ('/', ()), ('/v2/openapi.json', ()),
])
def test_head_answers_as_get_without_a_body(client, path, params):
    got = client.get(path, params)
    head = client.request('HEAD', path, params)
    assert head.status_code == got.status_code
    assert head.body == b''
    assert head.content_type == got.content_type
    assert int(head.headers['Content-Length']) == len(got.body)


def test_trailing_slash_is_ignored(client):
    assert client.get('/v2/meters/').json == client.get('/v2/meters').json


@pytest.mark.parametrize('error, status, code', [
    (base.StorageError('database is locked'), 503, 'Server'),
    (base.InvalidQuery('cannot answer'), 400, 'Client'),
    (RuntimeError('bug'), 500, 'Server'),
])
@pytest.mark.parametrize('method, path', [
    ('GET', '/v2/samples'), ('GET', '/v2/meters'),
    ('GET', '/v2/meters/cpu'), ('GET', '/v2/meters/cpu/statistics'),
    ('GET', '/v2/resources'), ('GET', '/v2/samples/x'),
    ('GET', '/v2/resources/x'), ('POST', '/v2/query/samples'),
])
def test_failures_are_json(conf, caplog, error, status, code, method,
                           path):
    client = support.Client(app.setup_app(conf, FailingStore(error)))
    with caplog.at_level(logging.WARNING):
        response = client.request(method, path,
                                  body={} if method == 'POST' else None)
    assert fault(response)[:2] == (status, code)
    if status == 500:
        assert fault(response)[2] == 'Internal server error'
        assert 'bug' in caplog.text


def test_unreachable_database_is_503_until_it_answers(tmp_path):
    conf = basics.make_conf(database__connection=(
        f'postgresql://nobody@127.0.0.1:{basics.free_port()}/none'))
    client = support.Client(app.setup_app(conf))
    assert fault(client.get('/v2/samples'))[:2] == (503, 'Server')
    assert client.app._storage is None
    assert client.get('/v2/openapi.json').status_code == 200


def test_store_is_made_from_the_configuration(conf, samples):
    api = app.setup_app(conf)
    api.storage().record_samples(samples[:2])
    client = support.Client(api)
    assert len(client.get('/v2/samples').json) == 2


def test_query_string_not_utf8_is_400(client):
    response = client.get('/v2/samples',
                          environ={'QUERY_STRING': 'q.field=%ff&q.value=x'})
    assert fault(response)[0] == 400


@pytest.mark.parametrize('environ', [
    {'RAW_URI': '/v2/resources/%ff'},
    {'PATH_INFO': '/v2/resources/\xff'},
])
def test_path_not_utf8_is_400(client, environ):
    response = client.get('/v2/resources/x', environ=environ)
    assert fault(response)[0] == 400


def test_non_finite_numbers_are_null(conf):
    class Overflowing(FailingStore):
        def get_statistics(self, *args, **kwargs):
            return [base.Statistics(
                unit='B', count=2, min=1e308, max=1e308, avg=math.inf,
                sum=math.inf, aggregate={}, duration=0.0, period=0,
                duration_start=support.T0, duration_end=support.T0,
                period_start=support.T0, period_end=support.T0)]

    client = support.Client(app.setup_app(conf, Overflowing(None)))
    (stats,) = client.get('/v2/meters/x/statistics').json
    assert (stats['sum'], stats['avg'], stats['max']) == (None, None,
                                                          1e308)


def test_setup_app_without_conf_reads_the_default_files(monkeypatch):
    monkeypatch.setattr('sys.argv', ['calipso-api'])
    api = app.setup_app()
    assert api.conf.api.port == 8777


def test_answers_are_json(client):
    response = webob.Request.blank('/v2/meters',
                                   headers=support.ADMIN).get_response(
        client.app)
    assert response.headers['Content-Type'] == 'application/json'


def test_root_is_the_versions_document(client):
    response = client.get('/', headers={})
    assert response.status_code == 200
    (version,) = response.json['versions']['values']
    assert version['id'] == 'v2'
    assert version['links'][0]['href'] == 'http://localhost/v2'


def test_get_answer_has_an_etag_and_is_not_modified_on_it(client):
    first = client.get('/v2/meters')
    assert first.status_int == 200 and first.etag
    again = client.get('/v2/meters',
                       headers={**client.headers,
                                'If-None-Match': f'"{first.etag}"'})
    assert again.status_int == 304 and again.body == b''
    other = client.get('/v2/meters', headers={
        **client.headers, 'If-None-Match': '"something-else"'})
    assert other.status_int == 200 and other.body == first.body
