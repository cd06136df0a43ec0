"""Path templates of the API and their matching.

A template is ``/v2/meters/{meter_name}``; ``{name:path}`` takes the rest
of the path, slashes included (sample and resource ids may hold them).
Matching works on the raw request target when the server gives it
(gunicorn's ``RAW_URI``), so an encoded ``%2F`` stays inside its segment.
"""

import urllib.parse

from calipso_agent.wsgi import errors


class Route:
    """A path template and its handler per HTTP method."""

    def __init__(self, template, handlers, public=False):
        self.template = template
        self.handlers = dict(handlers)
        self.public = public
        self.segments = template.strip('/').split('/')

    def allowed(self):
        """The methods the route takes: HEAD wherever GET."""
        methods = set(self.handlers)
        if 'GET' in methods:
            methods.add('HEAD')
        return sorted(methods)

    def handler(self, method):
        """The handler of ``method`` (HEAD: GET's; the server leaves the
        body out); 405 when the route does not take it."""
        handler = self.handlers.get('GET' if method == 'HEAD' else method)
        if handler is None:
            raise errors.MethodNotAllowedError(method, self.allowed())
        return handler

    @property
    def openapi_path(self):
        """The template as OpenAPI writes it (``{name}``)."""
        return self.template.replace(':path}', '}')

    def match(self, segments):
        """The path parameters when ``segments`` match, else None."""
        params = {}
        for index, pattern in enumerate(self.segments):
            if pattern.startswith('{') and pattern.endswith(':path}'):
                rest = segments[index:]
                if not rest or not all(rest):
                    return None
                params[pattern[1:-len(':path}')]] = '/'.join(rest)
                return params
            if index >= len(segments):
                return None
            segment = segments[index]
            if pattern.startswith('{'):
                if not segment:
                    return None
                params[pattern[1:-1]] = segment
            elif segment != pattern:
                return None
        return params if len(segments) == len(self.segments) else None


def describe(request):
    """``METHOD /path?query`` of a request for logs, as received (never
    failing on bytes that are not UTF-8)."""
    environ = request.environ
    target = environ.get('SCRIPT_NAME', '') + environ.get('PATH_INFO', '')
    if environ.get('QUERY_STRING'):
        target += '?' + environ['QUERY_STRING']
    return f'{environ.get("REQUEST_METHOD")} {target!a}'


def path_is_utf8(environ):
    """Whether the request path decodes (WSGI gives it as latin-1)."""
    try:
        environ.get('PATH_INFO', '').encode('latin-1').decode('utf-8')
        return True
    except (UnicodeEncodeError, UnicodeDecodeError):
        return False


def path_segments(request):
    """The decoded segments of the request path (400 when it is not
    UTF-8); a trailing slash is ignored."""
    environ = request.environ
    raw = environ.get('RAW_URI') or environ.get('REQUEST_URI')
    try:
        if raw and raw.startswith('/') and not environ.get('SCRIPT_NAME'):
            path = raw.split('?', 1)[0].split('#', 1)[0]
            segments = [urllib.parse.unquote(segment, errors='strict')
                        for segment in path.split('/')[1:]]
        else:
            segments = request.path_info.split('/')[1:]
    except UnicodeDecodeError:
        raise errors.ClientError('The request path is not UTF-8')
    if len(segments) > 1 and segments[-1] == '':
        segments.pop()
    return segments


def match(routes, segments):
    """(route, path parameters) of the first route matching the path
    ``segments``, or (None, None)."""
    for route in routes:
        params = route.match(segments)
        if params is not None:
            return route, params
    return None, None


def find(routes, request):
    """(route, handler, path parameters) of a request; 404 when no route
    matches its path, 405 when it does not take the method."""
    segments = path_segments(request)
    route, params = match(routes, segments)
    if route is None:
        raise errors.NotFoundError('No resource at /' + '/'.join(segments))
    return route, route.handler(request.method), params
