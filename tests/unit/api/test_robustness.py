"""No input yields a 5xx: generated parameters and bodies (every answer
also checked against the OpenAPI document by support.Client)."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.api.support import at

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[
                        HealthCheck.function_scoped_fixture])

TEXT = st.text(st.characters(blacklist_categories=('Cs',)), max_size=30)
# JSON escapes may carry lone surrogates.
JSON_TEXT = st.text(max_size=30)
FIELDS = st.sampled_from([
    'user_id', 'project_id', 'project', 'resource_id', 'source', 'meter',
    'message_id', 'timestamp', 'search_offset', 'metadata.size',
    'resource_metadata.flavor.vcpus', 'metadata.', 'colour', ''])
VALUES = st.one_of(
    TEXT, st.sampled_from([at(), at(600), '0001-01-01', '9999-12-31T23:59',
                           '1e999', 'nan', '-1', '10', 'True', 'vm-0,vm-1',
                           str(10 ** 40), '99999999999999999999']))
PARAMETERS = st.lists(st.one_of(
    st.tuples(st.just('q.field'), FIELDS),
    st.tuples(st.just('q.op'), st.sampled_from(
        ['eq', 'ne', 'lt', 'le', 'gt', 'ge', 'in', '', 'like'])),
    st.tuples(st.just('q.value'), VALUES),
    st.tuples(st.just('q.type'), st.sampled_from(
        ['', 'integer', 'float', 'string', 'boolean', 'datetime', 'x'])),
    st.tuples(st.sampled_from(['limit', 'period', 'meter_links', 'unique']),
              st.one_of(VALUES, st.integers().map(str))),
    st.tuples(st.just('groupby'), st.sampled_from(
        ['resource_id', 'source', 'resource_metadata.flavor.name', 'x'])),
    st.tuples(st.sampled_from(['aggregate.func', 'aggregate.param']),
              st.sampled_from(['avg', 'cardinality', 'resource_id', 'x',
                               ''])),
), max_size=12)
PATHS = st.sampled_from(['/v2/samples', '/v2/meters', '/v2/meters/cpu',
                         '/v2/meters/cpu/statistics', '/v2/resources'])

JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(),
                         st.floats(allow_nan=False, allow_infinity=False),
                         JSON_TEXT)
JSON = st.recursive(JSON_SCALARS, lambda children: st.one_of(
    st.lists(children, max_size=4),
    st.dictionaries(st.one_of(JSON_TEXT, st.sampled_from(
        ['=', 'in', 'and', 'or', 'not', 'like', '=~', 'meter', 'volume',
         'timestamp', 'project_id', 'metadata.size'])), children,
        max_size=3)), max_leaves=12)


@SETTINGS
@given(path=PATHS, params=PARAMETERS)
def test_no_parameters_make_a_server_error(client, path, params):
    response = client.get(path, params)
    assert response.status_code < 500, response.text


@SETTINGS
@given(filter_expr=JSON, orderby=JSON, limit=JSON_SCALARS)
def test_no_complex_query_makes_a_server_error(client, filter_expr, orderby,
                                               limit):
    body = {'filter': json.dumps(filter_expr),
            'orderby': json.dumps(orderby), 'limit': limit}
    response = client.post('/v2/query/samples', body)
    assert response.status_code < 500, response.text


@SETTINGS
@given(body=JSON)
def test_no_posted_body_makes_a_server_error(writer, body):
    response = writer.post('/v2/meters/cpu', body)
    assert response.status_code < 500, response.text


@SETTINGS
@given(item=st.fixed_dictionaries({
    'counter_name': st.just('cpu'),
    'counter_type': st.sampled_from(['gauge', 'delta', 'x']),
    'counter_unit': JSON_TEXT, 'counter_volume': JSON_SCALARS,
    'resource_id': JSON_TEXT}, optional={
    'timestamp': VALUES, 'resource_metadata': JSON,
    'project_id': JSON_TEXT, 'user_id': JSON_TEXT, 'source': JSON_TEXT}))
def test_no_posted_sample_makes_a_server_error(writer, item):
    response = writer.post('/v2/meters/cpu', [item])
    assert response.status_code < 500, response.text
