"""Numbers and timestamps out of every range, in every parameter of every
route, are a 400 with the JSON fault body, never a 5xx: 503 is for a store
that is down, not for a question it cannot take (a period of 10**20
seconds overflowed PostgreSQL's BIGINT and answered 503).

``check_parameters`` is run here on SQLite and MongoDB (mongomock), and on
PostgreSQL by tests/functional/api/test_parameters_postgresql.py.
"""

import json

import mongomock
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calipso_agent import storage
from calipso_agent.api import app
from calipso_agent.storage import impl_mongodb
from tests.helpers import inventory as inventory_helpers
from tests.unit.api import support

NUMBERS = ('99999999999999999999', '-99999999999999999999', '-1', '0', '1',
           '9223372036854775807', '9223372036854775808', '1e400', '1.5',
           '-0', 'nan', 'inf', '-inf', '0x10', '\u0661\u0662', ' 5', '',
           '9' * 400, '3155760000', '3155760001', '1e-9', 'true')
TIMESTAMPS = ('0001-01-01T00:00:00', '0001-01-01T00:00:00+14:00',
              '9999-12-31T23:59:59.999999', '9999-12-31T23:59:59-14:00',
              '10000-01-01T00:00:00', '1970-01-01T00:00:00',
              '2024-05-01T00:00:00', '2024-13-01', '99999999999999999999')
numbers = st.one_of(
    st.sampled_from(NUMBERS),
    st.builds(lambda sign, digits, offset: str(sign * 10 ** digits + offset),
              st.sampled_from([1, -1]), st.integers(0, 400),
              st.integers(-2, 2)),
    st.floats().map(repr))
values = st.one_of(numbers, st.sampled_from(TIMESTAMPS))

GET_ROUTES = ('/v2/meters', '/v2/meters/cpu', '/v2/meters/cpu/statistics',
              '/v2/samples', '/v2/resources', '/v2/resources/vm-0',
              '/v2/samples/x', '/v2/capabilities', '/v2/inventory',
              '/v2/inventory/vm-a1', '/v2/inventory/compute-1/links',
              '/v2/inventory/vm-a1/clique', '/v2/inventory/compute-1/impact',
              '/v2/inventory/vm-a2/path', '/v2/topology')
# The named parameters and values each route takes.
NAMED = {'limit': ['1', '5'], 'period': ['0', '60', '3600'],
         'meter_links': ['0', '1'], 'unique': ['true', 'false'],
         'groupby': ['resource_id', 'resource_metadata.size'],
         'aggregate.func': ['count', 'stddev', 'cardinality'],
         'aggregate.param': ['user_id'],
         # The inventory's (doc/inventory-api.md).
         'depth': ['1', '3'], 'deleted': ['true', 'false'],
         'marker': ['vm-a1'], 'type': ['instance', 'host,port'],
         'project_id': ['project-a'], 'state': ['ACTIVE'],
         'parent_id': ['compute-1'], 'host': ['compute-1'],
         'name': ['north'], 'clique_type': ['instance', 'host']}
QUERY_FIELDS = ('timestamp', 'search_offset', 'metadata.size',
                'resource_metadata.flavor.vcpus', 'project_id',
                'resource_id', 'meter')
VALID_TERMS = (('timestamp', 'ge', '2024-05-01T00:00:00'),
               ('resource_id', 'eq', 'vm-0'), ('metadata.size', 'gt', '3'))


@st.composite
def query_terms(draw):
    terms = []
    for _ in range(draw(st.integers(1, 3))):
        field = draw(st.sampled_from(QUERY_FIELDS))
        op = draw(st.sampled_from(['eq', 'lt', 'le', 'gt', 'ge', 'ne',
                                   'in']))
        terms.append((field, op, draw(values),
                      draw(st.sampled_from(['', 'integer', 'float',
                                            'datetime', 'string']))))
    return support.query(*terms)


@st.composite
def get_parameters(draw):
    """Parameters a route takes, one or two of them drawn wild (so that
    each reaches the store rather than stopping at another's 400)."""
    wild = draw(st.sets(st.sampled_from(['q', *NAMED]), min_size=1,
                        max_size=2))
    if 'q' in wild:
        params = draw(query_terms())
    else:
        params = support.query(*draw(st.lists(st.sampled_from(VALID_TERMS),
                                              max_size=2, unique=True)))
    for name, valid in NAMED.items():
        if name in wild:
            params.append((name, draw(values)))
        elif draw(st.booleans()):
            params.append((name, draw(st.sampled_from(valid))))
    return params


json_numbers = st.one_of(
    st.integers(-2 ** 70, 2 ** 70), st.floats(allow_nan=False,
                                               allow_infinity=False),
    st.builds(lambda sign, digits: sign * 10 ** digits,
              st.sampled_from([1, -1]), st.integers(0, 400)),
    numbers)


@st.composite
def query_bodies(draw):
    field = draw(st.sampled_from(['volume', 'timestamp', 'metadata.size',
                                  'project_id', 'recorded_at']))
    op = draw(st.sampled_from(['=', '!=', '<', '>=', 'in']))
    value = draw(st.one_of(json_numbers, st.sampled_from(TIMESTAMPS)))
    body = {'filter': json.dumps({op: {field: [value] if op == 'in'
                                       else value}})}
    if draw(st.booleans()):
        body['limit'] = draw(json_numbers)
    return body


@st.composite
def posted_samples(draw):
    sample = {'counter_name': 'cpu', 'counter_type': 'gauge',
              'counter_unit': 'ns', 'counter_volume': draw(json_numbers),
              'resource_id': 'posted', 'project_id': 'project-a'}
    if draw(st.booleans()):
        sample['timestamp'] = draw(st.sampled_from(TIMESTAMPS))
    if draw(st.booleans()):
        sample['resource_metadata'] = {'size': draw(json_numbers)}
    return [sample]


def check_answer(response):
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code >= 400:
        status, faultcode, _ = support.fault(response)
        assert faultcode == 'Client', response.text


def check_parameters(client, writer, data):
    """A request to every route with drawn parameters: no 5xx. Samples
    are posted through ``writer`` (over a store of its own: what they
    hold would change the data set of the other tests)."""
    for path in GET_ROUTES:
        check_answer(client.get(path, data.draw(get_parameters(),
                                                label=f'GET {path}')))
    body = data.draw(query_bodies(), label='POST /v2/query/samples')
    check_answer(client.post('/v2/query/samples', body))
    body = data.draw(posted_samples(), label='POST /v2/meters/cpu')
    check_answer(writer.post('/v2/meters/cpu', body))


def mongomock_store(conf, name, samples=()):
    connection = impl_mongodb.Connection(
        conf, f'mongodb://localhost/{name}', client=mongomock.MongoClient())
    connection.upgrade()
    if samples:
        assert not connection.record_samples(samples).rejected
        inventory_helpers.small_cloud().store(connection)
    return connection


@pytest.fixture(scope='module', params=['sqlite', 'mongodb-mongomock'])
def apis(request, store_conf, store, samples, tmp_path_factory):
    """(the API over the data set, the API over an empty store) of a
    driver."""
    if request.param == 'sqlite':
        conf = support.make_conf(tmp_path_factory.mktemp('writes'))
        stores = [store, storage.get_connection(conf)]
        inventory_helpers.small_cloud().store(store)
    else:
        stores = [mongomock_store(store_conf, 'parameters', samples),
                  mongomock_store(store_conf, 'writes')]
    yield tuple(app.setup_app(conf=store_conf, storage=s) for s in stores)
    for made in stores[1:] if request.param == 'sqlite' else stores:
        made.close()


@pytest.fixture(scope='module')
def api(apis):
    return apis[0]


@pytest.mark.parametrize('identity', ['admin', 'member'])
@settings(max_examples=150, deadline=None,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_no_parameter_value_gives_a_server_error(apis, identity, data):
    headers = support.ADMIN if identity == 'admin' else support.member()
    check_parameters(support.Client(apis[0], headers),
                     support.Client(apis[1], headers), data)


@pytest.mark.parametrize('params', [
    [('period', '99999999999999999999')],
    [('period', '3155760001')],
    [('period', '-1')],
    [('period', '1.5')],
] + [support.query(('timestamp', 'gt', '2024-05-01T00:00:00'),
                   ('search_offset', 'eq', '99999999999999999999'))])
def test_out_of_range_statistics_parameters_are_400(api, params):
    response = support.Client(api).get('/v2/meters/cpu/statistics', params)
    assert support.fault(response)[:2] == (400, 'Client'), response.text


@pytest.mark.parametrize('params', [
    [('limit', '0')], [('limit', '1e3')], [('limit', '-5')],
    support.query(('timestamp', 'gt', '0001-01-01T00:00:00+14:00')),
    support.query(('timestamp', 'lt', '10000-01-01T00:00:00')),
    support.query(('metadata.size', 'eq', '9' * 400, 'integer')),
    support.query(('metadata.size', 'in', '1,' + '9' * 400, '')),
])
def test_out_of_range_list_parameters_are_400(api, params):
    response = support.Client(api).get('/v2/samples', params)
    assert support.fault(response)[:2] == (400, 'Client'), response.text


def test_longest_period_is_answered(api):
    response = support.Client(api).get('/v2/meters/cpu/statistics',
                                       [('period', '3155760000')])
    assert response.status_code == 200, response.text
    assert len(response.json) == 1
