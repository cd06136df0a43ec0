"""/v2/samples: samples, by query or by id."""

from calipso_agent.api import query as api_query
from calipso_agent.api import rbac
from calipso_agent.api.v2 import models
from calipso_agent.storage import base as storage_base
from calipso_agent.wsgi import errors


def list_samples(ctx):
    params = ctx.params
    limit = api_query.parse_limit(params,
                                  ctx.conf.api.default_api_return_limit)
    sample_filter = ctx.sample_filter(ctx.simple_query())
    return [models.sample(item) for item in ctx.storage.get_samples(
        sample_filter, limit=limit)]


def get_sample(ctx, sample_id):
    sample_filter = storage_base.SampleFilter(
        project_id=rbac.id_scope(ctx.identity),
        conditions=[('id', '=', sample_id)])
    found = ctx.storage.get_samples(sample_filter, limit=1)
    if not found:
        raise errors.NotFoundError(f'Sample {sample_id} Not Found')
    return models.sample(found[0])
