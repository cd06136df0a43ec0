"""TokenGate: the proxy's authentication, before anything else runs.

The first filter of the proxy's pipeline, plain WSGI: a request without
a valid token (DESIGN.md section 7; TenantAuth's rules) is answered its
JSON 401, 429 or 503 here, without the request objects, request id and
error handling the rest of the pipeline builds for every request. A
flood of unknown tokens then costs the proxy as little CPU as it can,
which is what its tenants' latency depends on. ``/healthcheck`` passes
untouched; an authenticated request is marked in the WSGI environ
(``AUTHENTICATED``), which ChannelProxy trusts (a client cannot set an
environ key that is not an HTTP_ header).
"""

import http

from calipso_agent.wsgi import errors, paste_app
from calipso_proxy.proxy import backend as backend_mod
from calipso_proxy.proxy import scope as scope_mod
from calipso_proxy.proxy import tenant_auth

AUTHENTICATED = 'calipso_proxy.authenticated'
HEALTHCHECK = '/healthcheck'
TOKEN_KEY = 'HTTP_' + tenant_auth.TOKEN_HEADER.upper().replace('-', '_')


def _status(code):
    return f'{code} {http.HTTPStatus(code).phrase}'


class TokenGate:
    def __init__(self, application, auth):
        self.application = application
        self.auth = auth

    def __call__(self, environ, start_response):
        if environ.get('PATH_INFO', '').rstrip('/') != HEALTHCHECK:
            try:
                self.auth.check({tenant_auth.TOKEN_HEADER:
                                 environ.get(TOKEN_KEY)},
                                environ.get('REMOTE_ADDR'))
            except errors.APIError as exc:
                body = errors.error_body(exc.message,
                                         exc.faultcode).encode()
                start_response(_status(exc.code), [
                    ('Content-Type', f'{errors.JSON_TYPE}; charset=UTF-8'),
                    ('Content-Length', str(len(body))),
                    *exc.headers.items()])
                return [] if environ.get('REQUEST_METHOD') == 'HEAD' else [
                    body]
            environ[AUTHENTICATED] = True
        return self.application(environ, start_response)


def filter_factory(global_conf, **local_conf):
    """paste-deploy ``filter_factory`` of the gate."""
    conf = paste_app.required_conf(global_conf, 'the proxy\'s token gate')
    auth = tenant_auth.TenantAuth.from_conf(
        conf, scope_mod.ProjectScope(conf.proxy.authorized_projects),
        backend_mod.load_session(conf))

    def make(application):
        return TokenGate(application, auth)
    return make
