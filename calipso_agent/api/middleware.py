"""The API's own filter of its paste pipelines (etc/calipso/api-paste.ini):
``PublicDocument``, the OpenAPI document, before authentication. The
generic ones are in calipso_agent/wsgi/."""

import functools

import webob.dec

from calipso_agent.api import context, openapi
from calipso_agent.wsgi import middleware, paste_app, responses


class PublicDocument(middleware.Filter):
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
            return responses.json_response(200, openapi.document())
        if request.method in ('GET', 'HEAD') and path == '/':
            return responses.json_response(200, openapi.versions(
                context.public_base_url(self.conf, request)))
        return request.get_response(self.application)
