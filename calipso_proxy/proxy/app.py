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

from calipso_agent import subscriptions
from calipso_agent.wsgi import errors, paste_app, responses, router, v2_routes
from calipso_proxy.proxy import backend as backend_mod
from calipso_proxy.proxy import scope as scope_mod
from calipso_proxy.proxy import tenant_auth, token_gate

LOG = logging.getLogger(__name__)



def proxy_routes(declarations=v2_routes.ROUTES):
    """The proxy's routes: one per declared API path, its methods the
    ones not refused through a proxy, each answering its proxy kind
    (router.Route: a GET also answers HEAD; a path without any such
    method matches and is answered 404)."""
    return tuple(
        router.Route(declared.template,
                     {method: endpoint.proxy
                      for method, endpoint in declared.endpoints.items()
                      if endpoint.proxy != v2_routes.REFUSED})
        for declared in declarations)


ROUTES = proxy_routes()


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
        route, params = router.match(ROUTES, segments)
        if route is None or not route.handlers:
            raise errors.NotFoundError(
                f'No such path: /{"/".join(segments)}')
        kind = route.handler(request.method)
        values = list(params.values())
        if not request.environ.get(token_gate.AUTHENTICATED):
            self.auth.check(request.headers, request.remote_addr)
        if kind == v2_routes.SUBSCRIBE:
            return self._subscription(request, route, values)
        if kind == v2_routes.ITEM:
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
        if kind == v2_routes.QUERY:
            answer = self.backend.request(
                'POST', forwarded_path,
                body=self.scope.scoped_complex_query(request.body),
                headers={**request.headers,
                         'Content-Type': 'application/json'})
        elif kind == v2_routes.INVENTORY:
            answer = self.backend.request(
                'GET', forwarded_path, self.scope.inventory_params(
                    request.GET), headers=request.headers)
        elif kind == v2_routes.PUBLIC:
            answer = self.backend.request('GET', forwarded_path, params,
                                          headers=request.headers)
        else:
            if kind != v2_routes.ITEM:
                params = self.scope.scoped_params(request.GET)
            answer = self.backend.request('GET', forwarded_path, params,
                                          headers=request.headers)
        return self._answer(request, kind, values, answer)

    def _subscription(self, request, route, values):
        """The channel's subscriptions: a body checked and scoped to the
        channel's projects (400, 403 before anything is forwarded),
        CORD's paths forwarded as /v2/subscribe's."""
        json_headers = {**request.headers,
                        'Content-Type': 'application/json'}
        if request.method in ('GET', 'HEAD'):
            answer = self.backend.request('GET', '/v2/subscribe',
                                          headers=request.headers)
        elif request.method == 'DELETE' or route.template == '/unsubscribe':
            if values:
                app_id = values[0]
            else:
                body = subscriptions.decode_json(request.body)
                if not isinstance(body, dict) or 'app_id' not in body:
                    raise errors.ClientError('The body must be '
                                             '{"app_id": ...}')
                app_id = body['app_id']
            subscriptions.check_app_id(app_id)
            answer = self.backend.request(
                'DELETE', _quoted(['v2', 'subscribe', app_id]),
                headers=request.headers)
        else:
            parsed = subscriptions.parse_body(
                subscriptions.decode_json(request.body),
                self.scope.projects)
            forwarded = {'app_id': parsed['app_id'],
                         'target': parsed['target'],
                         'sub_info': parsed['meters'],
                         'query': parsed['query']}
            answer = self.backend.request(
                'POST', '/v2/subscribe', body=orjson.dumps(forwarded),
                headers=json_headers)
        if not answer.content_type.startswith(errors.JSON_TYPE):
            raise BadBackendAnswer(f'The backend API answered '
                                   f'{answer.status}')
        return self._response(answer.status, answer.body)

    def _answer(self, request, kind, values, answer):
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
        if kind == v2_routes.ITEM:
            if not self.scope.owns(body):
                name = ('Sample' if request.path_info.startswith(
                    '/v2/samples') else 'Resource')
                raise errors.NotFoundError(f'{name} {values[0]} Not '
                                           'Found')
            changed = self._rewrite_links(request, body)
        elif kind in (v2_routes.LIST, v2_routes.QUERY,
                      v2_routes.STATISTICS):
            if not isinstance(body, list):
                raise BadBackendAnswer('The backend API answered an '
                                       'unexpected document')
            check = (self.scope.statistics_in_scope
                     if kind == v2_routes.STATISTICS else self.scope.owns)
            if not all(check(item) for item in body):
                LOG.error('Channel %s: the backend answered %s with data '
                          'of another project; refused', self.channel_id,
                          router.describe(request))
                raise BadBackendAnswer('The backend API answered data '
                                       'outside the channel')
            for item in body:
                changed = self._rewrite_links(request, item) or changed
        elif kind == v2_routes.INVENTORY:
            if not self.scope.inventory_in_scope(body):
                LOG.error('Channel %s: the backend answered %s with '
                          'inventory data of another project or of the '
                          'infrastructure; refused', self.channel_id,
                          router.describe(request))
                raise BadBackendAnswer('The backend API answered data '
                                       'outside the channel')
        body = orjson.dumps(body) if changed else answer.body
        return responses.conditional(
            request, self._response(answer.status, body))

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
