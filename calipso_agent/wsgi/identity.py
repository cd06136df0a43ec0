"""The caller of a request, from the headers keystonemiddleware's
auth_token sets (``X-Identity-Status``, ``X-Roles``, ``X-Project-Id``,
``X-User-Id``) and the project scope a channel's proxy declares. Read by
the v2 API (its RBAC, api/rbac.py) and by the channel controller (its
admin check)."""

from calipso_agent import project_scope as project_scope_mod
from calipso_agent.wsgi import errors

ADMIN_ROLE = 'admin'
SCOPE_HEADER = project_scope_mod.HEADER


class Identity:
    """The caller: user, project, roles (lower case)."""

    def __init__(self, user_id, project_id, roles, multi_project_role,
                 project_scope=None, scope_signature=None,
                 scope_signing_key=None):
        self.user_id = user_id or None
        self.project_id = project_id or None
        self.roles = frozenset(roles)
        self.is_admin = ADMIN_ROLE in self.roles
        self.is_reader = (not self.is_admin and
                          multi_project_role.lower() in self.roles)
        self.multi_project = self.is_admin or self.is_reader
        self.project_scope = project_scope_mod.parse(project_scope)
        self.scope_signature = scope_signature
        self.scope_signing_key = scope_signing_key

    @classmethod
    def from_headers(cls, headers, multi_project_role=ADMIN_ROLE,
                     scope_signing_key=None):
        status = headers.get('X-Identity-Status')
        if status is not None and status.lower() != 'confirmed':
            raise errors.UnauthorizedError('Authentication required')
        roles = [role.strip().lower()
                 for role in (headers.get('X-Roles') or '').split(',')]
        return cls(headers.get('X-User-Id'),
                   headers.get('X-Project-Id') or headers.get(
                       'X-Tenant-Id'),
                   [role for role in roles if role], multi_project_role,
                   headers.get(SCOPE_HEADER),
                   headers.get(project_scope_mod.SIGNATURE_HEADER),
                   scope_signing_key)

    def own_project(self):
        """The token's project; 403 when the token has none."""
        if self.project_id is None:
            raise errors.ForbiddenError('RBAC Authorization Failed: a '
                                        'project-scoped token is required')
        return self.project_id

    def reader_scope(self):
        """The projects a reader's request declared; 403 without, or
        with a signature that does not match when the API has a key."""
        if not self.project_scope:
            raise errors.ForbiddenError(
                f'RBAC Authorization Failed: the reader role requires '
                f'{SCOPE_HEADER}')
        if self.scope_signing_key and not project_scope_mod.verify(
                self.scope_signing_key, self.project_scope,
                self.scope_signature):
            raise errors.ForbiddenError(
                f'RBAC Authorization Failed: {SCOPE_HEADER} without a '
                f'valid {project_scope_mod.SIGNATURE_HEADER}')
        return self.project_scope

    def __repr__(self):
        return (f'<Identity user={self.user_id} project={self.project_id} '
                f'roles={sorted(self.roles)}>')
