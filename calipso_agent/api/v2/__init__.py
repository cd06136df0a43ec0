"""The v2 API (Ceilometer's): its routes, the declarations of
calipso_agent/wsgi/v2_routes.py bound to their handlers."""

import importlib
import sys

from calipso_agent.api import openapi
from calipso_agent.wsgi import v2_routes
from calipso_agent.wsgi.router import Route


def openapi_document(ctx):
    return openapi.document()


def versions_document(ctx):
    return openapi.versions(ctx.base_url)


def handler_of(name):
    """The function a declaration names: ``module.function`` of this
    package, or a function of the package itself."""
    module_name, _, function = name.rpartition('.')
    module = (importlib.import_module(f'{__name__}.{module_name}')
              if module_name else sys.modules[__name__])
    return getattr(module, function)


ROUTES = [
    Route(declared.template,
          {method: handler_of(endpoint.handler)
           for method, endpoint in declared.endpoints.items()},
          public=declared.public)
    for declared in v2_routes.ROUTES
]
