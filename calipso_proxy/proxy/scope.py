"""ProjectScope: a tenant request limited to the channel's projects.

Every rule of DESIGN.md section 7 that concerns what is forwarded lives
here, away from HTTP plumbing:

* a simple query keeps the tenant's terms and gains one more,
  ``project_id in <authorized>``; the backend API intersects terms on one
  field, so the answer can only narrow. A tenant term naming a project
  outside the channel, whatever its operator, is refused with 403 (the
  API's rule for a member token);
* a complex query becomes ``and(project_id in <authorized>, filter)``, so
  no ``or``/``not`` of the tenant's can reach outside the scope; a leaf
  naming another project, whatever its operator, is refused with 403, a
  project value that is not a string (or a list of strings) with 400;
* what comes back is checked again: an item of another project is never
  passed on (the backend is trusted, but a leak is worse than an error).
"""

import json

from calipso_agent import query_model
from calipso_agent.inventory_graph import visibility
from calipso_agent.wsgi import errors, query_string

# What an opaque infrastructure node (as a step of an impact or path
# too) and a link to one may hold.
OPAQUE_NODE_KEYS = frozenset(visibility.OPAQUE_NODE_FIELDS + ('opaque',) +
                             visibility.STEP_FIELDS)
BARE_LINK_KEYS = frozenset(visibility.BARE_LINK_FIELDS)

# The simple and complex query field names that mean project_id.
PROJECT_FIELDS = frozenset(('project_id', 'project'))


def _is_project_field(key):
    return key.strip().lower() in PROJECT_FIELDS


def _too_deep():
    return errors.ClientError('Filter expression not valid: nested too '
                              'deeply')


class ProjectScope:
    """The authorized project IDs of one channel."""

    def __init__(self, projects):
        self.projects = frozenset(p for p in projects if p)
        if not self.projects:
            raise ValueError('a channel needs at least one project')
        # Sorted: the same request always forwards the same URL.
        self.ordered = sorted(self.projects)

    def __contains__(self, project_id):
        return project_id in self.projects

    def _refuse(self, project):
        raise errors.ForbiddenError(
            f'Project {project} is not authorized for this channel '
            f'(authorized: {", ".join(self.ordered)})')

    # --- simple queries ------------------------------------------------
    def scoped_params(self, params):
        """The (name, value) pairs to forward for a tenant's query string
        (a webob MultiDict): its own parameters, its q terms with an
        explicit q.op and q.type each, and the scope term."""
        quadruples = query_string.query_quadruples(params)
        forwarded = [(k, v) for k, v in params.items()
                     if k not in query_string.QUERY_KEYS]
        for field, op, value, type_ in quadruples:
            if field.strip() in PROJECT_FIELDS:
                self._check_simple_term(op or 'eq', value)
            forwarded += [('q.field', field), ('q.op', op or 'eq'),
                          ('q.value', value), ('q.type', type_)]
        forwarded += [('q.field', 'project_id'), ('q.op', 'in'),
                      ('q.value', ','.join(self.ordered)), ('q.type', '')]
        return forwarded

    def _check_simple_term(self, op, value):
        if op == 'in':
            named = [v.strip() for v in value.split(',') if v.strip()]
        else:
            named = [value]
        for project in named:
            if project not in self.projects:
                self._refuse(project)

    # --- complex queries -----------------------------------------------
    def scoped_complex_query(self, body):
        """The JSON body to forward for a tenant's POST /v2/query/samples
        body (bytes)."""
        try:
            query = json.loads(body or b'{}')
        except (ValueError, RecursionError) as exc:
            raise errors.ClientError(f'Request body is not JSON: {exc}')
        if not isinstance(query, dict):
            raise errors.ClientError('Request body must be a JSON object')
        text = query.get('filter')
        scope = {'in': {'project_id': self.ordered}}
        if text in (None, ''):
            query['filter'] = json.dumps(scope)
            return json.dumps(query).encode()
        if not isinstance(text, str):
            raise errors.ClientError('Filter expression not valid: the '
                                     'filter must be a JSON string')
        try:
            expression = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise errors.ClientError(f'Filter expression not valid: {exc}')
        self._check_expression(expression)
        query['filter'] = json.dumps({'and': [scope, expression]})
        return json.dumps(query).encode()

    def _check_expression(self, expression):
        """Every object and list of the filter: the value of any project
        field, under any operator, must name channel projects only (403)
        and be a string or a list of strings (400). The rest of the
        validation is the backend's."""
        for _, value in query_model.find_terms(
                expression, _is_project_field, _too_deep):
            self._check_project_value(value)

    def _check_project_value(self, value):
        values = value if isinstance(value, list) else [value]
        for project in values:
            if not isinstance(project, str):
                raise errors.ClientError(
                    'Filter expression not valid: a project value must be '
                    'a string or a list of strings')
            if project not in self.projects:
                self._refuse(project)

    # --- inventory -----------------------------------------------------
    def inventory_params(self, params):
        """The (name, value) pairs to forward for an inventory request:
        as sent, once every project_id value (repeated or
        comma-separated) is checked to be the channel's (403)."""
        for name, value in params.items():
            if _is_project_field(name):
                for project in value.split(','):
                    if project.strip() and project.strip() not in \
                            self.projects:
                        self._refuse(project.strip())
        return list(params.items())

    def inventory_in_scope(self, document):
        """Whether every object and link of an inventory answer is of
        the channel's projects or an opaque infrastructure node (or a
        bare link to one). An object's ``attributes`` are its own data,
        not looked into."""
        stack = [document]
        while stack:
            item = stack.pop()
            if isinstance(item, list):
                stack.extend(item)
            elif isinstance(item, dict):
                if not self._inventory_item_in_scope(item):
                    return False
                stack.extend(value for key, value in item.items()
                             if key != 'attributes')
        return True

    def _inventory_item_in_scope(self, item):
        if 'project_id' in item:
            return self.owns(item)
        if item.get('opaque') is True:
            return (set(item) <= OPAQUE_NODE_KEYS
                    and item.get('type') in visibility.INFRASTRUCTURE_TYPES
                    and isinstance(item.get('id'), str)
                    and item['id'].startswith(visibility.OPAQUE_PREFIX))
        if 'source_id' in item or 'target_id' in item:
            return set(item) <= BARE_LINK_KEYS
        # An object without a project is infrastructure, never shown
        # whole to a tenant.
        return not ('id' in item and 'type' in item)

    # --- answers -------------------------------------------------------
    def owns(self, item):
        """Whether a sample, meter or resource of an answer is in
        scope."""
        if not isinstance(item, dict):
            return False
        project = item.get('project_id')
        return isinstance(project, str) and project in self.projects

    def statistics_in_scope(self, item):
        """Statistics carry a project only when grouped by it."""
        if not isinstance(item, dict):
            return False
        groupby = item.get('groupby')
        if isinstance(groupby, dict) and 'project_id' in groupby:
            project = groupby['project_id']
            return isinstance(project, str) and project in self.projects
        return True
