"""The topology page's files (calipso_agent/ui/, doc/ui.md), served
before authentication by the API and by every channel's proxy.

They hold no project data: the page asks the v2 API, with relative
paths and the user's token, for everything it shows, so the same files
work on the API and through a proxy (limited there to the channel's
projects). ``/ui`` is redirected to ``/ui/``, which is ``index.html``;
a name outside the directory, hidden or of an unknown kind is 404.

``StaticFiles`` is the paste filter that answers them: in api-paste.ini
before authtoken, in proxy-paste.ini before token_gate. It is a path of
the pipelines, like /healthcheck, not a route of wsgi/v2_routes.py: that
table is the JSON API, each route with what a proxy does with its data.
"""

import os
import re

import webob
import webob.dec

from calipso_agent.wsgi import errors, middleware, responses

ROOT = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'ui')
PREFIX = '/ui'
INDEX = 'index.html'

TYPES = {'.html': 'text/html', '.js': 'text/javascript',
         '.css': 'text/css', '.svg': 'image/svg+xml', '.png': 'image/png'}

# A name is plain path segments of safe characters: no "..", no hidden
# file, no backslash; what is served is a file under ROOT.
NAME = re.compile(r'^(?:[A-Za-z0-9_-][A-Za-z0-9_.-]*/)*'
                  r'[A-Za-z0-9_-][A-Za-z0-9_.-]*$')

# The page runs only its own scripts and talks only to its own origin:
# no inline script, no other host (a leaked token goes nowhere). Inline
# styles are allowed: cytoscape.js sets its container's style.
SECURITY_HEADERS = (
    ('Content-Security-Policy',
     "default-src 'self'; script-src 'self'; "
     "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
     "connect-src 'self'; object-src 'none'; "
     "base-uri 'none'; frame-ancestors 'none'; form-action 'none'"),
    ('X-Content-Type-Options', 'nosniff'),
    ('Referrer-Policy', 'no-referrer'),
    ('Cache-Control', 'no-cache'),
)


def path_name(path):
    """The file name a request path asks for under /ui/ ('' for the
    directory itself), or None when the path is not under /ui."""
    if path == PREFIX:
        return ''
    if path.startswith(PREFIX + '/'):
        return path[len(PREFIX) + 1:]
    return None


def _file_of(name):
    """The absolute path of file ``name`` under ROOT, or None."""
    name = name or INDEX
    if not NAME.match(name):
        return None
    if os.path.splitext(name)[1] not in TYPES:
        return None
    path = os.path.realpath(os.path.join(ROOT, name))
    if not path.startswith(os.path.realpath(ROOT) + os.sep):
        return None
    return path if os.path.isfile(path) else None


def answer(request, name):
    """The response to GET/HEAD of ``/ui/<name>``: the file, 304 when
    the client's ETag matches, 404 (JSON) when there is no such file;
    ``/ui`` is redirected to ``/ui/`` (the page's relative paths)."""
    if request.path_info == PREFIX:
        response = webob.Response(status=301)
        response.location = PREFIX + '/'
        return response
    path = _file_of(name)
    if path is None:
        raise errors.NotFoundError(f'No file {name!r} in the page')
    with open(path, 'rb') as handle:
        body = handle.read()
    response = webob.Response(
        body=body, content_type=TYPES[os.path.splitext(path)[1]],
        charset='UTF-8' if path.endswith(('.html', '.js', '.css'))
        else None)
    for header, value in SECURITY_HEADERS:
        response.headers[header] = value
    return responses.conditional(request, response)


class StaticFiles(middleware.Filter):
    """GET and HEAD of /ui and /ui/... answered here, before
    authentication; any other method there is 405."""

    @webob.dec.wsgify
    def __call__(self, request):
        name = path_name(request.path_info)
        if name is None:
            return request.get_response(self.application)
        if request.method not in ('GET', 'HEAD'):
            return errors.response_of(errors.MethodNotAllowedError(
                request.method, ['GET', 'HEAD']))
        try:
            return answer(request, name)
        except errors.APIError as exc:
            return errors.response_of(exc)

