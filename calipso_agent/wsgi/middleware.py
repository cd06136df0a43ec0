"""The generic filters of the paste pipelines (etc/calipso/*-paste.ini):

* ``FaultWrapper``: every error answer of the layers it wraps
  (keystonemiddleware's 401 included) in the JSON error form, and a 500
  JSON for an exception.
* ``Healthcheck``: ``GET|HEAD /healthcheck`` answered before
  authentication (``store_app.StoreHealthcheck``: the same, 503 while the
  store does not answer).
"""

import json
import logging

import webob
import webob.dec

from calipso_agent.wsgi import errors, router

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
    """200 ``OK`` on /healthcheck while the process serves requests;
    ``headers`` are added to the answer (a proxy names itself)."""

    PATH = '/healthcheck'

    def __init__(self, application, headers=None):
        super().__init__(application)
        self.headers = dict(headers or {})

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
        response.headers.update(self.headers)
        return response
