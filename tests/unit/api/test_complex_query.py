"""Ceilometer's complex query translated into the store's
(api/complex_query.py)."""

import pytest

from calipso_agent.api import complex_query
from calipso_agent.wsgi import errors


@pytest.mark.parametrize('ceilometer, store', [
    ({'=': {'counter_name': 'cpu'}}, {'=': {'name': 'cpu'}}),
    ({'=<': {'counter_volume': 1}}, {'<=': {'volume': 1}}),
    ({'=>': {'volume': 1}}, {'>=': {'volume': 1}}),
    ({'In': {'project': ['a']}}, {'in': {'project_id': ['a']}}),
    ({'NOT': {'!=': {'user': 'u'}}}, {'not': {'!=': {'user_id': 'u'}}}),
    ({'Or': [{'=': {'type': 'gauge'}}, {'=': {'counter_unit': 'B'}}]},
     {'or': [{'=': {'type': 'gauge'}}, {'=': {'unit': 'B'}}]}),
    ({'=': {'metadata.a.b': True}}, {'=': {'resource_metadata.a.b': True}}),
    ({'like': {'resource': 'vm%'}}, {'like': {'resource_id': 'vm%'}}),
    ({'=': {'recorded_at': '2024-05-01T00:00:00'}},
     {'=': {'recorded_at': '2024-05-01T00:00:00'}}),
])
def test_translate(ceilometer, store):
    assert complex_query.translate(ceilometer) == store


@pytest.mark.parametrize('expression, reason', [
    ({'=~': {'resource': 'vm'}}, 'not supported'),
    ({'=': {'resource_metadata': 'x'}}, 'unknown field'),
    ({'=': {'message_signature': 'x'}}, 'unknown field'),
    ({'=': {'metadata.a b': 'x'}}, 'unknown field'),
    ({'=': {'user': {'a': 1}}}, 'string, number or boolean'),
    ({'in': {'user': [None]}}, 'non-empty list'),
    ({'in': {'user': 'u'}}, 'non-empty list'),
    ({'and': {'=': {'user': 'u'}}}, 'at least two'),
    ({'=': 'user'}, 'one field'),
    ({}, 'not an expression'),
    ('user', 'not an expression'),
])
def test_translate_refuses(expression, reason):
    with pytest.raises(complex_query.InvalidExpressionError, match=reason):
        complex_query.translate(expression)


def test_parse_filter_validates_for_the_store():
    expression = complex_query.parse_filter(
        '{"<": {"timestamp": "2024-05-01T02:00:00+02:00"}}')
    assert expression['<']['timestamp'].isoformat() == (
        '2024-05-01T00:00:00+00:00')
    assert complex_query.parse_filter(None) is None
    with pytest.raises(errors.ClientError,
                       match='Filter expression not valid'):
        complex_query.parse_filter('{"=": {"volume": Infinity}}')


def test_parse_orderby():
    assert complex_query.parse_orderby(
        '[{"meter": "ASC"}, {"timestamp": "desc"}]') == [
        ('name', 'asc'), ('timestamp', 'desc')]
    assert complex_query.parse_orderby('[]') == []
    assert complex_query.parse_orderby(None) is None
    with pytest.raises(errors.ClientError, match='Order-by'):
        complex_query.parse_orderby('[{"volume": 1}]')


def test_parse_limit():
    assert complex_query.parse_limit(None) is None
    assert complex_query.parse_limit(3) == 3
    with pytest.raises(errors.ClientError, match='positive'):
        complex_query.parse_limit(0)
    with pytest.raises(errors.InvalidParameterError, match='limit'):
        complex_query.parse_limit(1.5)
