"""Identities and project scopes (api/rbac.py)."""

import pytest

from calipso_agent.api import rbac
from calipso_agent.api.query import Term
from calipso_agent.wsgi import errors
from calipso_agent.wsgi import identity as identity_mod


def identity(roles='member', project='p1', role='admin', scope=None):
    headers = {'X-Roles': roles, 'X-User-Id': 'u1'}
    if project is not None:
        headers['X-Project-Id'] = project
    if scope is not None:
        headers[rbac.SCOPE_HEADER] = scope
    return identity_mod.Identity.from_headers(headers, role)


def reader(scope='p2,p3'):
    return identity('svc', role='svc', scope=scope)


def test_identity_from_headers():
    caller = identity_mod.Identity.from_headers({
        'X-Roles': ' Reader ,Admin', 'X-Tenant-Id': 't1', 'X-User-Id': 'u1',
        'X-Identity-Status': 'Confirmed'})
    assert caller.roles == {'reader', 'admin'}
    assert caller.is_admin and caller.multi_project
    assert (caller.project_id, caller.user_id) == ('t1', 'u1')


def test_invalid_identity_is_401():
    with pytest.raises(errors.UnauthorizedError):
        identity_mod.Identity.from_headers({'X-Identity-Status': 'Invalid'})


def test_query_scope():
    assert rbac.query_scope(identity('admin'), []) is None
    assert rbac.query_scope(identity(), []) == 'p1'
    assert rbac.query_scope(identity(), [Term('project_id', 'in',
                                              ['p1'])]) == 'p1'
    with pytest.raises(errors.ForbiddenError, match='p2'):
        rbac.query_scope(identity(), [Term('project_id', 'ne', 'p2')])
    with pytest.raises(errors.ForbiddenError):
        rbac.query_scope(identity(project=None), [])


def test_query_scope_of_the_reader_role():
    proxy = reader()
    assert not proxy.is_admin and proxy.is_reader and proxy.multi_project
    assert rbac.query_scope(proxy, [Term('project_id', 'in',
                                         ['p2', 'p3'])]) is None
    assert rbac.query_scope(proxy, [Term('project_id', 'eq', 'p3'),
                                    Term('project_id', 'ne', 'p2')]) is None
    # No project limit, a project outside the declared scope (whatever
    # the operator), no declared scope: refused, never widened.
    for terms in ([], [Term('project_id', 'ne', 'p2')],
                  [Term('project_id', 'in', ['p2', 'p9'])],
                  [Term('project_id', 'in', ['p2']),
                   Term('project_id', 'lt', 'p9')]):
        with pytest.raises(errors.ForbiddenError):
            rbac.query_scope(proxy, terms)
    with pytest.raises(errors.ForbiddenError, match='Project-Scope'):
        rbac.query_scope(reader(scope=None), [Term('project_id', 'in',
                                                   ['p2'])])


def test_scope_expression_wraps_a_members_filter():
    leaf = {'=': {'name': 'cpu'}}
    assert rbac.scope_expression(identity(), leaf) == {
        'and': [{'=': {'project_id': 'p1'}}, leaf]}
    assert rbac.scope_expression(identity(), None) == {
        '=': {'project_id': 'p1'}}
    assert rbac.scope_expression(identity('admin'), leaf) is leaf
    with pytest.raises(errors.ForbiddenError):
        rbac.scope_expression(identity(), {'or': [leaf, {'not': {
            'in': {'project_id': ['p1', 'p2']}}}]})


def test_scope_expression_of_the_reader_role():
    proxy = reader()
    scoped = {'and': [{'in': {'project_id': ['p2', 'p3']}},
                      {'=': {'name': 'cpu'}}]}
    assert rbac.scope_expression(proxy, scoped) is scoped
    single = {'=': {'project_id': 'p2'}}
    assert rbac.scope_expression(proxy, single) is single
    for refused in (
            None, {'=': {'name': 'x'}},
            {'or': [{'=': {'project_id': 'p2'}}, {'=': {'name': 'x'}}]},
            {'and': [{'in': {'project_id': ['p2', 'p9']}}]},
            {'and': [single, {'not': {'=': {'project_id': 'p9'}}}]}):
        with pytest.raises(errors.ForbiddenError):
            rbac.scope_expression(proxy, refused)


def test_id_scope_and_writes():
    assert rbac.id_scope(identity()) == 'p1'
    assert rbac.id_scope(identity('admin')) is None
    assert rbac.id_scope(reader()) == {'p2', 'p3'}
    with pytest.raises(errors.ForbiddenError):
        rbac.id_scope(reader(scope=None))
    rbac.check_write(identity(), 'p1')
    rbac.check_write(identity('admin'), 'p9')
    for caller, project in ((identity(), 'p2'), (reader(), 'p2'),
                            (reader(), 'p1')):
        with pytest.raises(errors.ForbiddenError):
            rbac.check_write(caller, project)
    with pytest.raises(errors.ForbiddenError):
        rbac.check_write(identity(), None)
