"""Who sees what, through the API (rbac.py's rules)."""

import json

import pytest

from calipso_agent import project_scope
from calipso_agent.api import app, rbac
from tests.unit.api import support
from tests.unit.api.support import fault, member, query

LISTS = ('/v2/samples', '/v2/meters', '/v2/meters/cpu', '/v2/resources')
PROXY_ROLE = 'telemetry_proxy'


def projects_of(response):
    assert response.status_code == 200, response.text
    return {item['project_id'] for item in response.json}


@pytest.fixture
def proxy(tmp_path, store):
    """A client of an API whose multi_project_role (the reader) is
    PROXY_ROLE, with a service token of that role in its own project
    declaring the scope of a channel of project-a and project-b."""
    conf = support.make_conf(tmp_path, api__multi_project_role=PROXY_ROLE)
    headers = member('project-service', 'svc', f'service,{PROXY_ROLE}')
    headers[rbac.SCOPE_HEADER] = 'project-a,project-b'
    return support.Client(app.setup_app(conf=conf, storage=store),
                          headers=headers)


@pytest.mark.parametrize('path', LISTS)
def test_admin_sees_every_project(client, path):
    assert projects_of(client.get(path)) == {'project-a', 'project-b'}


@pytest.mark.parametrize('path', LISTS)
def test_member_sees_its_own_project(client, path):
    response = client.get(path, headers=member('project-b'))
    assert projects_of(response) == {'project-b'}


def test_member_statistics_are_of_its_own_project(client, samples):
    (stats,) = client.get('/v2/meters/cpu/statistics',
                          headers=member('project-b')).json
    assert stats['count'] == sum(1 for s in samples if s.name == 'cpu'
                                 and s.project_id == 'project-b')


@pytest.mark.parametrize('terms', [
    query(('project_id', 'eq', 'project-a')),
    query(('project', 'eq', 'project-a')),
    query(('project_id', 'in', 'project-a')),
])
def test_member_may_name_its_own_project(client, terms):
    response = client.get('/v2/samples', terms, headers=member('project-a'))
    assert projects_of(response) == {'project-a'}


@pytest.mark.parametrize('path', LISTS + ('/v2/meters/cpu/statistics',))
@pytest.mark.parametrize('terms', [
    query(('project_id', 'eq', 'project-b')),
    query(('project', 'eq', 'project-b')),
    query(('project_id', 'in', 'project-a,project-b')),
    query(('project_id', 'ne', 'project-b')),
    query(('project_id', 'eq', 'project-a'),
          ('project_id', 'eq', 'project-b')),
])
def test_member_naming_another_project_is_403(client, path, terms):
    status, code, message = fault(client.get(path, terms,
                                             headers=member('project-a')))
    assert (status, code) == (403, 'Client') and 'project-b' in message


SIMPLE_OPS = ('eq', 'ne', 'lt', 'le', 'gt', 'ge', 'in', 'like', 'nope')


@pytest.mark.parametrize('path', LISTS + ('/v2/meters/cpu/statistics',
                                          '/v2/resources/vm-0'))
@pytest.mark.parametrize('op', SIMPLE_OPS)
def test_member_naming_another_project_is_403_whatever_the_op(client, path,
                                                              op):
    """One rule: a term naming a project outside the caller's is refused,
    even with an operator the field does not take."""
    for value in ('project-b', 'project-%', 'project-a,project-b'):
        status, code, message = fault(client.get(
            path, query(('project_id', op, value)),
            headers=member('project-a')))
        assert (status, code) == (403, 'Client'), (op, value)
        assert 'project-' in message


@pytest.mark.parametrize('op', ('lt', 'le', 'gt', 'ge', 'like'))
def test_member_own_project_with_an_unknown_op_is_400(client, op):
    status, _, message = fault(client.get(
        '/v2/samples', query(('project_id', op, 'project-a')),
        headers=member('project-a')))
    assert status == 400 and 'q.op' in message


def test_member_ne_own_project_sees_nothing(client):
    response = client.get('/v2/samples',
                          query(('project_id', 'ne', 'project-a')),
                          headers=member('project-a'))
    assert response.json == []


def test_ids_of_other_projects_are_not_found(client, samples):
    other = [s for s in samples if s.project_id == 'project-b'][0]
    own = [s for s in samples if s.project_id == 'project-a'][0]
    headers = member('project-a')
    assert client.get(f'/v2/samples/{other.id}',
                      headers=headers).status_code == 404
    assert client.get(f'/v2/samples/{own.id}',
                      headers=headers).status_code == 200
    assert client.get('/v2/resources/vm-2',
                      headers=headers).status_code == 404
    assert client.get('/v2/resources/vm-0',
                      headers=headers).status_code == 200


def test_token_without_project_is_403(client):
    headers = {'X-Roles': 'member', 'X-User-Id': 'u'}
    for path in LISTS + ('/v2/samples/x', '/v2/resources/vm-0'):
        assert client.get(path, headers=headers).status_code == 403, path


def test_refused_token_is_401(client):
    response = client.get('/v2/samples',
                          headers={'X-Identity-Status': 'Invalid'})
    assert fault(response)[:2] == (401, 'Client')


def complex_query(client, expression, headers):
    return client.post('/v2/query/samples',
                       {'filter': json.dumps(expression)}, headers=headers)


@pytest.mark.parametrize('expression', [
    None,
    {'=': {'meter': 'cpu'}},
    {'or': [{'=': {'meter': 'cpu'}}, {'=': {'meter': 'memory'}}]},
    {'not': {'=': {'project_id': 'project-a'}}},
    {'or': [{'=': {'project': 'project-a'}}, {'not': {'=': {'user': 'x'}}}]},
    {'!=': {'project_id': 'project-a'}},
])
def test_complex_query_cannot_escape_the_project(client, expression):
    headers = member('project-a')
    if expression is None:
        response = client.post('/v2/query/samples', {}, headers=headers)
    else:
        response = complex_query(client, expression, headers)
    assert projects_of(response) <= {'project-a'}


@pytest.mark.parametrize('op', ('=', '!=', '<', '<=', '>', '>=', '=<',
                                '=>', 'like'))
def test_complex_query_naming_another_project_is_403_whatever_the_op(
        client, op):
    for expression in ({op: {'project_id': 'project-b'}},
                       {'not': {op: {'project': 'project-b'}}},
                       {'and': [{'=': {'project_id': 'project-a'}},
                                {op: {'project_id': 'project-b'}}]}):
        response = complex_query(client, expression, member('project-a'))
        assert fault(response)[:2] == (403, 'Client'), expression


@pytest.mark.parametrize('expression', [
    {'=': {'project_id': 'project-b'}},
    {'or': [{'=': {'meter': 'cpu'}}, {'=': {'project': 'project-b'}}]},
    {'not': {'in': {'project_id': ['project-a', 'project-b']}}},
    {'like': {'project_id': 'project-%'}},
])
def test_complex_query_naming_another_project_is_403(client, expression):
    response = complex_query(client, expression, member('project-a'))
    assert fault(response)[0] == 403


def test_admin_complex_query_is_not_scoped(client):
    response = complex_query(client, {'=': {'meter': 'cpu'}}, support.ADMIN)
    assert projects_of(response) == {'project-a', 'project-b'}


def test_multi_project_role_names_a_set_of_projects(proxy):
    terms = query(('project_id', 'in', 'project-a,project-b'))
    for path in LISTS:
        assert projects_of(proxy.get(path, terms)) == {'project-a',
                                                       'project-b'}
    assert projects_of(proxy.get(
        '/v2/samples', query(('project_id', 'eq', 'project-b')))) == {
        'project-b'}


@pytest.mark.parametrize('path', LISTS + ('/v2/meters/cpu/statistics',))
@pytest.mark.parametrize('terms', [
    [], query(('resource_id', 'eq', 'vm-0')),
    query(('project_id', 'ne', 'project-a')),
    query(('project_id', 'in', 'project-a,project-c')),
    query(('project_id', 'in', 'project-a'),
          ('project_id', 'ne', 'project-c')),
])
def test_reader_query_outside_or_without_its_scope_is_403(proxy, path,
                                                          terms):
    assert fault(proxy.get(path, terms))[0] == 403


def test_reader_without_a_declared_scope_is_403(proxy, samples):
    headers = {k: v for k, v in proxy.headers.items()
               if k != rbac.SCOPE_HEADER}
    terms = query(('project_id', 'in', 'project-a'))
    assert fault(proxy.get('/v2/samples', terms, headers=headers))[0] == 403
    assert fault(proxy.get(f'/v2/samples/{samples[0].id}',
                           headers=headers))[0] == 403


def test_reader_complex_query(proxy):
    both = {'and': [{'in': {'project_id': ['project-a', 'project-b']}},
                    {'=': {'meter': 'cpu'}}]}
    assert projects_of(complex_query(proxy, both, proxy.headers)) == {
        'project-a', 'project-b'}
    for refused in ({'or': [{'=': {'project_id': 'project-a'}},
                            {'=': {'meter': 'cpu'}}]},
                    {'=': {'meter': 'cpu'}},
                    {'in': {'project_id': ['project-a', 'project-c']}}):
        response = complex_query(proxy, refused, proxy.headers)
        assert fault(response)[0] == 403


def test_reader_reads_ids_of_its_scope_only(proxy, samples):
    headers = dict(proxy.headers)
    headers[rbac.SCOPE_HEADER] = samples[2].project_id
    assert proxy.get(f'/v2/samples/{samples[2].id}',
                     headers=headers).status_code == 200
    other = next(s for s in samples
                 if s.project_id != samples[2].project_id)
    assert proxy.get(f'/v2/samples/{other.id}',
                     headers=headers).status_code == 404
    assert proxy.get(f'/v2/resources/{other.resource_id}',
                     headers=headers).status_code == 404


@pytest.mark.parametrize('project', ['project-a', 'project-service', None])
def test_reader_never_posts(proxy, project):
    sample = {'counter_name': 'cpu', 'counter_type': 'gauge',
              'counter_unit': 'ns', 'counter_volume': 1,
              'resource_id': 'vm-0'}
    if project:
        sample['project_id'] = project
    response = proxy.post('/v2/meters/cpu', [sample])
    assert response.status_code == 403


def test_roles_are_case_insensitive(client):
    headers = member('project-a', roles='Member, ADMIN')
    assert projects_of(client.get('/v2/samples', headers=headers)) == {
        'project-a', 'project-b'}


@pytest.fixture
def signed(tmp_path, store):
    """The reader of an API with a scope signing key."""
    conf = support.make_conf(tmp_path, api__multi_project_role=PROXY_ROLE,
                             api__scope_signing_key='k' * 32)
    headers = member('project-service', 'svc', f'service,{PROXY_ROLE}')
    headers[rbac.SCOPE_HEADER] = 'project-b,project-a'
    return support.Client(app.setup_app(conf=conf, storage=store),
                          headers=headers)


@pytest.mark.parametrize('signature, status', [
    (project_scope.sign('k' * 32, ['project-a', 'project-b']), 200),
    (project_scope.sign('k' * 32, ['project-a', 'project-b']).upper(), 200),
    (None, 403),
    ('', 403),
    (project_scope.sign('k' * 32, ['project-a']), 403),
    (project_scope.sign('another key', ['project-a', 'project-b']), 403),
])
def test_signed_scope(signed, samples, signature, status):
    headers = dict(signed.headers)
    if signature is not None:
        headers[project_scope.SIGNATURE_HEADER] = signature
    terms = query(('project_id', 'in', 'project-a,project-b'))
    response = signed.get('/v2/samples', terms, headers=headers)
    item = signed.get(f'/v2/samples/{samples[0].id}', headers=headers)
    if status == 200:
        assert projects_of(response) == {'project-a', 'project-b'}
        assert item.status_code == 200
    else:
        code, _, message = fault(response)
        assert code == 403
        assert project_scope.SIGNATURE_HEADER in message
        assert fault(item)[0] == 403


def test_the_signature_does_not_depend_on_order_or_spaces():
    key = 'secret'
    assert project_scope.sign(key, ['b', 'a']) == project_scope.sign(
        key, [' a', 'b ', 'a'])
    assert project_scope.verify(key, project_scope.parse('b, a'),
                                project_scope.sign(key, ['a', 'b']))
    assert not project_scope.verify(key, ['a', 'b', 'c'],
                                    project_scope.sign(key, ['a', 'b']))
