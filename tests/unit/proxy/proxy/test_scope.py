"""ProjectScope on hostile filters: any term naming a project outside
the channel is 403 whatever its operator, a project value that is not a
string is 400, and nothing else escapes (issue 11, items 5 and 9)."""

import json

import pytest
import webob.multidict
from hypothesis import given, settings
from hypothesis import strategies as st

from calipso_agent.wsgi import errors
from calipso_proxy.proxy import scope as scope_mod

CHANNEL = ('p-allowed-1', 'p-allowed-2')
FOREIGN = 'p-foreign'
SCOPE = scope_mod.ProjectScope(CHANNEL)


def check(expression):
    body = json.dumps({'filter': json.dumps(expression)}).encode()
    return json.loads(json.loads(SCOPE.scoped_complex_query(body))[
        'filter'])


@pytest.mark.parametrize('expression', [
    {'=': {'project_id': {'a': 1}}},
    {'in': {'project_id': [['x']]}},
    {'in': {'project_id': ['p-allowed-1', {'x': 1}]}},
    {'=': {'project': None}},
    {'or': [{'=': {'volume': 1}}, {'not': {'=': {'project_id': 7}}}]},
])
def test_a_project_value_not_a_string_is_400(expression):
    with pytest.raises(errors.ClientError) as raised:
        check(expression)
    assert raised.value.code == 400
    assert 'project value' in raised.value.message


@pytest.mark.parametrize('op', ['=', '!=', '<', '<=', '>', '>=', 'like',
                                'in', 'ne', 'eq'])
def test_a_complex_leaf_naming_a_foreign_project_is_403(op):
    with pytest.raises(errors.ForbiddenError):
        check({'not': {op: {'project_id': FOREIGN}}})


@pytest.mark.parametrize('op', ['eq', 'ne', 'lt', 'le', 'gt', 'ge', 'like',
                                'in'])
def test_a_simple_term_naming_a_foreign_project_is_403(op):
    params = webob.multidict.MultiDict([
        ('q.field', 'project_id'), ('q.op', op), ('q.value', FOREIGN)])
    with pytest.raises(errors.ForbiddenError):
        SCOPE.scoped_params(params)


def test_a_simple_term_naming_a_channel_project_passes():
    params = webob.multidict.MultiDict([
        ('q.field', 'project_id'), ('q.op', 'ne'),
        ('q.value', 'p-allowed-1')])
    forwarded = SCOPE.scoped_params(params)
    assert forwarded[-3:-1] == [('q.op', 'in'),
                                ('q.value', ','.join(CHANNEL))]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats()
    | st.sampled_from([*CHANNEL, FOREIGN, '', 'and', 'or', 'not']),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(
        ['and', 'or', 'not', '=', 'in', '!=', 'like', '>', 'project_id',
         'project', ' Project_ID', 'volume', 'resource']), children,
        max_size=3),
    max_leaves=12)


def named_projects(value, found):
    """Every value under a project key of ``value``, as a list."""
    if isinstance(value, list):
        for child in value:
            named_projects(child, found)
    elif isinstance(value, dict):
        for key, child in value.items():
            if key.strip().lower() in scope_mod.PROJECT_FIELDS:
                found.extend(child if isinstance(child, list) else [child])
            else:
                named_projects(child, found)
    return found


@settings(max_examples=400, deadline=None)
@given(expression=json_values)
def test_any_filter_is_refused_4xx_or_forwarded_inside_the_scope(
        expression):
    try:
        forwarded = check(expression)
    except errors.ClientError as exc:
        assert exc.code in (400, 403)
        named = named_projects(expression, [])
        if exc.code == 403:
            assert any(isinstance(p, str) and p not in CHANNEL
                       for p in named)
        else:
            assert any(not isinstance(p, str) for p in named)
        return
    assert all(p in CHANNEL for p in named_projects(expression, []))
    # The forwarded filter is the scope and the tenant's, unchanged
    # (compared as JSON text: a NaN is not equal to itself).
    scope, tenant = forwarded['and']
    assert scope == {'in': {'project_id': sorted(CHANNEL)}}
    assert json.dumps(tenant, sort_keys=True) == json.dumps(
        expression, sort_keys=True)
