"""The simple query (api/query.py) term by term."""

import datetime

import pytest
import webob.multidict

from calipso_agent.api import query as api_query
from calipso_agent.wsgi import errors

UTC = datetime.UTC


def params(*pairs):
    return webob.multidict.MultiDict(pairs)


@pytest.mark.parametrize('value, type_, expected', [
    ('4', '', 4),
    ('4.5', '', 4.5),
    ('True', '', True),
    ('false', '', 'false'),
    ("'quoted'", '', 'quoted'),
    ('m1.small', '', 'm1.small'),
    ('[1, 2]', '', '[1, 2]'),
    ('None', '', 'None'),
    ('1j', '', '1j'),
    ('1e999', '', '1e999'),
    ('9' * 30, '', float('9' * 30)),
    ('((((' * 200, '', '((((' * 200),
    ('7', 'integer', 7),
    ('7', 'float', 7.0),
    ('7', 'string', '7'),
    ('yes', 'boolean', True),
    ('0', 'boolean', False),
    ('2024-05-01T02:00:00+02:00', 'datetime', '2024-05-01T00:00:00'),
])
def test_typed_metadata_values(value, type_, expected):
    converted = api_query.typed_value(value, type_)
    assert converted == expected and type(converted) is type(expected)


@pytest.mark.parametrize('value, type_', [
    ('x', 'integer'), ('1.5', 'integer'), ('inf', 'float'),
    ('nan', 'float'), ('perhaps', 'boolean'), ('noon', 'datetime'),
])
def test_unconvertible_values(value, type_):
    with pytest.raises(errors.InvalidParameterError, match='q.value'):
        api_query.typed_value(value, type_)


def test_terms():
    terms = api_query.parse_terms(params(
        ('q.field', 'project'), ('q.op', 'in'), ('q.value', 'a, b,,'),
        ('q.field', 'metadata.a.b'), ('q.op', 'ne'), ('q.value', '1'),
        ('q.field', 'timestamp'), ('q.op', 'gt'),
        ('q.value', '2024-05-01T00:00:00Z')))
    assert [(t.field, t.op, t.value) for t in terms] == [
        ('project_id', 'in', ['a', 'b']),
        ('resource_metadata.a.b', 'ne', 1),
        ('timestamp', 'gt', datetime.datetime(2024, 5, 1, tzinfo=UTC))]


def test_no_terms():
    assert api_query.parse_terms(params(('limit', '3'))) == []


def test_sample_filter_of_terms():
    query = api_query.SimpleQuery(api_query.parse_terms(params(
        ('q.field', 'resource_id'), ('q.value', 'r1'),
        ('q.field', 'resource_id'), ('q.value', 'r2'),
        ('q.field', 'user_id'), ('q.value', 'u'),
        ('q.field', 'meter'), ('q.value', 'disk'),
        ('q.field', 'source'), ('q.value', 's'),
        ('q.field', 'metadata.size'), ('q.value', '3'))))
    sample_filter = query.sample_filter(meter='cpu',
                                        project_scope='project-a')
    assert (sample_filter.resource_id, sample_filter.user_id,
            sample_filter.meter, sample_filter.source,
            sample_filter.project_id) == ('r1', 'u', 'cpu', 's',
                                          'project-a')
    assert sample_filter.conditions == [
        ('resource_id', '=', 'r2'), ('name', '=', 'disk'),
        ('resource_metadata.size', '=', 3)]


def test_project_scope_is_added_to_a_project_term():
    query = api_query.SimpleQuery(api_query.parse_terms(params(
        ('q.field', 'project_id'), ('q.op', 'in'), ('q.value', 'a,b'))))
    sample_filter = query.sample_filter(project_scope='a')
    assert sample_filter.project_id == {'a', 'b'}
    assert sample_filter.conditions == [('project_id', '=', 'a')]


def test_timestamp_bounds():
    query = api_query.SimpleQuery(api_query.parse_terms(params(
        ('q.field', 'timestamp'), ('q.op', 'ge'),
        ('q.value', '2024-05-01T01:00:00'),
        ('q.field', 'timestamp'), ('q.op', 'gt'),
        ('q.value', '2024-05-01T01:00:00'),
        ('q.field', 'timestamp'), ('q.op', 'le'),
        ('q.value', '2024-05-01T03:00:00'),
        ('q.field', 'timestamp'), ('q.op', 'lt'),
        ('q.value', '2024-05-01T04:00:00'),
        ('q.field', 'search_offset'), ('q.op', 'eq'), ('q.value', '30'))))
    assert (query.start, query.start_op) == (
        datetime.datetime(2024, 5, 1, 1, tzinfo=UTC), 'gt')
    assert (query.end, query.end_op) == (
        datetime.datetime(2024, 5, 1, 3, tzinfo=UTC), 'le')
    sample_filter = query.sample_filter()
    assert sample_filter.start_timestamp == datetime.datetime(
        2024, 5, 1, 0, 30, tzinfo=UTC)
    assert sample_filter.end_timestamp == datetime.datetime(
        2024, 5, 1, 3, 30, tzinfo=UTC)
    assert (sample_filter.start_timestamp_op,
            sample_filter.end_timestamp_op) == ('gt', 'le')


def test_equal_upper_bounds_lt_is_tighter():
    query = api_query.SimpleQuery(api_query.parse_terms(params(
        ('q.field', 'timestamp'), ('q.op', 'le'),
        ('q.value', '2024-05-01T01:00:00'),
        ('q.field', 'timestamp'), ('q.op', 'lt'),
        ('q.value', '2024-05-01T01:00:00'))))
    assert query.end_op == 'lt'


@pytest.mark.parametrize('name, parse', [
    ('limit', lambda p: api_query.parse_limit(p, 5)),
    ('period', lambda p: api_query.parse_int(p, 'period', None)),
    ('unique', lambda p: api_query.parse_bool(p, 'unique', False)),
])
def test_scalar_parameters(name, parse):
    assert parse(params()) in (5, None, False)
    assert parse(params((name, ''))) in (5, None, False)
    with pytest.raises(errors.InvalidParameterError, match=name):
        parse(params((name, 'x')))


def test_limit_is_capped_for_the_store():
    assert api_query.parse_limit(params(('limit', str(2 ** 70))), 1) == (
        api_query.MAX_LIMIT)
