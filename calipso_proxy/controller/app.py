"""The channel controller's REST API, admin only, compatible with CORD's
(XOS) monitoring channel resource. Trailing slashes are optional.

    GET    /api/tenant/monitoring/monitoringchannel/        the channels
    POST   /api/tenant/monitoring/monitoringchannel/        create: 201,
           with the channel's token (given this once)
    GET    /api/tenant/monitoring/monitoringchannel/{id}/   one channel
    PUT    /api/tenant/monitoring/monitoringchannel/{id}/   new name and/or
    PATCH                                                   tenant list
    DELETE /api/tenant/monitoring/monitoringchannel/{id}/   stop its proxy
           and forget it: 204

Bodies are JSON objects (or forms) with ``name`` and the project IDs as
``tenant_list`` (a list) or ``tenant_list_str`` (comma-separated).
``load_app(conf)`` composes the pipeline of ``[controller] paste_config``
for ``[controller] auth_strategy``: ``main`` (keystone) or ``noauth``.
"""

import json
import logging

import webob
import webob.dec

from calipso_agent.wsgi import (
    errors,
    paste_app,
    responses,
    router,
    store_app,
)
from calipso_agent.wsgi import identity as identity_mod
from calipso_proxy import launcher
from calipso_proxy.controller import channels

LOG = logging.getLogger(__name__)

COLLECTION = '/api/tenant/monitoring/monitoringchannel'
PIPELINES = {'keystone': 'main', 'noauth': 'noauth'}
FORM_TYPES = ('application/x-www-form-urlencoded', 'multipart/form-data')


def _body(request):
    """The request body as a dict: a JSON object, or a form.

    ``curl -d '{...}'`` labels a JSON body as a form: a body that starts
    as a JSON object is read as one whatever its Content-Type says.
    """
    if (request.content_type in FORM_TYPES
            and not request.body.lstrip().startswith(b'{')):
        return dict(request.POST.items())
    if not request.body.strip():
        raise errors.ClientError('The request body is missing (JSON '
                                 'expected)')
    try:
        body = json.loads(request.body.decode('utf-8'))
    except (UnicodeDecodeError, ValueError) as exc:
        raise errors.ClientError(f'The request body is not valid JSON: '
                                 f'{exc}')
    if not isinstance(body, dict):
        raise errors.ClientError('The request body must be a JSON object')
    return body


class ControllerApp(store_app.StoreApp):
    """The WSGI application; ``service`` (a ChannelService) defaults to
    one over ``[database] connection`` and ``[controller] launcher``."""

    def __init__(self, conf, service=None):
        super().__init__(conf)
        self.service = service or channels.ChannelService(
            conf, launcher.get_launcher(conf), self.storage)
        self.routes = (
            router.Route(COLLECTION, {'GET': self._list,
                                      'POST': self._create}),
            router.Route(COLLECTION + '/{channel_id}', {
                'GET': self._get, 'PUT': self._update,
                'PATCH': self._update, 'DELETE': self._delete}),
        )

    def _authorize(self, request):
        """The caller's identity; 401 without a valid token, 403 without
        the admin role."""
        status = request.headers.get('X-Identity-Status')
        if status is None and self.conf.controller.auth_strategy != (
                'noauth'):
            raise errors.UnauthorizedError('Authentication required')
        identity = identity_mod.Identity.from_headers(request.headers)
        if self.conf.controller.admin_role.lower() not in identity.roles:
            raise errors.ForbiddenError(
                f'The {self.conf.controller.admin_role} role is required')
        return identity

    def _dispatch(self, request):
        segments = router.path_segments(request)
        while len(segments) > 1 and segments[-1] == '':
            segments.pop()
        route, params = router.match(self.routes, segments)
        if route is None:
            raise errors.NotFoundError(f'No such path: {request.path_info}')
        identity = self._authorize(request)
        return route.handler(request.method)(request, identity, **params)

    def _list(self, request, identity):
        return responses.json_response(200, [
            channels.to_resource(c) for c in self.service.list()])

    def _get(self, request, identity, channel_id):
        return responses.json_response(200, channels.to_resource(
            self.service.get(channel_id)))

    def _update(self, request, identity, channel_id):
        changes = channels.parse_changes(_body(request))
        return responses.json_response(200, channels.to_resource(
            self.service.update(channel_id, changes)))

    def _delete(self, request, identity, channel_id):
        self.service.delete(channel_id)
        return webob.Response(status=204, content_type=None)

    def _create(self, request, identity):
        name, tenants = channels.parse_creation(_body(request))
        channel, token = self.service.create(name, tenants,
                                             identity.user_id)
        response = responses.json_response(
            201, channels.to_resource(channel, token=token))
        response.headers['Location'] = (
            f'{request.application_url}{COLLECTION}/{channel["id"]}/')
        return response


def app_factory(global_conf, **local_conf):
    """paste-deploy ``app_factory`` of the controller API."""
    return ControllerApp(paste_app.required_conf(global_conf,
                                                 'the controller API'))


def load_app(conf):
    """The pipeline of ``[controller] auth_strategy`` of
    ``[controller] paste_config``."""
    return paste_app.load(conf, 'controller',
                          PIPELINES[conf.controller.auth_strategy])
