"""The query language (storage/query.py) and the argument checks of the
storage interface (storage/base.py): the reference every driver is tested
against (tests/storage_contract.py)."""

import datetime

import pytest

from calipso_agent import sample as sample_mod
from calipso_agent.storage import base, query
from tests.helpers.basics import make_sample

UTC = datetime.UTC
T0 = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def invalid(expression):
    """The InvalidQuery message validate gives ``expression``."""
    with pytest.raises(query.InvalidQuery) as caught:
        query.validate(expression)
    return str(caught.value)


# --- validate: errors -------------------------------------------------------

@pytest.mark.parametrize('expression', [
    [], 'name', None, 1, {}, {'=': {'name': 'a'}, '!=': {'name': 'b'}},
], ids=repr)
def test_not_an_expression(expression):
    assert 'is not an expression (a mapping of one operator)' in invalid(
        expression)


def test_operator_not_a_string():
    assert invalid({1: {'name': 'a'}}) == 'operator 1 is not a string'


@pytest.mark.parametrize('expression', [
    {'and': {'=': {'name': 'a'}}}, {'or': []}, {'and': [{'=': {'name':
                                                               'a'}}]},
    {'or': ({'=': {'name': 'a'}}, {'=': {'name': 'b'}})},
], ids=repr)
def test_and_or_need_two_expressions(expression):
    op = next(iter(expression))
    assert invalid(expression) == (f'{op} needs a list of at least two '
                                   'expressions')


def test_nested_errors_are_found():
    assert 'unknown field' in invalid(
        {'and': [{'=': {'name': 'a'}}, {'not': {'=': {'bogus': 1}}}]})
    assert 'is not an expression' in invalid({'not': 'name'})
    assert 'is not an expression' in invalid(
        {'or': [{'=': {'name': 'a'}}, []]})


@pytest.mark.parametrize('op', ['xor', 'between', 'eq', 'ne', 'ilike',
                                'nin'])
def test_unknown_operator(op):
    assert invalid({op: {'name': 'a'}}) == f'unknown operator {op!r}'


@pytest.mark.parametrize('operand', ['name', {}, {'name': 'a', 'unit': 'b'},
                                     ['name', 'a'], None], ids=repr)
def test_leaf_needs_one_field(operand):
    assert invalid({'=': operand}) == (f'= needs one field and its value, '
                                       f'not {operand!r}')


def test_field_not_a_string():
    assert invalid({'=': {1: 'a'}}) == 'field 1 is not a string'


@pytest.mark.parametrize('field', [
    'bogus', 'metadata.state', 'resource_metadata', 'resource_metadata.',
    'resource_metadata..x', 'resource_metadata.x.', 'resource_metadata.a b',
    'resource_metadata.a$b', 'resource_metadata.$where', 'Name',
    'counter_name',
])
def test_unknown_field(field):
    assert invalid({'=': {field: 'a'}}) == f'unknown field {field!r}'


@pytest.mark.parametrize('field', [
    'resource_metadata.state', 'resource_metadata.flavor.name',
    'resource_metadata.os-type:x@y', 'resource_metadata.a_b.C-1',
])
def test_metadata_fields(field):
    assert query.validate({'=': {field: 'a'}}) == {'=': {field: 'a'}}
    assert query.valid_metadata_key(field)


@pytest.mark.parametrize('value', [[], 'cpu', ('cpu',), None, {'cpu'}],
                         ids=repr)
def test_in_needs_a_non_empty_list(value):
    assert invalid({'in': {'name': value}}) == (
        'in: name needs a non-empty list')


def test_in_values_are_checked():
    assert invalid({'in': {'volume': [1, 'x']}}) == (
        "volume: 'x' is not a number")
    assert invalid({'in': {'timestamp': ['2024-05-01', 'soon']}}) == (
        "timestamp: 'soon' is not an ISO 8601 timestamp")
    assert invalid({'in': {'resource_metadata.a': [1, None]}}) == (
        'resource_metadata.a: None is not a string, number or boolean')


@pytest.mark.parametrize('field', ['timestamp', 'recorded_at'])
def test_timestamp_values(field):
    assert invalid({'like': {field: '2024%'}}) == (
        f'like does not apply to {field}')
    for bad in ('yesterday', '2024-13-01', '2024-05-01T25:00:00',
                '2024-05-01T12:00:00+25:00', ''):
        assert invalid({'>': {field: bad}}) == (
            f'{field}: {bad!r} is not an ISO 8601 timestamp')
    for bad in (1714564800, 1714564800.5, None, True, ['2024-05-01']):
        assert invalid({'>': {field: bad}}) == (
            f'{field}: {bad!r} is not a timestamp')


def test_like_values():
    assert invalid({'like': {'name': 1}}) == (
        'like: name pattern 1 is not a string')
    assert invalid({'like': {'resource_metadata.a': None}}) == (
        'like: resource_metadata.a pattern None is not a string')
    assert invalid({'like': {'volume': '1%'}}) == (
        'like does not apply to volume')
    assert invalid({'like': {'volume': 1}}) == (
        'like: volume pattern 1 is not a string')


@pytest.mark.parametrize('value', [True, False, '1', None, [1], {'a': 1}],
                         ids=repr)
def test_volume_needs_a_number(value):
    assert invalid({'=': {'volume': value}}) == (
        f'volume: {value!r} is not a number')


@pytest.mark.parametrize('value', [float('nan'), float('inf'),
                                   float('-inf')], ids=repr)
def test_numbers_must_be_finite(value):
    assert invalid({'<': {'volume': value}}) == (
        f'volume: {value!r} is not finite')
    assert invalid({'<': {'resource_metadata.a': value}}) == (
        f'resource_metadata.a: {value!r} is not finite')


@pytest.mark.parametrize('field', query.STRING_FIELDS)
@pytest.mark.parametrize('value', [1, 1.5, True, None, ['a']], ids=repr)
def test_string_fields_need_strings(field, value):
    assert invalid({'=': {field: value}}) == (
        f'{field}: {value!r} is not a string')


@pytest.mark.parametrize('value', [None, [1], {'a': 1}, (1,), b'x'],
                         ids=repr)
def test_metadata_values_are_scalars(value):
    assert invalid({'=': {'resource_metadata.a': value}}) == (
        f'resource_metadata.a: {value!r} is not a string, number or '
        'boolean')


def test_depth_limit():
    expression = {'=': {'name': 'a'}}
    for _ in range(50):
        expression = {'not': expression}
    assert query.validate(expression) == expression
    assert invalid({'not': expression}) == 'expression nested too deeply'
    wide = {'and': [{'=': {'name': 'a'}}] * 500}
    assert query.validate(wide) == wide


# --- validate: normalization -------------------------------------------------

def test_operators_are_lowercased():
    assert query.validate({'AND': [{'LIKE': {'name': 'c%'}},
                                   {'Not': {'IN': {'unit': ['B']}}}]}) == {
        'and': [{'like': {'name': 'c%'}}, {'not': {'in': {'unit': ['B']}}}]}


@pytest.mark.parametrize('value', [
    '2024-05-01T12:00:00Z', '2024-05-01T12:00:00+00:00',
    '2024-05-01T14:00:00+02:00', '2024-05-01T07:00:00-05:00',
    '2024-05-01T12:00:00', '2024-05-01 12:00:00z', T0,
    T0.replace(tzinfo=None),
    T0.astimezone(datetime.timezone(datetime.timedelta(hours=9))),
], ids=repr)
def test_timestamps_become_aware_utc(value):
    ((ts,),) = [v.values() for v in query.validate(
        {'>=': {'timestamp': value}}).values()]
    assert ts == T0
    assert ts.utcoffset() == datetime.timedelta(0)


def test_microseconds_are_kept():
    got = query.validate({'=': {'recorded_at': '2024-05-01T12:00:00.000001Z'}})
    assert got['=']['recorded_at'] == T0 + datetime.timedelta(microseconds=1)


def test_values_are_normalized():
    assert query.validate({'=': {'volume': 5}}) == {'=': {'volume': 5.0}}
    assert isinstance(query.validate({'=': {'volume': 5}})['=']['volume'],
                      float)
    assert query.validate({'in': {'volume': [1, 2.5]}}) == {
        'in': {'volume': [1.0, 2.5]}}
    assert query.validate({'in': {'timestamp': ['2024-05-01T14:00:00+02:00',
                                                T0]}}) == {
        'in': {'timestamp': [T0, T0]}}
    # Metadata values keep their kind.
    for value in (True, 1, 1.5, '1', ''):
        got = query.validate({'=': {'resource_metadata.a': value}})
        assert got['=']['resource_metadata.a'] is value


def test_validate_is_idempotent_and_copies():
    expression = {'and': [{'>=': {'timestamp': '2024-05-01T12:00:00Z'}},
                          {'in': {'name': ['cpu']}}]}
    once = query.validate(expression)
    assert query.validate(once) == once
    once['and'][1]['in']['name'].append('x')
    assert expression['and'][1]['in']['name'] == ['cpu']
    assert expression['and'][0]['>=']['timestamp'] == '2024-05-01T12:00:00Z'


# --- validate_orderby --------------------------------------------------------

def test_orderby_forms():
    assert query.validate_orderby(None) == []
    assert query.validate_orderby([]) == []
    assert query.validate_orderby([('volume', 'asc'), ['name', 'DESC'],
                                   {'timestamp': 'Desc'}]) == [
        ('volume', 'asc'), ('name', 'desc'), ('timestamp', 'desc')]


@pytest.mark.parametrize('field', query.ORDERABLE)
def test_every_sample_field_is_orderable(field):
    assert query.validate_orderby([(field, 'asc')]) == [(field, 'asc')]


@pytest.mark.parametrize('item', ['volume', ('volume',),
                                  ('volume', 'asc', 'x'),
                                  {'volume': 'asc', 'name': 'asc'}, {}, None],
                         ids=repr)
def test_orderby_item_shape(item):
    with pytest.raises(query.InvalidQuery,
                       match=r'is not \{field: asc\|desc\}'):
        query.validate_orderby([item])


@pytest.mark.parametrize('direction', ['up', '', None, 1, 'ascending'],
                         ids=repr)
def test_orderby_direction(direction):
    with pytest.raises(query.InvalidQuery) as caught:
        query.validate_orderby([('volume', direction)])
    assert str(caught.value) == (f'orderby direction {direction!r} is not '
                                 'asc or desc')


@pytest.mark.parametrize('field', ['bogus', 'resource_metadata.state',
                                   'metadata', 'Volume', 'counter_volume'])
def test_orderby_field(field):
    with pytest.raises(query.InvalidQuery) as caught:
        query.validate_orderby([(field, 'asc')])
    assert str(caught.value) == f'cannot order by {field!r}'


# --- matches -----------------------------------------------------------------

def sample(**overrides):
    data = make_sample(
        1, volume=10.0, timestamp='2024-05-01T12:00:00+00:00',
        resource_metadata={
            'state': 'active', 'size': 5, 'ratio': 0.5, 'enabled': True,
            'off': False, 'text5': '5', 'nul': None, 'tags': ['a', 'b'],
            'flavor': {'name': 'm1.small', 'vcpus': 2, 'extra': {'k': 'v'}},
            'pattern': 'x.y*z[1]?\\', 'multi': 'a\nb', 'unicode': 'caf\u00e9',
        }).as_dict()
    data.update(overrides)
    return data


def match(expression, data=None):
    return query.matches(query.validate(expression), data or sample())


def test_none_matches_everything():
    assert query.matches(None, sample())
    assert query.matches(None, {})


@pytest.mark.parametrize('op,value,expected', [
    ('=', 10, True), ('=', 10.0, True), ('=', 9.5, False),
    ('!=', 10, False), ('!=', -10, True),
    ('<', 10, False), ('<', 10.25, True), ('<=', 10, True),
    ('<=', 9.99, False), ('>', 9.99, True), ('>', 10, False),
    ('>=', 10, True), ('>=', 11, False),
])
def test_number_comparisons(op, value, expected):
    assert match({op: {'volume': value}}) is expected


@pytest.mark.parametrize('op,value,expected', [
    ('=', 'cpu', True), ('=', 'CPU', False), ('!=', 'cpu', False),
    ('!=', 'memory', True), ('<', 'cpv', True), ('<', 'cpu', False),
    ('<=', 'cpu', True), ('>', 'cp', True), ('>', 'Z', True),
    ('<', 'Zzz', False), ('>=', 'cpu', True), ('>=', 'd', False),
])
def test_string_comparisons_are_codepoint(op, value, expected):
    assert match({op: {'name': value}}) is expected


@pytest.mark.parametrize('op,value,expected', [
    ('=', '2024-05-01T14:00:00+02:00', True),
    ('=', '2024-05-01T12:00:00.000001Z', False),
    ('<', '2024-05-01T12:00:00.000001Z', True),
    ('<', '2024-05-01T12:00:00Z', False),
    ('<=', '2024-05-01T12:00:00', True),
    ('>', '2024-05-01T11:59:59.999999Z', True),
    ('>', '2024-05-01T08:00:00-04:00', False),
    ('>=', '2024-05-01T08:00:00-04:00', True),
    ('!=', '2024-05-01T12:00:00Z', False),
])
def test_timestamp_comparisons_are_instants(op, value, expected):
    assert match({op: {'timestamp': value}}) is expected
    # Stored as another offset, or as a datetime: the same instant.
    other = sample(timestamp='2024-05-01T13:00:00+01:00')
    assert match({op: {'timestamp': value}}, other) is expected
    assert match({op: {'timestamp': value}}, sample(timestamp=T0)) \
        is expected


def test_in():
    assert match({'in': {'name': ['memory', 'cpu']}})
    assert not match({'in': {'name': ['memory']}})
    assert match({'in': {'volume': [1, 10]}})
    assert match({'in': {'timestamp': ['2024-05-01T14:00:00+02:00']}})
    assert match({'in': {'resource_metadata.size': ['5', 5]}})
    assert not match({'in': {'resource_metadata.text5': [5]}})
    assert not match({'in': {'resource_metadata.enabled': [1]}})
    assert match({'in': {'resource_metadata.enabled': [1, True]}})


@pytest.mark.parametrize('pattern,expected', [
    ('cpu', True), ('CPU', False), ('c%', True), ('%u', True), ('%', True),
    ('c_u', True), ('c_', False), ('___', True), ('____', False),
    ('%p%', True), ('cpu%', True), ('%cpu%', True), ('c%%u', True),
    ('C%', False), ('.*', False), ('c.u', False),
])
def test_like(pattern, expected):
    assert match({'like': {'name': pattern}}) is expected


@pytest.mark.parametrize('pattern,expected', [
    ('x.y*z[1]?\\', True), ('x_y*z[1]?\\', True), ('x.y%', True),
    ('x.y.z%', False), ('%[1]%', True), ('%[2]%', False), ('%\\', True),
    ('%?_', True), ('x.y*z[1]?\\\\', False),
])
def test_like_special_characters_are_literal(pattern, expected):
    assert match({'like': {'resource_metadata.pattern': pattern}}) is \
        expected


def test_like_details():
    assert match({'like': {'resource_metadata.multi': 'a%b'}})
    assert match({'like': {'resource_metadata.multi': 'a_b'}})
    assert match({'like': {'resource_metadata.unicode': 'caf_'}})
    assert match({'like': {'resource_metadata.text5': '5'}})
    # Only strings match a pattern.
    assert not match({'like': {'resource_metadata.size': '5'}})
    assert not match({'like': {'resource_metadata.size': '%'}})
    assert not match({'like': {'resource_metadata.enabled': '%'}})
    assert not match({'like': {'resource_metadata.tags': '%'}})
    assert not match({'like': {'resource_metadata.flavor': '%'}})
    assert not match({'like': {'resource_metadata.missing': '%'}})
    assert not match({'like': {'resource_metadata.nul': '%'}})
    assert not match({'like': {'user_id': '%'}}, sample(user_id=None))


KIND_CASES = [
    # (field, op, value, expected): a metadata term only matches a value
    # of its own kind.
    ('size', '=', 5, True), ('size', '=', 5.0, True), ('size', '=', '5',
                                                       False),
    ('size', '=', True, False), ('size', '!=', '5', False),
    ('size', '!=', 4, True), ('size', '<', 'z', False), ('size', '<', 6,
                                                         True),
    ('ratio', '<', 1, True), ('ratio', '>', 0, True),
    ('text5', '=', '5', True), ('text5', '=', 5, False),
    ('text5', '!=', 5, False), ('text5', '>', 4, False),
    ('text5', '>', '4', True), ('text5', '<', '10', False),
    ('enabled', '=', True, True), ('enabled', '=', 1, False),
    ('enabled', '!=', False, True), ('enabled', '!=', 0, False),
    ('enabled', '>', False, True), ('off', '=', False, True),
    ('off', '=', 0, False), ('off', '<', True, True),
    ('state', '=', 'active', True), ('state', '!=', 'active', False),
    ('state', '=', 'ACTIVE', False), ('state', '>', 'Z', True),
    ('flavor.name', '=', 'm1.small', True),
    ('flavor.vcpus', '>=', 2, True), ('flavor.extra.k', '=', 'v', True),
]


@pytest.mark.parametrize('key,op,value,expected', KIND_CASES)
def test_metadata_kinds(key, op, value, expected):
    assert match({op: {f'resource_metadata.{key}': value}}) is expected


@pytest.mark.parametrize('key', ['missing', 'nul', 'tags', 'flavor',
                                 'flavor.extra', 'flavor.name.x',
                                 'state.x', 'tags.0', 'flavor.missing'])
@pytest.mark.parametrize('op', query.COMPARISONS)
def test_missing_null_and_containers_match_nothing(key, op):
    for value in ('a', 1, True):
        assert not match({op: {f'resource_metadata.{key}': value}})
        assert match({'not': {op: {f'resource_metadata.{key}': value}}})
    assert not match({'in': {f'resource_metadata.{key}': ['a', 1, True]}})


def test_samples_without_metadata():
    for metadata in ({}, None):
        data = sample(resource_metadata=metadata)
        assert not match({'!=': {'resource_metadata.state': 'x'}}, data)
        assert match({'not': {'=': {'resource_metadata.state': 'x'}}}, data)


def test_none_sample_fields():
    data = sample(user_id=None)
    assert not match({'=': {'user_id': 'u'}}, data)
    assert not match({'!=': {'user_id': 'u'}}, data)
    assert not match({'<': {'user_id': 'u'}}, data)
    assert not match({'in': {'user_id': ['u']}}, data)
    assert match({'not': {'=': {'user_id': 'u'}}}, data)
    assert not match({'>': {'recorded_at': '2000-01-01T00:00:00Z'}}, data)


def test_and_or_not():
    yes, no = {'=': {'name': 'cpu'}}, {'=': {'name': 'memory'}}
    assert match({'and': [yes, yes]}) and not match({'and': [yes, no]})
    assert match({'or': [no, yes]}) and not match({'or': [no, no]})
    assert match({'not': no}) and not match({'not': yes})
    assert match({'not': {'not': yes}})
    assert match({'and': [yes, {'or': [no, {'not': no}]}, {'not': {
        'and': [yes, no]}}]})
    assert not match({'or': [no, {'and': [yes, {'not': yes}]}]})


# --- SampleFilter.expression -------------------------------------------------

def test_empty_filter_is_none():
    assert base.SampleFilter().expression() is None
    assert base.SampleFilter(metaquery={}, conditions=[]).expression() is None


def test_one_term_is_not_wrapped():
    assert base.SampleFilter(meter='cpu').expression() == {
        '=': {'name': 'cpu'}}


def test_every_field():
    got = base.SampleFilter(
        user_id='u', project_id='p', resource_id='r', meter='cpu',
        source='s', message_id='m',
        start_timestamp='2024-05-01T14:00:00+02:00',
        end_timestamp=T0 + datetime.timedelta(hours=1),
        metaquery={'resource_metadata.state': 'active'},
        conditions=[('volume', '>', 1)]).expression()
    assert got == {'and': [
        {'=': {'user_id': 'u'}}, {'=': {'project_id': 'p'}},
        {'=': {'resource_id': 'r'}}, {'=': {'name': 'cpu'}},
        {'=': {'source': 's'}}, {'=': {'message_id': 'm'}},
        {'>=': {'timestamp': T0}},
        {'<': {'timestamp': T0 + datetime.timedelta(hours=1)}},
        {'=': {'resource_metadata.state': 'active'}},
        {'>': {'volume': 1.0}}]}


@pytest.mark.parametrize('scope', [{'p-2', 'p-1'}, frozenset({'p-2', 'p-1'}),
                                   ['p-2', 'p-1'], ('p-2', 'p-1')],
                         ids=lambda s: type(s).__name__)
def test_collections_mean_one_of(scope):
    assert base.SampleFilter(project_id=scope).expression() == {
        'in': {'project_id': ['p-1', 'p-2']}}
    assert base.SampleFilter(user_id=scope, resource_id=scope,
                             meter=scope).expression() == {'and': [
        {'in': {f: ['p-1', 'p-2']}} for f in ('user_id', 'resource_id',
                                              'name')]}


def test_an_empty_project_scope_is_never_everything():
    # The proxy's scope of a channel without projects: refused, not "no
    # filter".
    with pytest.raises(base.InvalidQuery):
        base.SampleFilter(project_id=set()).expression()
    with pytest.raises(base.InvalidQuery):
        base.SampleFilter(project_id=[]).expression()


@pytest.mark.parametrize('start_op,end_op,expected', [
    ('ge', 'lt', ('>=', '<')), ('gt', 'le', ('>', '<=')),
    ('ge', 'le', ('>=', '<=')), ('gt', 'lt', ('>', '<')),
])
def test_timestamp_ops(start_op, end_op, expected):
    end = T0 + datetime.timedelta(days=1)
    got = base.SampleFilter(start_timestamp=T0, start_timestamp_op=start_op,
                            end_timestamp=end,
                            end_timestamp_op=end_op).expression()
    assert got == {'and': [{expected[0]: {'timestamp': T0}},
                           {expected[1]: {'timestamp': end}}]}


def test_bad_timestamp_ops():
    with pytest.raises(base.InvalidQuery, match="start timestamp op 'le'"):
        base.SampleFilter(start_timestamp_op='le')
    with pytest.raises(base.InvalidQuery, match="end timestamp op 'ge'"):
        base.SampleFilter(end_timestamp_op='ge')
    with pytest.raises(base.InvalidQuery):
        base.SampleFilter(end_timestamp_op='<')


def test_filter_timestamps_are_parsed():
    sample_filter = base.SampleFilter(start_timestamp='2024-05-01T12:00:00',
                                      end_timestamp='2024-05-01T15:00:00+03:00')
    assert sample_filter.start_timestamp == T0
    assert sample_filter.end_timestamp == T0
    assert sample_filter.end_timestamp.tzinfo is not None
    with pytest.raises(ValueError):
        base.SampleFilter(start_timestamp='yesterday')
    with pytest.raises(ValueError):
        base.SampleFilter(end_timestamp=1714564800)


def test_metaquery_keys():
    got = base.SampleFilter(metaquery={
        'resource_metadata.flavor.name': 'm1', 'metadata.state': 'active',
        'enabled': True}).expression()
    # In the order of the keys as given (sorted).
    assert got == {'and': [
        {'=': {'resource_metadata.enabled': True}},
        {'=': {'resource_metadata.state': 'active'}},
        {'=': {'resource_metadata.flavor.name': 'm1'}}]}


def test_metaquery_and_conditions_are_validated():
    with pytest.raises(base.InvalidQuery, match='is not a string, number'):
        base.SampleFilter(metaquery={'metadata.a': [1]}).expression()
    with pytest.raises(base.InvalidQuery, match='unknown field'):
        base.SampleFilter(metaquery={'metadata.a b': 1}).expression()
    with pytest.raises(base.InvalidQuery, match='unknown operator'):
        base.SampleFilter(conditions=[('volume', '~', 1)]).expression()
    with pytest.raises(base.InvalidQuery, match='not a number'):
        base.SampleFilter(conditions=[('volume', '>', 'x')]).expression()


# --- check_statistics_args ---------------------------------------------------

def test_statistics_args_defaults():
    assert base.check_statistics_args(None, None, None) == (None, [], [])
    assert base.check_statistics_args(0, [], []) == (None, [], [])
    assert base.check_statistics_args(0.0, (), ()) == (None, [], [])


def test_statistics_args_normalized():
    assert base.check_statistics_args(
        60, ('project_id', 'resource_metadata.flavor.name'),
        ['avg', ('cardinality', 'user_id'), ['stddev', None],
         ['cardinality', 'source']]) == (
        60, ['project_id', 'resource_metadata.flavor.name'],
        [('avg', None), ('cardinality', 'user_id'), ('stddev', None),
         ('cardinality', 'source')])
    assert base.check_statistics_args(1.5, None, None)[0] == 1.5


@pytest.mark.parametrize('period,message', [
    (-1, 'period must be positive'), (-0.5, 'period must be positive'),
    ('60', "period '60' is not a number"), (True, 'period True is not a '
                                                  'number'),
    ([60], 'period [60] is not a number'),
])
def test_statistics_bad_period(period, message):
    with pytest.raises(base.InvalidQuery) as caught:
        base.check_statistics_args(period, None, None)
    assert str(caught.value) == message


@pytest.mark.parametrize('field', base.GROUPBY_FIELDS + (
    'resource_metadata.a', 'resource_metadata.a.b-c'))
def test_statistics_groupby_fields(field):
    assert base.check_statistics_args(None, [field], None)[1] == [field]


@pytest.mark.parametrize('field', [
    'volume', 'name', 'timestamp', 'unit', 'bogus', 'resource_metadata.',
    'resource_metadata.a b', 'metadata.a', 'resource_metadata'])
def test_statistics_bad_groupby(field):
    with pytest.raises(base.InvalidQuery) as caught:
        base.check_statistics_args(None, [field], None)
    assert str(caught.value) == f'cannot group by {field!r}'


def test_statistics_groupby_twice():
    with pytest.raises(base.InvalidQuery,
                       match='groupby names a field twice'):
        base.check_statistics_args(None, ['source', 'source'], None)


@pytest.mark.parametrize('aggregate,message', [
    ('median', "unknown aggregate 'median'"),
    (('median', None), "unknown aggregate 'median'"),
    ('AVG', "unknown aggregate 'AVG'"),
    ('cardinality', "cardinality of None: one of"),
    (('cardinality', 'name'), "cardinality of 'name': one of"),
    (('cardinality', 'volume'), "cardinality of 'volume': one of"),
    (('avg', 'volume'), 'aggregate avg takes no parameter'),
    (('count', 'user_id'), 'aggregate count takes no parameter'),
])
def test_statistics_bad_aggregates(aggregate, message):
    with pytest.raises(base.InvalidQuery) as caught:
        base.check_statistics_args(None, None, [aggregate])
    assert str(caught.value).startswith(message)


def test_period_start():
    origin = T0
    assert base.period_start(T0, origin, 60) == T0
    assert base.period_start(T0 + datetime.timedelta(seconds=59.999999),
                             origin, 60) == T0
    assert base.period_start(T0 + datetime.timedelta(seconds=60), origin,
                             60) == T0 + datetime.timedelta(seconds=60)
    assert base.period_start(T0 - datetime.timedelta(microseconds=1),
                             origin, 60) == T0 - datetime.timedelta(
        seconds=60)
    assert base.period_start(T0 + datetime.timedelta(seconds=7), origin,
                             2.5) == T0 + datetime.timedelta(seconds=5)


# --- validate_sample ---------------------------------------------------------

def test_valid_samples():
    assert base.validate_sample(make_sample(1)) is None
    for overrides in ({'volume': 3}, {'volume': -2.5}, {'volume': 0},
                      {'user_id': None, 'project_id': None},
                      {'timestamp': T0}, {'timestamp': '2024-05-01T12:00:00'},
                      {'timestamp': '2024-05-01T12:00:00Z'},
                      {'resource_metadata': None}, {'unit': None},
                      {'type': sample_mod.TYPE_GAUGE},
                      {'type': sample_mod.TYPE_DELTA}):
        assert base.validate_sample(make_sample(1, **overrides)) is None, \
            overrides


def _reason(**overrides):
    return base.validate_sample(make_sample(1, **overrides))


def test_invalid_samples():
    no_id = make_sample(1)
    no_id.id = None
    assert base.validate_sample(no_id) == 'id is missing or not a string'
    no_id.id = 5
    assert base.validate_sample(no_id) == 'id is missing or not a string'
    assert _reason(name=None) == 'name is missing or not a string'
    assert _reason(name='') == 'name is missing or not a string'
    assert _reason(resource_id=None) == ('resource_id is missing or not a '
                                         'string')
    assert _reason(resource_id=7) == 'resource_id is missing or not a string'
    assert _reason(type='counter') == (
        f"type 'counter' is not one of {sample_mod.TYPES}")
    assert _reason(type=None).startswith('type None is not one of')
    for volume in ('1.5', None, True, False, [1], {'v': 1}):
        assert _reason(volume=volume) == f'volume {volume!r} is not a number'
    for volume in (float('nan'), float('inf'), float('-inf')):
        assert _reason(volume=volume) == f'volume {volume!r} is not finite'
    for timestamp in ('yesterday', None, 1714564800, '2024-13-01', ''):
        assert _reason(timestamp=timestamp) == (
            f'timestamp {timestamp!r} is not ISO 8601')
    assert _reason(resource_metadata=['a']) == ('resource_metadata is not a '
                                                'mapping')
    assert _reason(resource_metadata='a') == ('resource_metadata is not a '
                                              'mapping')


def test_parse_timestamp():
    assert base.parse_timestamp('2024-05-01T14:00:00+02:00') == T0
    assert base.parse_timestamp('2024-05-01T12:00:00') == T0
    assert base.parse_timestamp(T0.replace(tzinfo=None)) == T0
    assert base.parse_timestamp(T0).tzinfo is not None
    for bad in ('soon', 5, None):
        with pytest.raises(ValueError):
            base.parse_timestamp(bad)


@pytest.mark.parametrize('key,field', [
    ('flavor.name', 'resource_metadata.flavor.name'),
    ('metadata.flavor.name', 'resource_metadata.flavor.name'),
    ('resource_metadata.host', 'resource_metadata.host'),
])
def test_metaquery_keys_keep_every_part(key, field):
    expression = base.SampleFilter(metaquery={key: 'x'}).expression()
    assert expression == {'=': {field: 'x'}}


@pytest.mark.parametrize('kwargs', [{'start_timestamp': 'yesterday'},
                                    {'end_timestamp': 12}])
def test_bad_filter_timestamps_are_invalid_queries(kwargs):
    with pytest.raises(base.InvalidQuery, match='timestamp'):
        base.SampleFilter(**kwargs)


@pytest.mark.parametrize('period,groupby,message', [
    (float('nan'), None, 'not finite'),
    (float('inf'), None, 'not finite'),
    (None, [3], 'cannot group by 3'),
])
def test_more_bad_statistics_args(period, groupby, message):
    with pytest.raises(base.InvalidQuery, match=message):
        base.check_statistics_args(period, groupby, None)
