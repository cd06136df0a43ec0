"""The filters of the API's paste pipelines (etc/calipso/api-paste.ini).

* ``FaultWrapper``: every error answer of the layers it wraps
  (keystonemiddleware's 401 included) in the API's JSON error form, and a
  500 JSON for an exception.
* ``Healthcheck``: ``GET|HEAD /healthcheck`` answered before
  authentication; ``StoreHealthcheck``: the same, 503 while the store
  does not answer.
* ``PublicDocument``: the OpenAPI document, before authentication.
* ``NoAuth``: development only, no authentication (see rbac.py).
* ``auth_token_factory``: keystonemiddleware's auth_token reading
  ``[keystone_authtoken]`` from calipso's own configuration.
"""

import functools
import json
import logging
import threading

import webob
import webob.dec
from keystonemiddleware import auth_token

from calipso_agent import storage
from calipso_agent.api import app, context, errors, openapi, paste_app, router
from calipso_agent.storage import base as storage_base

LOG = logging.getLogger(__name__)

# Headers of an error answer worth keeping when it is rewritten.
KEPT_HEADERS = ('WWW-Authenticate', 'Allow', 'Retry-After',
                'X-OpenStack-Request-ID')


class Filter:
    """A WSGI filter; ``factory`` is its paste ``filter_factory``."""

    def __init__(self, application):
        self.application = application

    @classmethod
    def factory(cls, global_conf, **local_conf):
        return cls


def _message_of(response):
    """The error message of a non-API error answer."""
    reason = response.status.split(' ', 1)[-1]
    if response.content_type == errors.JSON_TYPE:
        try:
            body = json.loads(response.text)
            message = body['error']['message']
            if isinstance(message, str) and message:
                return message
        except (ValueError, KeyError, TypeError):
            pass
    return reason


def _is_api_error(response):
    if response.content_type != errors.JSON_TYPE:
        return False
    try:
        return 'error_message' in json.loads(response.text)
    except (ValueError, TypeError):
        return False


class FaultWrapper(Filter):
    @webob.dec.wsgify
    def __call__(self, request):
        if not router.path_is_utf8(request.environ):
            # Refused here: the layers below decode the path as UTF-8.
            return errors.error_response(400, 'The request path is not '
                                              'UTF-8')
        try:
            response = request.get_response(self.application)
        except Exception:
            LOG.exception('Internal error on %s', router.describe(request))
            return errors.error_response(500, 'Internal server error')
        if response.status_code < 400 or _is_api_error(response):
            return response
        rewritten = errors.error_response(response.status_code,
                                          _message_of(response))
        for name in KEPT_HEADERS:
            if name in response.headers:
                rewritten.headers[name] = response.headers[name]
        return rewritten


class Healthcheck(Filter):
    """200 ``OK`` on /healthcheck while the process serves requests."""

    PATH = '/healthcheck'

    @webob.dec.wsgify
    def __call__(self, request):
        if request.environ.get('PATH_INFO', '').rstrip('/') != self.PATH:
            return request.get_response(self.application)
        if request.method not in ('GET', 'HEAD'):
            return errors.response_of(errors.MethodNotAllowedError(
                request.method, ['GET', 'HEAD']))
        response = webob.Response(content_type='text/plain',
                                  charset='UTF-8')
        response.text = 'OK'
        return response


class StoreHealthcheck(Healthcheck):
    """/healthcheck of a service over the store (the API, the controller):
    200 ``OK`` while the store answers, 503 (JSON, with the reason) while
    it does not, so a load balancer takes the node out of rotation."""

    def __init__(self, application, conf):
        super().__init__(application)
        self.conf = conf
        self._store = None
        self._lock = threading.Lock()

    @classmethod
    def factory(cls, global_conf, **local_conf):
        conf = paste_app.required_conf(global_conf, 'StoreHealthcheck')
        return lambda application: cls(application, conf)

    def _store_problem(self):
        try:
            with self._lock:
                if self._store is None:
                    self._store = storage.get_connection(self.conf)
            self._store.ping()
        except storage_base.StorageError as exc:
            return ' '.join(str(exc).split())
        return None

    @webob.dec.wsgify
    def __call__(self, request):
        if request.environ.get('PATH_INFO', '').rstrip('/') != self.PATH:
            return request.get_response(self.application)
        problem = (request.method in ('GET', 'HEAD')
                   and self._store_problem())
        if problem:
            LOG.warning('Healthcheck: the store does not answer: %s',
                        problem)
            return errors.error_response(
                503, f'The store does not answer: {problem}')
        return super().__call__(request)


class PublicDocument(Filter):
    """The OpenAPI document at its path and the versions document at
    ``/``, without authentication (GET, and HEAD without the body)."""

    def __init__(self, application, conf=None):
        super().__init__(application)
        self.conf = conf

    @classmethod
    def factory(cls, global_conf, **local_conf):
        return functools.partial(cls, conf=paste_app.conf_of(global_conf))

    @webob.dec.wsgify
    def __call__(self, request):
        path = request.environ.get('PATH_INFO')
        if request.method in ('GET', 'HEAD') and path == openapi.PATH:
            return app.json_response(200, openapi.document())
        if request.method in ('GET', 'HEAD') and path == '/':
            return app.json_response(200, openapi.versions(
                context.public_base_url(self.conf, request)))
        return request.get_response(self.application)


class NoAuth(Filter):
    """Development only: trusts the identity headers as sent; a request
    without ``X-Roles`` is an admin's."""

    def __call__(self, environ, start_response):
        if not environ.get('HTTP_X_ROLES'):
            environ['HTTP_X_ROLES'] = 'admin'
        return self.application(environ, start_response)


def auth_token_factory(global_conf, **local_conf):
    """keystonemiddleware's auth_token filter on calipso's options.

    A ``[keystone_authtoken]`` without an auth plugin would answer every
    request 500 (the middleware cannot validate tokens): loading fails
    instead, so the daemon refuses to start and says why.
    """
    options = {k: v for k, v in global_conf.items() if k != app.CONF_KEY}
    options.update(local_conf)
    conf = app.conf_of(global_conf)
    if conf is not None:
        options['oslo_config_config'] = conf
    make_filter = auth_token.filter_factory(options)

    def filter_(application):
        middleware = make_filter(application)
        if conf is not None and not conf.keystone_authtoken.auth_type:
            raise ValueError(
                '[keystone_authtoken] has no auth_type: configure the '
                'Keystone service user that validates tokens (auth_type = '
                'password, auth_url, username, password, project_name, '
                'user_domain_name, project_domain_name, '
                'www_authenticate_uri), or use auth_strategy = noauth for '
                'development (doc/auth.md)')
        return middleware
    return filter_
