"""Who is asking, and which projects they may see.

The identity comes from the headers keystonemiddleware's auth_token sets
(``X-Identity-Status``, ``X-Roles``, ``X-Project-Id``, ``X-User-Id``); in
the development ``noauth`` pipeline they are taken as the client sent
them, and a request without ``X-Roles`` is an admin's, or the reader's
below when it declares a channel's scope (wsgi/auth.py).

* The ``admin`` role sees every project.
* The role of ``[api] multi_project_role`` (without admin) is the reader
  of the channel proxies' service user: it reads, never writes, and only
  inside the projects its request names in ``X-Calipso-Project-Scope``
  (the channel's, from the proxy's configuration, not from its query
  rewriting). Every query of such a token must limit project_id (``eq``
  or ``in``, at the top level of a complex query) to projects of that
  header, and name no other; an id is read in those projects only. So a
  bug in the proxy's rewriting is refused (403), never widened. With
  ``[api] scope_signing_key`` the declaration counts only with its
  signature (calipso_agent/project_scope.py), so a proxy cannot declare
  more projects than its channel's either.
* Any other token sees its own project only: a query naming another
  project is refused (403), an id of another project is not found (404).
"""

from calipso_agent.wsgi import errors
from calipso_agent.wsgi import identity as identity_mod

SCOPE_HEADER = identity_mod.SCOPE_HEADER


def _not_authorized(project):
    return errors.ForbiddenError(
        f'Not Authorized to access project {project}')


def query_scope(identity, project_terms):
    """The project a simple query must be limited to (None: no limit).

    ``project_terms`` are the query's Terms on project_id; a term naming
    a project the caller may not see is refused with 403.
    """
    if identity.is_admin:
        return None
    if identity.is_reader:
        _check_reader_terms(identity, project_terms)
        return None
    own = identity.own_project()
    for term in project_terms:
        values = term.value if term.op == 'in' else [term.value]
        for value in values:
            if value != own:
                raise _not_authorized(value)
    return own


def _check_reader_terms(identity, project_terms):
    """403 unless the terms limit project_id to the declared scope and
    name no project outside it."""
    scope = identity.reader_scope()
    for term in project_terms:
        values = term.value if term.op == 'in' else [term.value]
        for value in values:
            if value not in scope:
                raise _not_authorized(value)
    if not any(term.op in ('eq', 'in') for term in project_terms):
        raise errors.ForbiddenError('RBAC Authorization Failed: a reader '
                                    'query must limit project_id')


def check_named_projects(identity, terms):
    """403 when one of the (op, value text) of simple-query terms on
    project_id names a project other than the caller's own (``in``: a
    comma-separated list)."""
    own = identity.own_project()
    for op, value in terms:
        names = ([name.strip() for name in value.split(',') if name.strip()]
                 if op == 'in' else [value])
        for name in names:
            if name != own:
                raise _not_authorized(name)


def _leaves(expression):
    ((op, operand),) = expression.items()
    if op in ('and', 'or'):
        for child in operand:
            yield from _leaves(child)
    elif op == 'not':
        yield from _leaves(operand)
    else:
        yield op, operand


def _names_projects(expression):
    """Whether a top-level conjunct of ``expression`` limits project_id
    to given values (= or in)."""
    if expression is None:
        return False
    ((op, operand),) = expression.items()
    conjuncts = operand if op == 'and' else [expression]
    for conjunct in conjuncts:
        ((leaf_op, leaf),) = conjunct.items()
        if leaf_op in ('=', 'in') and 'project_id' in leaf:
            return True
    return False


def scope_expression(identity, expression):
    """A complex-query expression limited to what the caller may see.

    A non-admin's filter is wrapped as ``and(project_id = own, filter)``
    after checking that it names no other project (403), so or/not
    cannot escape the scope.
    """
    if identity.is_admin:
        return expression
    if identity.is_reader:
        scope = identity.reader_scope()
        for _, operand in _leaves(expression or {'and': []}):
            value = operand.get('project_id')
            if value is None:
                continue
            for item in value if isinstance(value, list) else [value]:
                if item not in scope:
                    raise _not_authorized(item)
        if not _names_projects(expression):
            raise errors.ForbiddenError('RBAC Authorization Failed: a '
                                        'reader query must limit '
                                        'project_id')
        return expression
    own = identity.own_project()
    if expression is not None:
        for _, operand in _leaves(expression):
            value = operand.get('project_id', own)
            for item in value if isinstance(value, list) else [value]:
                if item != own:
                    raise _not_authorized(item)
    restriction = {'=': {'project_id': own}}
    if expression is None:
        return restriction
    return {'and': [restriction, expression]}


def id_scope(identity):
    """The project (or set of a reader's) a sample or resource read by id
    must belong to (None: any); outside it the id is not found."""
    if identity.is_admin:
        return None
    if identity.is_reader:
        return set(identity.reader_scope())
    return identity.own_project()


def check_write(identity, project_id):
    """403 unless the caller may post samples to ``project_id``: never a
    reader's."""
    if identity.is_admin:
        return
    if identity.is_reader:
        raise errors.ForbiddenError('The reader role may not post samples')
    if project_id != identity.own_project():
        raise errors.ForbiddenError(f'Not Authorized to post samples to '
                                    f'project {project_id}')
