"""What a controller gets for one request: the request, the options,
the store, the caller's identity."""

from calipso_agent.api import complex_query, rbac
from calipso_agent.api import query as api_query
from calipso_agent.wsgi import errors, identity, query_string


def public_base_url(conf, request):
    """The start of the API's links: ``[api] public_url``, else the
    scheme, host and script name of ``request`` (also without ``conf``)."""
    public_url = conf.api.public_url if conf is not None else None
    if public_url:
        return public_url.rstrip('/')
    return request.application_url


class Reply:
    """A controller's answer with a status other than 200."""

    def __init__(self, status, body):
        self.status = status
        self.body = body


class Context:
    def __init__(self, request, conf, storage_getter):
        self.request = request
        self.conf = conf
        self._storage_getter = storage_getter
        self._identity = None

    @property
    def storage(self):
        """The storage connection (made on first use)."""
        return self._storage_getter()

    @property
    def identity(self):
        if self._identity is None:
            self._identity = identity.Identity.from_headers(
                self.request.headers, self.conf.api.multi_project_role,
                self.conf.api.scope_signing_key)
        return self._identity

    def authenticate(self):
        """The caller's identity; 401 when the token was refused."""
        return self.identity

    @property
    def params(self):
        """The query parameters (a MultiDict); 400 when not UTF-8."""
        try:
            return self.request.GET
        except UnicodeDecodeError:
            raise errors.ClientError('The query string is not UTF-8')

    @property
    def base_url(self):
        """Where links point: ``[api] public_url``, else the scheme, host
        and script name of the request."""
        return public_base_url(self.conf, self.request)

    def simple_query(self):
        """The simple query of the request's q.* parameters. A caller
        limited to its own project is refused (403) any term on
        project_id naming another, whatever its operator: checked before
        the terms are, so that every such term is refused alike."""
        quadruples = query_string.query_quadruples(self.params)
        if not self.identity.multi_project:
            rbac.check_named_projects(self.identity, [
                (op, value) for field, op, value, _ in quadruples
                if api_query.FIELD_ALIASES.get(field, field) ==
                'project_id'])
        return api_query.SimpleQuery(
            [api_query.parse_term(*quadruple) for quadruple in quadruples])

    def json_body(self):
        """The decoded JSON body; 400 when it is missing or not JSON."""
        body = self.request.body
        if not body.strip():
            raise errors.ClientError('The request body is missing (JSON '
                                     'expected)')
        try:
            return complex_query.load_json(body.decode('utf-8'))
        except (UnicodeDecodeError, ValueError) as exc:
            raise errors.ClientError(f'The request body is not valid JSON: '
                                     f'{exc}')

    def sample_filter(self, simple_query, meter=None):
        """The SampleFilter of a simple query, limited to the projects
        the caller may see (403 when it names another)."""
        scope = rbac.query_scope(self.identity,
                                 simple_query.project_terms())
        return simple_query.sample_filter(meter=meter, project_scope=scope)
