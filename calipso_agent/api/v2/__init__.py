"""The v2 API (Ceilometer's): its routes."""

from calipso_agent.api import openapi
from calipso_agent.api.v2 import (
    capabilities,
    meters,
    query,
    resources,
    samples,
)
from calipso_agent.wsgi.router import Route


def openapi_document(ctx):
    return openapi.document()


def versions_document(ctx):
    return openapi.versions(ctx.base_url)


ROUTES = [
    Route('/v2/meters', {'GET': meters.list_meters}),
    Route('/v2/meters/{meter_name}/statistics',
          {'GET': meters.statistics}),
    Route('/v2/meters/{meter_name}', {'GET': meters.list_samples,
                                      'POST': meters.post_samples}),
    Route('/v2/samples', {'GET': samples.list_samples}),
    Route('/v2/samples/{sample_id:path}', {'GET': samples.get_sample}),
    Route('/v2/resources', {'GET': resources.list_resources}),
    Route('/v2/resources/{resource_id:path}',
          {'GET': resources.get_resource}),
    Route('/v2/query/samples', {'POST': query.query_samples}),
    Route('/v2/capabilities', {'GET': capabilities.get_capabilities}),
    Route(openapi.PATH, {'GET': openapi_document}, public=True),
    Route('/', {'GET': versions_document}, public=True),
]
