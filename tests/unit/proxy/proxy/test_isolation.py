"""A channel's proxy shows exactly what the backend shows of the channel's
projects, whatever the tenant asks (DESIGN.md section 7).

Property: random samples over 10 projects, a random channel, random
tenant requests on every endpoint (q filters on project_id and
resource_id, complex queries with or/not). The proxy, in front of the
real API over a store of every sample, must answer what the same API
answers over a store holding only the channel's samples, or 403 when the
request names a project outside the channel; and never an item of
another project.
"""

import datetime
import json
import math
import urllib.parse

import pytest
import webob
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calipso_agent.api import app as api_app
from calipso_agent.api import rbac
from calipso_agent.storage.sql import sqlite
from calipso_proxy import opts as proxy_opts
from calipso_proxy.proxy import app as proxy_app
from calipso_proxy.proxy import backend as backend_mod
from calipso_proxy.proxy import tenant_auth
from tests.helpers import basics

PROJECTS = [f'project-{i}' for i in range(10)]
METERS = ('cpu', 'memory')
T0 = datetime.datetime(2026, 3, 1, tzinfo=datetime.UTC)
TOKEN = 'channel-secret-token'
BACKEND_URL = 'http://backend.invalid:8777'
PUBLIC_URL = 'http://channel.invalid:9100/'
# keystonemiddleware's headers for the proxy's service user (the role of
# [api] multi_project_role) and for an admin reading the reference.
SERVICE_USER = {'X-Roles': 'service', 'X-Project-Id': 'service-project',
                'X-User-Id': 'calipso-proxy', 'X-Identity-Status':
                'Confirmed'}
ADMIN = {'X-Roles': 'admin', 'X-Project-Id': 'admin-project',
         'X-User-Id': 'admin', 'X-Identity-Status': 'Confirmed'}


class WSGIBackend(backend_mod.BackendClient):
    """The proxy's backend client, sending to a WSGI app in-process."""

    def __init__(self, conf, application):
        self.base_url = conf.proxy.backend_url.rstrip('/')
        self.session = None
        self.application = application
        self.scope_header = ','.join(sorted(conf.proxy.authorized_projects))

    def request(self, method, path, params=(), body=None, headers=None):
        url = self.base_url + path
        params = list(params)
        if params:
            url += '?' + urllib.parse.urlencode(params)
        request = webob.Request.blank(url, method=method)
        request.headers.update(SERVICE_USER)
        request.headers[rbac.SCOPE_HEADER] = self.scope_header
        if body is not None:
            request.body = body
            request.content_type = 'application/json'
        response = request.get_response(self.application)
        return backend_mod.BackendResponse(
            response.status_code, response.content_type or '',
            response.body)


def store_of(samples):
    conf = basics.make_conf(database__connection='sqlite://',
                             api__multi_project_role='service')
    store = sqlite.Connection(conf, 'sqlite://')
    store.record_samples(samples)
    return conf, store


def proxy_conf(projects):
    conf = basics.make_conf(database__connection='sqlite://')
    proxy_opts.register_opts(conf)
    conf.set_override('channel_id', 'channel-1', 'proxy')
    conf.set_override('authorized_projects', sorted(projects), 'proxy')
    conf.set_override('backend_url', BACKEND_URL, 'proxy')
    conf.set_override('token_hash', tenant_auth.token_hash(TOKEN), 'proxy')
    conf.set_override('public_url', PUBLIC_URL, 'proxy')
    return conf


sample_rows = st.lists(
    st.tuples(st.integers(0, 9), st.integers(0, 2), st.sampled_from(METERS),
              st.floats(-1e6, 1e6, allow_nan=False).map(
                  lambda v: round(v, 3)),
              st.integers(0, 3 * 86400)),
    min_size=1, max_size=40, unique_by=lambda row: row[4])


def make_samples(rows):
    samples = []
    for index, (project, resource, meter, volume, offset) in enumerate(rows):
        ts = (T0 + datetime.timedelta(seconds=offset)).isoformat()
        samples.append(basics.make_sample(
            index, name=meter, volume=volume, timestamp=ts,
            recorded_at=T0.isoformat(), project_id=PROJECTS[project],
            user_id=f'user-{project}',
            resource_id=f'vm-{project}-{resource}',
            resource_metadata={'flavor': f'm{resource}',
                               'project_hint': PROJECTS[project]}))
    return samples


projects = st.sampled_from(PROJECTS)
simple_terms = st.one_of(
    st.tuples(st.just('project_id'), st.sampled_from(['eq', 'ne']),
              projects),
    st.tuples(st.just('project_id'), st.just('in'),
              st.lists(projects, min_size=1, max_size=3).map(','.join)),
    st.tuples(st.just('project'), st.just('eq'), projects),
    st.tuples(st.just('resource_id'), st.sampled_from(['eq', 'ne']),
              st.builds(lambda p, r: f'vm-{p}-{r}', st.integers(0, 9),
                        st.integers(0, 2))),
    st.tuples(st.just('metadata.project_hint'), st.just('eq'), projects),
    st.tuples(st.just('timestamp'), st.sampled_from(['ge', 'lt']),
              st.integers(0, 3 * 86400).map(
                  lambda s: (T0 + datetime.timedelta(seconds=s))
                  .isoformat())),
)


def q_params(terms):
    params = []
    for field, op, value in terms:
        params += [('q.field', field), ('q.op', op), ('q.value', value)]
    return params


leaves = st.one_of(
    st.builds(lambda p: {'=': {'project_id': p}}, projects),
    st.builds(lambda p: {'!=': {'project': p}}, projects),
    st.builds(lambda ps: {'in': {'project_id': ps}},
              st.lists(projects, min_size=1, max_size=3)),
    st.builds(lambda v: {'>': {'volume': v}}, st.integers(-1000, 1000)),
    st.builds(lambda m: {'=': {'meter': m}}, st.sampled_from(METERS)),
)
filters = st.recursive(
    leaves, lambda children: st.one_of(
        st.builds(lambda a, b: {'or': [a, b]}, children, children),
        st.builds(lambda a, b: {'and': [a, b]}, children, children),
        st.builds(lambda a: {'not': a}, children)),
    max_leaves=6)

limits = st.one_of(st.none(), st.integers(1, 15))


@st.composite
def tenant_requests(draw):
    """(method, path, params, body) of one tenant request."""
    kind = draw(st.sampled_from(['meters', 'meter', 'statistics',
                                 'samples', 'sample', 'resources',
                                 'resource', 'query']))
    terms = draw(st.lists(simple_terms, max_size=3))
    params = q_params(terms)
    limit = draw(limits)
    if kind == 'meters':
        return 'GET', '/v2/meters', params, None
    if kind == 'meter':
        if limit:
            params.append(('limit', str(limit)))
        return 'GET', f'/v2/meters/{draw(st.sampled_from(METERS))}', \
            params, None
    if kind == 'statistics':
        for field in draw(st.lists(st.sampled_from(
                ['project_id', 'resource_id', 'user_id']), unique=True,
                max_size=2)):
            params.append(('groupby', field))
        period = draw(st.sampled_from([None, 3600, 86400]))
        if period:
            params.append(('period', str(period)))
        for func in draw(st.lists(st.sampled_from(
                ['avg', 'sum', 'count', 'max', 'stddev', 'cardinality']),
                unique=True, max_size=3)):
            params.append(('aggregate.func', func))
            if func == 'cardinality':
                params.append(('aggregate.param', 'project_id'))
        return 'GET', f'/v2/meters/{draw(st.sampled_from(METERS))}' \
                      '/statistics', params, None
    if kind == 'samples':
        if limit:
            params.append(('limit', str(limit)))
        return 'GET', '/v2/samples', params, None
    if kind == 'sample':
        return 'GET', '/v2/samples/{sample}', [], None
    if kind == 'resources':
        return 'GET', '/v2/resources', params, None
    if kind == 'resource':
        project, resource = draw(st.integers(0, 9)), draw(st.integers(0, 2))
        return 'GET', f'/v2/resources/vm-{project}-{resource}', [], None
    body = {}
    if draw(st.booleans()):
        body['filter'] = json.dumps(draw(filters))
    if limit:
        body['limit'] = limit
    if draw(st.booleans()):
        body['orderby'] = json.dumps([{'volume': draw(st.sampled_from(
            ['asc', 'desc']))}])
    return 'POST', '/v2/query/samples', [], json.dumps(body).encode()


def names_outside(method, params, body, channel):
    """Whether the request names a project outside the channel in a
    term (simple query) or a leaf (complex query), whatever the
    operator."""
    named = []
    fields = [v for k, v in params if k == 'q.field']
    ops = [v for k, v in params if k == 'q.op']
    values = [v for k, v in params if k == 'q.value']
    for field, op, value in zip(fields, ops, values, strict=True):
        if field in ('project_id', 'project') and op == 'in':
            named += value.split(',')
        elif field in ('project_id', 'project'):
            named.append(value)
    if method == 'POST' and body:
        text = json.loads(body).get('filter')

        def walk(expr):
            ((op, operand),) = expr.items()
            if op in ('and', 'or'):
                for child in operand:
                    walk(child)
            elif op == 'not':
                walk(operand)
            else:
                for field, value in operand.items():
                    if field in ('project_id', 'project'):
                        named.extend(value if isinstance(value, list)
                                     else [value])
        if text:
            walk(json.loads(text))
    return any(project not in channel for project in named)


def send(application, method, path, params, body, headers=None):
    url = path + ('?' + urllib.parse.urlencode(params) if params else '')
    request = webob.Request.blank(url, method=method,
                                  base_url='http://proxy.invalid:9100')
    for name, value in (headers or {}).items():
        request.headers[name] = value
    if body is not None:
        request.body = body
        request.content_type = 'application/json'
    return request.get_response(application)


def normalized(value):
    """An answer with floats rounded and links relative, to compare."""
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else value
    if isinstance(value, list):
        return [normalized(v) for v in value]
    if isinstance(value, dict):
        out = {k: normalized(v) for k, v in value.items()}
        if k_href := out.get('href'):
            out['href'] = urllib.parse.urlsplit(k_href)._replace(
                scheme='', netloc='').geturl()
        return out
    return value


def carried_projects(path, answer):
    items = answer if isinstance(answer, list) else [answer]
    found = set()
    for item in items:
        if not isinstance(item, dict):
            continue
        if 'project_id' in item:
            found.add(item['project_id'])
        groupby = item.get('groupby') or {}
        if 'project_id' in groupby:
            found.add(groupby['project_id'])
    return found


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow,
                                  HealthCheck.data_too_large])
@given(rows=sample_rows,
       channel=st.sets(st.sampled_from(PROJECTS), min_size=1, max_size=4),
       requests=st.lists(tenant_requests(), min_size=1, max_size=6),
       picked=st.integers(0, 1000))
def test_proxy_answers_what_the_backend_shows_of_the_channel(
        rows, channel, requests, picked):
    samples = make_samples(rows)
    full_conf, full_store = store_of(samples)
    ref_conf, ref_store = store_of(
        [s for s in samples if s.project_id in channel])
    backend = api_app.setup_app(full_conf, full_store)
    reference = api_app.setup_app(ref_conf, ref_store)
    conf = proxy_conf(channel)
    proxy = proxy_app.ChannelProxy(conf, backend=WSGIBackend(conf, backend))
    tenant = {'X-Auth-Token': TOKEN}
    for method, path, params, body in requests:
        if '{sample}' in path:
            path = f'/v2/samples/{samples[picked % len(samples)].id}'
        answer = send(proxy, method, path, params, body, tenant)
        assert answer.content_type == 'application/json', answer.text
        assert answer.status_code < 500, answer.text
        if names_outside(method, params, body, channel):
            assert answer.status_code == 403, (path, params, body,
                                               answer.text)
            assert 'not authorized' in answer.json['error_message'][
                'faultstring']
            continue
        expected = send(reference, method, path, params, body, ADMIN)
        assert expected.status_code in (200, 404), expected.text
        assert expected.status_code == 200 or path.count('/') == 3
        assert answer.status_code == expected.status_code, (
            path, params, body, answer.text, expected.text)
        if answer.status_code == 200:
            assert carried_projects(path, answer.json) <= channel
            assert normalized(answer.json) == normalized(expected.json), (
                path, params, body)
    full_store.close()
    ref_store.close()


@pytest.fixture
def proxy():
    rows = [(p, r, m, float(p * 10 + r), p * 1000 + r * 10 + i)
            for p in range(4) for r in range(2) for i, m in
            enumerate(METERS)]
    samples = make_samples(rows)
    conf, store = store_of(samples)
    backend = api_app.setup_app(conf, store)
    pconf = proxy_conf({'project-1', 'project-2'})
    yield proxy_app.ChannelProxy(pconf, backend=WSGIBackend(pconf, backend))
    store.close()


def test_no_token_is_401_before_anything_is_forwarded(proxy):
    forwarded = []
    proxy.backend.request = lambda *a, **k: forwarded.append(a)
    for headers in ({}, {'X-Auth-Token': 'wrong'},
                    {'X-Auth-Token': TOKEN.upper()}):
        answer = send(proxy, 'GET', '/v2/samples', [], None, headers)
        assert answer.status_code == 401
        assert answer.json['error_message']['faultcode'] == 'Client'
    assert forwarded == []


@pytest.mark.parametrize('method', ['POST', 'PUT', 'PATCH', 'DELETE'])
@pytest.mark.parametrize('path', ['/v2/meters/cpu', '/v2/samples',
                                  '/v2/resources/vm-1-0'])
def test_writes_are_405(proxy, method, path):
    answer = send(proxy, method, path, [], b'[]',
                  {'X-Auth-Token': TOKEN})
    assert answer.status_code == 405
    assert 'GET' in answer.headers['Allow']


def test_statistics_are_computed_over_the_union(proxy):
    answer = send(proxy, 'GET', '/v2/meters/cpu/statistics',
                  [('aggregate.func', 'avg'),
                   ('aggregate.func', 'cardinality'),
                   ('aggregate.param', 'project_id')], None,
                  {'X-Auth-Token': TOKEN})
    assert answer.status_code == 200, answer.text
    (stats,) = answer.json
    # cpu volumes of project-1 and project-2: 10, 11, 20, 21.
    assert stats['avg'] == pytest.approx(15.5)
    assert stats['aggregate']['cardinality/project_id'] == 2


@pytest.mark.parametrize('path', ['/v2/resources/vm-1-0', '/v2/resources'])
def test_resource_links_point_at_the_public_url_whatever_the_host(proxy,
                                                                   path):
    answer = send(proxy, 'GET', path, [], None,
                  {'X-Auth-Token': TOKEN, 'Host': 'evil.example:666'})
    assert answer.status_code == 200, answer.text
    items = answer.json if isinstance(answer.json, list) else [answer.json]
    hrefs = [link['href'] for item in items for link in item['links']]
    assert hrefs and all(h.startswith(PUBLIC_URL + 'v2/') for h in hrefs)


def test_a_leak_from_the_backend_is_never_passed_on(proxy):
    leaking = backend_mod.BackendResponse(
        200, 'application/json',
        json.dumps([{'project_id': 'project-7', 'id': 'x'}]).encode())
    proxy.backend.request = lambda *a, **k: leaking
    answer = send(proxy, 'GET', '/v2/samples', [], None,
                  {'X-Auth-Token': TOKEN})
    assert answer.status_code == 502
    assert 'project-7' not in answer.text


garbage_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(['project_id', 'project', 'resource_id', 'timestamp',
                     'metadata.flavor', 'eq', 'in', 'ne', 'lt', 'integer',
                     'boolean', 'datetime', '-1', '0', '1e400', 'nan',
                     'project-1', 'project-7', 'project-1,project-7',
                     '2026-03-01T00:00:00', '%', '\x00', '{"a": 1}']))
garbage_params = st.lists(st.tuples(st.sampled_from(
    ['q.field', 'q.op', 'q.value', 'q.type', 'limit', 'groupby', 'period',
     'aggregate.func', 'aggregate.param', 'unique', 'meter_links', 'x']),
    garbage_text), max_size=8)
garbage_bodies = st.one_of(
    st.none(), st.binary(max_size=40),
    st.builds(lambda f, o, limit: json.dumps(
        {'filter': f, 'orderby': o, 'limit': limit}).encode(),
        st.one_of(garbage_text, filters.map(json.dumps),
                  st.recursive(st.none() | st.integers() | garbage_text,
                               lambda c: st.lists(c, max_size=3)
                               | st.dictionaries(garbage_text, c,
                                                 max_size=3),
                               max_leaves=8).map(json.dumps)),
        st.one_of(garbage_text, st.just('[{"volume": "asc"}]')),
        st.one_of(st.none(), st.integers(-5, 5), garbage_text)))
garbage_paths = st.one_of(
    st.sampled_from(['/v2/meters', '/v2/meters/cpu',
                     '/v2/meters/cpu/statistics', '/v2/samples',
                     '/v2/resources', '/v2/query/samples',
                     '/v2/capabilities', '/v2/resources/vm-7-0',
                     '/v2/resources/vm-1-0', '/v2/samples/x', '/',
                     '/v2', '/v3/auth/tokens', '/v2/meters/a/b/c']),
    st.text(alphabet='abcdefgv/2%.-_', max_size=25).map(lambda p: '/' + p))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow,
                                 HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(['GET', 'POST', 'PUT', 'DELETE', 'HEAD']),
       path=garbage_paths, params=garbage_params, body=garbage_bodies)
def test_garbage_is_a_json_4xx_never_a_5xx_nor_a_leak(proxy, method, path,
                                                      params, body):
    answer = send(proxy, method, path, params, body,
                  {'X-Auth-Token': TOKEN})
    assert answer.status_code < 500, (method, path, params, body,
                                      answer.text)
    if method == 'HEAD':
        return
    assert answer.content_type == 'application/json'
    if answer.status_code >= 400:
        assert answer.json['error_message']['faultcode'] == 'Client'
    else:
        assert carried_projects(path, answer.json) <= {'project-1',
                                                       'project-2'}
