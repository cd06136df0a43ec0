"""Field specs: the compiled fast paths mean what jsonpath-rw-ext means."""

import string

import hypothesis
import pytest
from hypothesis import strategies as st

from calipso_agent.notification import fields, meter_plugins

KEYS = st.sampled_from(['a', 'b', 'c', 'payload', 'x y'])
JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(),
                        st.floats(allow_nan=False),
                        st.text(string.ascii_letters, max_size=5))
DOCUMENTS = st.recursive(
    JSON_LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(KEYS, children, max_size=4)),
    max_leaves=20)


def reference_first(expression, document):
    """Ceilometer's reading: the first non-null match of jsonpath-rw-ext."""
    for match in fields.parse_path(expression).find(document):
        if match.value is not None:
            return match.value
    return None


@hypothesis.given(document=st.dictionaries(KEYS, DOCUMENTS, max_size=4),
                  keys=st.lists(KEYS, min_size=1, max_size=5),
                  rooted=st.booleans())
@hypothesis.settings(max_examples=300, deadline=None)
def test_key_chain_fast_path_equals_jsonpath(document, keys, rooted):
    expression = '.'.join(f"['{k}']" if ' ' in k else k for k in keys)
    expression = expression.replace('.[', '[')
    if rooted:
        expression = '$.' + expression
    path = fields.Path(expression)
    assert path.keys == tuple(keys)
    assert path.first(document) == reference_first(expression, document)


@pytest.mark.parametrize('expression', [
    '$.payload.items[0].id', '$.payload.items[*].id',
    "$.payload.kv[?key=image_id].value", '$.payload.*',
    '$.payload.a + "_" + $.payload.b', '$..id'])
def test_other_expressions_use_jsonpath(expression):
    path = fields.Path(expression)
    assert path.keys is None
    document = {'payload': {'items': [{'id': None}, {'id': 'b'}],
                            'kv': [{'key': 'image_id', 'value': 'v'}],
                            'a': 'x', 'b': 'y', 'id': 'top'}}
    assert path.first(document) == reference_first(expression, document)


def test_list_of_paths_takes_the_first_with_a_value():
    field = fields.FieldDefinition('f', ['$.a', '$.b', '$.c'])
    assert field.first({'b': 0, 'c': 2}) == 0
    assert field.first({'a': None, 'c': 2}) == 2
    assert field.first({}) is None


def test_constants_and_literal_fallback():
    assert fields.FieldDefinition('v', 1).first({}) == 1
    assert fields.FieldDefinition('v', 2.5).all({}) == 2.5
    unit = fields.FieldDefinition('unit', 'B/s', literal_fallback=True)
    assert unit.is_constant and unit.first({}) == 'B/s'
    with pytest.raises(fields.FieldSpecError, match='invalid JSONPath'):
        fields.FieldDefinition('volume', 'B/s')


@pytest.mark.parametrize('spec,message', [
    (None, 'neither a number nor a JSONPath'),
    (True, 'neither a number nor a JSONPath'),
    ([], 'is not a JSONPath'),
    ({'plugin': 'timedelta'}, "'fields' is required"),
    ({'fields': '$.a', 'plugin': {'parameters': {}}}, 'names no plugin'),
    ({'fields': '$.a', 'plugin': {'name': 'map', 'parameters': {'x': 1}}},
     "plugin 'map'"),
])
def test_bad_specs(spec, message):
    plugins = {'map': meter_plugins.MapPlugin}
    with pytest.raises(fields.FieldSpecError, match=message):
        fields.FieldDefinition('f', spec, plugins)


def test_map_and_split_plugins():
    plugins = {'map': meter_plugins.MapPlugin,
               'split': meter_plugins.SplitPlugin}
    mapped = fields.FieldDefinition('f', {
        'fields': '$.state',
        'plugin': {'name': 'map', 'parameters': {
            'values': {'active': 1, 'error': 0}, 'default': -1,
            'case_sensitive': False}}}, plugins)
    assert mapped.first({'state': 'ACTIVE'}) == 1
    assert mapped.first({'state': 'paused'}) == -1
    split = fields.FieldDefinition('f', {
        'fields': '$.host', 'plugin': {'name': 'split', 'parameters': {
            'separator': '.', 'segment': 1}}}, plugins)
    assert split.first({'host': 'compute.host1.example'}) == 'host1'
    assert split.all({'host': 'one'}) == []


def test_plugin_without_all_values_refuses_lookup():
    field = fields.FieldDefinition(
        'f', {'fields': ['$.a', '$.b'], 'plugin': 'timedelta'},
        {'timedelta': meter_plugins.TimedeltaPlugin})
    with pytest.raises(fields.FieldSpecError, match='one value'):
        field.all({'a': '2024-01-01', 'b': '2024-01-02'})
    assert field.first({'a': '2024-01-01', 'b': '2024-01-02'}) == 86400.0
