"""The tenant-facing proxy of one monitoring channel (WSGI, webob).

Same paths, parameters and bodies as the query API, read-only. Each
request is authenticated (TenantAuth) before anything is forwarded, its
query limited to the channel's projects (ProjectScope), sent with the
service user's token (BackendClient), and the answer checked once more
before it is passed on.
"""

import logging
import urllib.parse

import orjson
import webob
import webob.dec

from calipso_agent.wsgi import errors, paste_app, router
from calipso_proxy.proxy import backend as backend_mod
from calipso_proxy.proxy import scope as scope_mod
from calipso_proxy.proxy import tenant_auth, token_gate

LOG = logging.getLogger(__name__)



class Route:
    """A path of the API, its methods and how its answer is checked:
    ``kind`` is 'list' (items with a project_id), 'item' (one such
    object: 404 outside the scope), 'statistics', 'query' (a complex
    query) or 'public' (no project data). ``{}`` is one path segment,
    ``{id}`` the rest of the path (ids may hold slashes). A route read
    with GET also answers HEAD (the same answer without its body)."""

    def __init__(self, template, kind, methods=('GET', 'HEAD')):
        self.segments = template.strip('/').split('/')
        self.kind = kind
        self.methods = methods

    def match(self, segments):
        """The values of the template's variable parts, or None."""
        values = []
        for index, pattern in enumerate(self.segments):
            if pattern == '{id}':
                rest = segments[index:]
                if not rest or not all(rest):
                    return None
                values.append('/'.join(rest))
                return values
            if index >= len(segments) or not segments[index]:
                return None
            if pattern == '{}':
                values.append(segments[index])
            elif segments[index] != pattern:
                return None
        return values if len(segments) == len(self.segments) else None


ROUTES = (
    Route('/v2/meters', 'list'),
    Route('/v2/meters/{}', 'list'),
    Route('/v2/meters/{}/statistics', 'statistics'),
    Route('/v2/samples', 'list'),
    Route('/v2/samples/{id}', 'item'),
    Route('/v2/resources', 'list'),
    Route('/v2/resources/{id}', 'item'),
    Route('/v2/query/samples', 'query', methods=('POST',)),
    Route('/v2/capabilities', 'public'),
)


# Path segments an HTTP client or server may remove or merge: a path
# holding one is refused, so what is forwarded is what was checked.
DOT_SEGMENTS = frozenset(('', '.', '..'))


class BadBackendAnswer(errors.APIError):
    code = 502


def _check_path(segments):
    """400 for a path that normalization would change: an empty, ``.``
    or ``..`` segment, encoded or not, also inside an id holding encoded
    slashes (``a%2F..%2Fb``)."""
    for segment in segments:
        if any(part in DOT_SEGMENTS for part in segment.split('/')):
            raise errors.ClientError(
                'The request path holds an empty, "." or ".." segment')


def _find(segments):
    for route in ROUTES:
        values = route.match(segments)
        if values is not None:
            return route, values
    return None, ()


def _quoted(segments):
    """The path of ``segments`` as sent to the backend: each one
    percent-encoded, slashes included (an id stays one segment; dot
    segments never get here, see _check_path)."""
    return '/' + '/'.join(urllib.parse.quote(s, safe='') for s in segments)


def public_base(conf):
    """The URL resource links are rewritten to: ``[proxy] public_url``,
    else the proxy's own address; never the request's Host header."""
    if conf.proxy.public_url:
        return conf.proxy.public_url.rstrip('/')
    host = conf.proxy.host
    if ':' in host and not host.startswith('['):
        host = f'[{host}]'
    return f'http://{host}:{conf.proxy.port}'


class ChannelProxy:
    """The WSGI application of one channel's proxy."""

    def __init__(self, conf, backend=None, auth=None):
        self.conf = conf
        self.channel_id = conf.proxy.channel_id
        self.scope = scope_mod.ProjectScope(conf.proxy.authorized_projects)
        self.backend = backend or backend_mod.BackendClient(conf)
        self.auth = auth or tenant_auth.TenantAuth.from_conf(
            conf, self.scope, self.backend.session)
        self.public_base = public_base(conf)

    @webob.dec.wsgify
    def __call__(self, request):
        try:
            return self._handle(request)
        except errors.APIError as exc:
            return errors.response_of(exc)
        except backend_mod.BackendError as exc:
            LOG.warning('Channel %s: backend failed on %s: %s',
                        self.channel_id, router.describe(request), exc)
            return errors.error_response(502, 'The backend API is '
                                         'unavailable, retry later')

    def _handle(self, request):
        segments = router.path_segments(request)
        _check_path(segments)
        route, values = _find(segments)
        if route is None:
            raise errors.NotFoundError(
                f'No such path: /{"/".join(segments)}')
        if request.method not in route.methods:
            raise errors.MethodNotAllowedError(
                request.method, route.methods)
        if not request.environ.get(token_gate.AUTHENTICATED):
            self.auth.check(request.headers, request.remote_addr)
        if route.kind == 'item':
            if request.query_string:
                raise errors.ClientError('A sample or resource read by id '
                                         'takes no query parameters')
            forwarded_path = _quoted(segments[:2] + values)
        else:
            forwarded_path = _quoted(segments)
        try:
            params = list(request.GET.items())
        except UnicodeDecodeError:
            raise errors.ClientError('The query string is not UTF-8')
        if route.kind == 'query':
            answer = self.backend.request(
                'POST', forwarded_path,
                body=self.scope.scoped_complex_query(request.body),
                headers={**request.headers,
                         'Content-Type': 'application/json'})
        elif route.kind == 'public':
            answer = self.backend.request('GET', forwarded_path, params,
                                          headers=request.headers)
        else:
            if route.kind != 'item':
                params = self.scope.scoped_params(request.GET)
            answer = self.backend.request('GET', forwarded_path, params,
                                          headers=request.headers)
        return self._answer(request, route, values, answer)

    def _answer(self, request, route, values, answer):
        if answer.status >= 400:
            if not answer.content_type.startswith(errors.JSON_TYPE):
                raise BadBackendAnswer(f'The backend API answered '
                                       f'{answer.status}')
            return self._response(answer.status, answer.body)
        try:
            body = orjson.loads(answer.body)
        except orjson.JSONDecodeError:
            raise BadBackendAnswer('The backend API answered something '
                                   'that is not JSON')
        changed = False
        if route.kind == 'item':
            if not self.scope.owns(body):
                name = ('Sample' if request.path_info.startswith(
                    '/v2/samples') else 'Resource')
                raise errors.NotFoundError(f'{name} {values[0]} Not '
                                           'Found')
            changed = self._rewrite_links(request, body)
        elif route.kind in ('list', 'query', 'statistics'):
            if not isinstance(body, list):
                raise BadBackendAnswer('The backend API answered an '
                                       'unexpected document')
            check = (self.scope.statistics_in_scope
                     if route.kind == 'statistics' else self.scope.owns)
            if not all(check(item) for item in body):
                LOG.error('Channel %s: the backend answered %s with data '
                          'of another project; refused', self.channel_id,
                          router.describe(request))
                raise BadBackendAnswer('The backend API answered data '
                                       'outside the channel')
            for item in body:
                changed = self._rewrite_links(request, item) or changed
        if changed:
            return self._response(answer.status, orjson.dumps(body))
        return self._response(answer.status, answer.body)

    def _rewrite_links(self, request, item):
        """Resource links point at the proxy, not at the backend."""
        links = item.get('links') if isinstance(item, dict) else None
        if not isinstance(links, list):
            return False
        base = self.backend.base_url
        own = self.public_base
        for link in links:
            href = link.get('href') if isinstance(link, dict) else None
            if isinstance(href, str) and href.startswith(base):
                link['href'] = own + href[len(base):]
        return True

    @staticmethod
    def _response(status, body):
        response = webob.Response(status=status,
                                  content_type=errors.JSON_TYPE,
                                  charset='UTF-8')
        response.body = body
        return response


def app_factory(global_conf, **local_conf):
    """paste-deploy ``app_factory`` of the proxy."""
    return ChannelProxy(paste_app.required_conf(global_conf, 'the proxy'))


def load_app(conf):
    """The proxy's paste pipeline (``[proxy] paste_config``)."""
    return paste_app.load(conf, 'proxy')
