"""/v2/samples, and the simple query every list shares (checked here
against plain-Python predicates over the data set)."""

import pytest

from calipso_agent.api import app
from tests.helpers.basics import make_sample
from tests.helpers.oracle import instant
from tests.unit.api import support
from tests.unit.api.support import at, fault, query


def newest_first(samples):
    return sorted(samples, key=lambda s: (-instant(s.timestamp).timestamp(),
                                          s.id))


def ids_where(samples, predicate):
    return [s.id for s in newest_first(samples) if predicate(s)]


def ts(sample):
    return (instant(sample.timestamp) - support.T0).total_seconds()


def meta(sample, *keys):
    value = sample.resource_metadata
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


SIMPLE_QUERIES = {
    'user_id eq': (query(('user_id', 'eq', 'user-0')),
                   lambda s: s.user_id == 'user-0'),
    'user alias': (query(('user', 'eq', 'user-1')),
                   lambda s: s.user_id == 'user-1'),
    'default op is eq': ([('q.field', 'project_id'),
                          ('q.value', 'project-b')],
                         lambda s: s.project_id == 'project-b'),
    'empty op is eq': (query(('project_id', '', 'project-b')),
                       lambda s: s.project_id == 'project-b'),
    'resource ne': (query(('resource_id', 'ne', 'vm-0')),
                    lambda s: s.resource_id != 'vm-0'),
    'resource in': (query(('resource_id', 'in', 'vm-0, vm-2')),
                    lambda s: s.resource_id in ('vm-0', 'vm-2')),
    'source': (query(('source', 'eq', 'other')),
               lambda s: s.source == 'other'),
    'meter': (query(('meter', 'eq', 'memory')),
              lambda s: s.name == 'memory'),
    'meter in': (query(('meter', 'in', 'memory,cpu')), lambda s: True),
    'message_id': (query(('message_id', 'eq', 'n-3')),
                   lambda s: s.message_id == 'n-3'),
    'two eq terms intersect': (
        query(('resource_id', 'eq', 'vm-0'), ('resource_id', 'eq', 'vm-1')),
        lambda s: False),
    'eq and in intersect': (
        query(('resource_id', 'in', 'vm-0,vm-1'),
              ('resource_id', 'eq', 'vm-1')),
        lambda s: s.resource_id == 'vm-1'),
    'timestamp ge is inclusive': (query(('timestamp', 'ge', at(1200))),
                                  lambda s: ts(s) >= 1200),
    'timestamp gt': (query(('timestamp', 'gt', at(1200))),
                     lambda s: ts(s) > 1200),
    'timestamp lt is exclusive': (query(('timestamp', 'lt', at(1800))),
                                  lambda s: ts(s) < 1800),
    'timestamp le': (query(('timestamp', 'le', at(1800))),
                     lambda s: ts(s) <= 1800),
    'timestamp range': (
        query(('timestamp', 'ge', at(1200)), ('timestamp', 'lt', at(3000))),
        lambda s: 1200 <= ts(s) < 3000),
    'tightest bounds hold': (
        query(('timestamp', 'ge', at(600)), ('timestamp', 'gt', at(1200)),
              ('timestamp', 'le', at(3000)), ('timestamp', 'lt', at(3000))),
        lambda s: 1200 < ts(s) < 3000),
    'timestamp with offset': (
        query(('timestamp', 'ge', '2024-05-01T02:20:00+02:00')),
        lambda s: ts(s) >= 1200),
    'naive timestamp is UTC': (query(('timestamp', 'lt', '2024-05-01T00:20')),
                               lambda s: ts(s) < 1200),
    'search_offset widens both bounds': (
        query(('timestamp', 'ge', at(1200)), ('timestamp', 'lt', at(1800)),
              ('search_offset', 'eq', '10')),
        lambda s: 600 <= ts(s) < 2400),
    'metadata string': (query(('metadata.flavor.name', 'eq', 'm1.large')),
                        lambda s: meta(s, 'flavor', 'name') == 'm1.large'),
    'resource_metadata autodetected integer': (
        query(('resource_metadata.flavor.vcpus', 'eq', '4')),
        lambda s: meta(s, 'flavor', 'vcpus') == 4),
    'metadata typed string does not match a number': (
        query(('metadata.flavor.vcpus', 'eq', '4', 'string')),
        lambda s: False),
    'metadata boolean': (query(('metadata.enabled', 'eq', 'true',
                                'boolean')),
                         lambda s: meta(s, 'enabled') is True),
    'metadata autodetected boolean': (
        query(('metadata.enabled', 'eq', 'False')),
        lambda s: meta(s, 'enabled') is False),
    'metadata integer': (query(('metadata.size', 'eq', '3', 'integer')),
                         lambda s: meta(s, 'size') == 3),
    'metadata float matches an integer': (
        query(('metadata.size', 'eq', '3.0', 'float')),
        lambda s: meta(s, 'size') == 3),
    'metadata ne skips missing keys': (
        query(('metadata.state', 'ne', 'active')),
        lambda s: meta(s, 'state') == 'stopped'),
    'metadata in': (query(('metadata.size', 'in', '1,2,30')),
                    lambda s: meta(s, 'size') in (1, 2)),
    'metadata and id terms': (
        query(('metadata.state', 'eq', 'active'),
              ('project_id', 'eq', 'project-a')),
        lambda s: meta(s, 'state') == 'active'
        and s.project_id == 'project-a'),
}


@pytest.mark.parametrize('case', sorted(SIMPLE_QUERIES))
def test_simple_query(client, samples, case):
    params, predicate = SIMPLE_QUERIES[case]
    response = client.get('/v2/samples', params)
    assert response.status_code == 200, response.text
    assert [s['id'] for s in response.json] == ids_where(samples, predicate)


BAD_QUERIES = {
    'unknown field': (query(('colour', 'eq', 'red')), 'q.field'),
    'empty metadata key': (query(('metadata.', 'eq', 'x')), 'q.field'),
    'bad metadata key': (query(('metadata.a b', 'eq', 'x')), 'q.field'),
    'unknown operator': (query(('user_id', 'like', 'x')), 'q.op'),
    'lt on a value field': (query(('user_id', 'lt', 'x')), 'q.op'),
    'gt on metadata': (query(('metadata.size', 'gt', '1')), 'q.op'),
    'eq on timestamp': (query(('timestamp', 'eq', at())), 'q.op'),
    'bad timestamp': (query(('timestamp', 'ge', 'yesterday')), 'q.value'),
    'unknown type': (query(('metadata.size', 'eq', '1', 'date')),
                     'q.type'),
    'not an integer': (query(('metadata.size', 'eq', 'one', 'integer')),
                       'q.value'),
    'not a float': (query(('metadata.size', 'eq', 'nan', 'float')),
                    'q.value'),
    'not a boolean': (query(('metadata.enabled', 'eq', 'maybe', 'boolean')),
                      'q.value'),
    'not a datetime': (query(('metadata.at', 'eq', 'x', 'datetime')),
                       'q.value'),
    'empty in': (query(('resource_id', 'in', ' , ')), 'q.value'),
    'search_offset alone': (query(('search_offset', 'eq', '5')), 'q.field'),
    'search_offset not an integer': (
        query(('timestamp', 'ge', at()), ('search_offset', 'eq', 'x')),
        'q.value'),
    'search_offset not eq': (
        query(('timestamp', 'ge', at()), ('search_offset', 'gt', '1')),
        'q.op'),
    'search_offset out of range': (
        query(('timestamp', 'ge', '0001-01-01T00:00:00'),
              ('search_offset', 'eq', '10')), 'search_offset'),
    'fewer values than fields': (
        [('q.field', 'user_id'), ('q.field', 'source'),
         ('q.value', 'x')], 'q.value'),
    'fewer ops than fields': (
        [('q.field', 'user_id'), ('q.field', 'source'), ('q.op', 'eq'),
         ('q.value', 'x'), ('q.value', 'y')], 'q.op'),
    'fewer types than fields': (
        [('q.field', 'user_id'), ('q.field', 'source'), ('q.type', ''),
         ('q.value', 'x'), ('q.value', 'y')], 'q.type'),
}

LISTS = ('/v2/samples', '/v2/meters', '/v2/meters/cpu',
         '/v2/meters/cpu/statistics', '/v2/resources')


@pytest.mark.parametrize('path', LISTS)
@pytest.mark.parametrize('case', sorted(BAD_QUERIES))
def test_bad_query_is_400_naming_the_parameter(client, path, case):
    params, parameter = BAD_QUERIES[case]
    status, code, message = fault(client.get(path, params))
    assert (status, code) == (400, 'Client')
    assert parameter in message


@pytest.mark.parametrize('path', LISTS[:3] + LISTS[4:])
@pytest.mark.parametrize('limit', ['0', '-3'])
def test_limit_must_be_positive(client, path, limit):
    assert fault(client.get(path, [('limit', limit)])) == (
        400, 'Client', 'Limit must be positive')


@pytest.mark.parametrize('path', LISTS[:3] + LISTS[4:])
def test_limit_must_be_an_integer(client, path):
    status, _, message = fault(client.get(path, [('limit', 'ten')]))
    assert status == 400 and 'limit' in message


def test_limit(client, samples):
    response = client.get('/v2/samples', [('limit', '3')])
    assert [s['id'] for s in response.json] == [
        s.id for s in newest_first(samples)[:3]]
    huge = client.get('/v2/samples', [('limit', str(10 ** 30))])
    assert len(huge.json) == len(samples)


def test_default_limit(tmp_path, store):
    conf = support.make_conf(tmp_path, api__default_api_return_limit=2)
    client = support.Client(app.setup_app(conf=conf, storage=store))
    for path in ('/v2/samples', '/v2/meters', '/v2/meters/cpu',
                 '/v2/resources'):
        assert len(client.get(path).json) == 2, path


def test_sample_representation(client, samples):
    memory = [s for s in samples if s.message_id == 'n-103'][0]
    (shown,) = client.get('/v2/samples',
                          query(('message_id', 'eq', 'n-103'))).json
    assert shown == {
        'id': memory.id, 'meter': 'memory', 'type': 'gauge', 'unit': 'MB',
        'volume': 2048.0, 'user_id': 'user-0', 'project_id': 'project-b',
        'resource_id': 'vm-2', 'source': 'openstack',
        'timestamp': '2024-05-01T00:45:30.250000',
        'recorded_at': shown['recorded_at'],
        'metadata': {'flavor.name': 'm1.small'}}
    assert 'T' in shown['recorded_at'] and '+' not in shown['recorded_at']


def test_metadata_is_flattened_as_ceilometer(client):
    (shown,) = client.get('/v2/samples',
                          query(('message_id', 'eq', 'n-4'))).json
    assert shown['metadata'] == {
        'flavor.name': 'm1.large', 'flavor.vcpus': '4', 'state': 'active',
        'enabled': 'True', 'size': '4'}


def test_get_one_sample(client, samples):
    wanted = samples[5]
    response = client.get(f'/v2/samples/{wanted.id}')
    assert response.status_code == 200
    assert response.json['id'] == wanted.id
    assert response.json['timestamp'] == support.naive(3000)


def test_unknown_sample_is_404(client):
    status, code, message = fault(client.get('/v2/samples/nope'))
    assert (status, code) == (404, 'Client')
    assert 'nope' in message


def test_sample_id_with_a_slash(writer):
    stored = make_sample(1, id='a/b%c')
    writer.app.storage().record_samples([stored])
    assert writer.get('/v2/samples/a/b%25c').json['id'] == 'a/b%c'
    raw = writer.get('/v2/samples/a%2Fb%25c',
                     environ={'RAW_URI': '/v2/samples/a%2Fb%25c'})
    assert raw.json['id'] == 'a/b%c'
