"""The WSGI application and its paste-deploy factories.

``setup_app(conf, storage)`` makes the application (tests give a ready
store); ``load_app(conf)`` composes the pipeline of ``[api]
paste_config`` chosen by ``[api] auth_strategy`` (``main`` for keystone,
``noauth`` for development), handing ``conf`` to the factories.
"""

import logging

from calipso_agent import service
from calipso_agent.api import context
from calipso_agent.api.v2 import ROUTES
from calipso_agent.wsgi import paste_app, responses, router, store_app

LOG = logging.getLogger(__name__)

PIPELINES = {'keystone': 'main', 'noauth': 'noauth'}
CONF_KEY = paste_app.CONF_KEY


class API(store_app.StoreApp):
    """The v2 API: routes a request to its controller and answers JSON;
    every failure is a JSON error (no input yields a 5xx other than 503
    for a failing store)."""

    def __init__(self, conf, storage_connection=None, routes=ROUTES):
        super().__init__(conf, storage_connection)
        self.routes = routes

    def _dispatch(self, request):
        route, handler, params = router.find(self.routes, request)
        ctx = context.Context(request, self.conf, self.storage)
        if not route.public:
            ctx.authenticate()
        result = handler(ctx, **params)
        if isinstance(result, context.Reply):
            return responses.json_response(result.status, result.body)
        return responses.conditional(request,
                                     responses.json_response(200, result))


def setup_app(conf=None, storage=None):
    """The API application; ``conf`` defaults to the calipso options of
    the default configuration files, ``storage`` to ``[database]
    connection``'s driver."""
    if conf is None:
        conf = service.prepare_service([], log_setup=False)
    return API(conf, storage)


def app_factory(global_conf, **local_conf):
    """paste-deploy ``app_factory`` of the API."""
    return setup_app(conf_of(global_conf))


conf_of = paste_app.conf_of


def paste_config_path(conf):
    """The paste-deploy file of ``[api] paste_config``."""
    return paste_app.config_path(conf, 'api')


def load_app(conf):
    """The WSGI pipeline of ``conf``: its paste file's pipeline for
    ``[api] auth_strategy``."""
    return paste_app.load(conf, 'api', PIPELINES[conf.api.auth_strategy])
