"""POST /v2/query/samples: Ceilometer's complex query, compared with the
reference of tests/helpers/ over the store's own expression."""

import json

import pytest

from tests.helpers import oracle
from tests.unit.api.support import at, fault


def ask(client, filter_expr=None, orderby=None, limit=None, **kwargs):
    body = {}
    if filter_expr is not None:
        body['filter'] = json.dumps(filter_expr)
    if orderby is not None:
        body['orderby'] = json.dumps(orderby)
    if limit is not None:
        body['limit'] = limit
    return client.post('/v2/query/samples', body, **kwargs)


CASES = {
    'meter alias': ({'=': {'meter': 'memory'}}, {'=': {'name': 'memory'}}),
    'counter_name': ({'=': {'counter_name': 'cpu'}}, {'=': {'name': 'cpu'}}),
    'volume range': (
        {'and': [{'>': {'counter_volume': 20}}, {'=<': {'volume': 71}}]},
        {'and': [{'>': {'volume': 20}}, {'<=': {'volume': 71}}]}),
    '=> and upper-case operators': (
        {'AND': [{'=>': {'volume': 100}}, {'!=': {'type': 'gauge'}}]},
        {'and': [{'>=': {'volume': 100}}, {'!=': {'type': 'gauge'}}]}),
    'in': ({'in': {'resource': ['vm-1', 'vm-2']}},
           {'in': {'resource_id': ['vm-1', 'vm-2']}}),
    'or and not': (
        {'or': [{'=': {'user': 'user-1'}},
                {'not': {'=': {'project': 'project-a'}}}]},
        {'or': [{'=': {'user_id': 'user-1'}},
                {'not': {'=': {'project_id': 'project-a'}}}]}),
    'timestamps': (
        {'and': [{'>=': {'timestamp': '2024-05-01T00:20:00'}},
                 {'<': {'timestamp': at(3600)}}]},
        {'and': [{'>=': {'timestamp': at(1200)}},
                 {'<': {'timestamp': at(3600)}}]}),
    'metadata': ({'=': {'metadata.flavor.vcpus': 4}},
                 {'=': {'resource_metadata.flavor.vcpus': 4}}),
    'resource_metadata': ({'=': {'resource_metadata.enabled': True}},
                          {'=': {'resource_metadata.enabled': True}}),
    'like': ({'like': {'resource_id': 'vm-%'}},
             {'like': {'resource_id': 'vm-%'}}),
    'message_id and unit': (
        {'and': [{'=': {'message_id': 'n-100'}}, {'=': {'unit': 'MB'}}]},
        {'and': [{'=': {'message_id': 'n-100'}}, {'=': {'unit': 'MB'}}]}),
}


@pytest.mark.parametrize('case', sorted(CASES))
def test_filter(client, samples, case):
    ceilometer_filter, store_filter = CASES[case]
    response = ask(client, ceilometer_filter)
    assert response.status_code == 200, response.text
    expected = oracle.reference_query_samples(samples, store_filter)
    assert [s['id'] for s in response.json] == [s['id'] for s in expected]


def test_no_filter_is_every_sample_newest_first(client, samples):
    response = client.post('/v2/query/samples', {})
    expected = oracle.reference_query_samples(samples)
    assert [s['id'] for s in response.json] == [s['id'] for s in expected]
    assert len(response.json) == len(samples)


def test_orderby_and_limit(client, samples):
    response = ask(client, {'=': {'meter': 'cpu'}},
                   [{'resource': 'DESC'}, {'counter_volume': 'asc'}], 4)
    expected = oracle.reference_query_samples(
        samples, {'=': {'name': 'cpu'}},
        [('resource_id', 'desc'), ('volume', 'asc')], 4)
    assert [s['id'] for s in response.json] == [s['id'] for s in expected]


@pytest.mark.parametrize('body, fragment', [
    ({'filter': '{"=": '}, 'Filter expression not valid'),
    ({'filter': '{"=": {"colour": "red"}}'}, 'Filter expression not valid'),
    ({'filter': '{"=~": {"resource": "vm-.*"}}'}, 'not supported'),
    ({'filter': '{"~": {"resource": "vm"}}'}, 'unknown operator'),
    ({'filter': '{"and": [{"=": {"user": "u"}}]}'}, 'at least two'),
    ({'filter': '{"=": {"user": "u", "project": "p"}}'}, 'one field'),
    ({'filter': '{"=": {"user": null}}'}, 'Filter expression not valid'),
    ({'filter': '{"=": {"user": ["u"]}}'}, 'Filter expression not valid'),
    ({'filter': '{"in": {"user": []}}'}, 'non-empty list'),
    ({'filter': '{"=": {"volume": "big"}}'}, 'not a number'),
    ({'filter': '{"=": {"volume": NaN}}'}, 'Filter expression not valid'),
    ({'filter': '{"<": {"timestamp": "soon"}}'}, 'timestamp'),
    ({'filter': '{"=": {"metadata.": 1}}'}, 'unknown field'),
    ({'filter': '[]'}, 'not an expression'),
    ({'filter': '{"not": ' * 60 + '{"=": {"user": "u"}}' + '}' * 60},
     'nested too deeply'),
    ({'filter': '[' * 100000 + ']' * 100000}, 'Filter expression not valid'),
    ({'filter': '{"=": {"resource": "\\ud800"}}'}, 'not valid Unicode'),
    ({'filter': '{"in": {"\\udc00": ["x"]}}'}, 'not valid Unicode'),
    ({'filter': {'=': {'user': 'u'}}}, 'JSON string'),
    ({'orderby': '[{"colour": "asc"}]'}, 'Order-by expression not valid'),
    ({'orderby': '[{"metadata.size": "asc"}]'}, 'cannot order by'),
    ({'orderby': '[{"volume": "up"}]'}, 'Order-by expression not valid'),
    ({'orderby': '{"volume": "asc"}'}, 'Order-by expression not valid'),
    ({'orderby': 'volume'}, 'Order-by expression not valid'),
    ({'orderby': ['volume']}, 'JSON string'),
    ({'limit': 0}, 'Limit should be positive'),
    ({'limit': -2}, 'Limit should be positive'),
    ({'limit': '5x'}, 'limit'),
    ({'limit': '2.0'}, 'limit'),
    ({'limit': '-2'}, 'Limit should be positive'),
    ({'limit': 2.5}, 'limit'),
    ({'limit': True}, 'limit'),
    ({'colour': 'red'}, 'colour'),
    ([], 'JSON object'),
    ('filter', 'JSON object'),
])
def test_bad_queries(client, body, fragment):
    status, code, message = fault(client.post('/v2/query/samples', body))
    assert (status, code) == (400, 'Client')
    assert fragment in message


@pytest.mark.parametrize('body', [b'', b'{"filter": ', b'\xff'])
def test_body_must_be_json(client, body):
    assert fault(client.post('/v2/query/samples', body))[0] == 400


def test_huge_limit(client, samples):
    response = ask(client, limit=10 ** 40)
    assert len(response.json) == len(samples)


@pytest.mark.parametrize('limit', ['2', ' 2', '+2', 2])
def test_limit_as_numeric_text(client, limit):
    """python-ceilometerclient sends the body's limit as text."""
    response = ask(client, limit=limit)
    assert response.status_code == 200, response.text
    assert len(response.json) == 2
