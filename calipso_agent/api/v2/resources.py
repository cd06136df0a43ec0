"""/v2/resources: what is known of the resources having samples."""

from calipso_agent.api import errors, rbac
from calipso_agent.api import query as api_query
from calipso_agent.api.v2 import models
from calipso_agent.storage import base as storage_base


def list_resources(ctx):
    params = ctx.params
    limit = api_query.parse_limit(params,
                                  ctx.conf.api.default_api_return_limit)
    meter_links = api_query.parse_int(params, 'meter_links', 1)
    sample_filter = ctx.sample_filter(
        api_query.SimpleQuery.from_params(params))
    return [models.resource(item, ctx.base_url, bool(meter_links))
            for item in ctx.storage.get_resources(sample_filter,
                                                  limit=limit)]


def get_resource(ctx, resource_id):
    sample_filter = storage_base.SampleFilter(
        resource_id=resource_id, project_id=rbac.id_scope(ctx.identity))
    found = ctx.storage.get_resources(sample_filter, limit=1)
    if not found:
        raise errors.NotFoundError(f'Resource {resource_id} Not Found')
    return models.resource(found[0], ctx.base_url)
