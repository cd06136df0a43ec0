"""/v2/resources: what is known of the resources having samples."""

from calipso_agent.api import query as api_query
from calipso_agent.api import rbac
from calipso_agent.api.v2 import models
from calipso_agent.storage import base as storage_base
from calipso_agent.wsgi import errors


def list_resources(ctx):
    params = ctx.params
    limit = api_query.parse_limit(params,
                                  ctx.conf.api.default_api_return_limit)
    meter_links = api_query.parse_int(params, 'meter_links', 1)
    sample_filter = ctx.sample_filter(ctx.simple_query())
    return [models.resource(item, ctx.base_url, bool(meter_links))
            for item in ctx.storage.get_resources(sample_filter,
                                                  limit=limit)]


def get_resource(ctx, resource_id):
    """The resource as the list shows it for ``resource_id`` = this id:
    both answer from the same samples, so the status tells nothing the
    list does not. Terms on project_id (and only those) may limit it as
    they limit the list; without them a caller limited to its project
    sees that project's samples, a multi-project caller every project's.
    """
    simple_query = ctx.simple_query()
    for term in simple_query.terms:
        if term.field != 'project_id':
            raise errors.InvalidParameterError(
                'q.field', f'{term.field}: a resource read by id takes '
                           'terms on project_id only')
    if simple_query.terms:
        simple_query.terms.append(
            api_query.Term('resource_id', 'eq', resource_id))
        sample_filter = ctx.sample_filter(simple_query)
    else:
        sample_filter = storage_base.SampleFilter(
            resource_id=resource_id, project_id=rbac.id_scope(ctx.identity))
    found = ctx.storage.get_resources(sample_filter, limit=1)
    if not found:
        raise errors.NotFoundError(f'Resource {resource_id} Not Found')
    return models.resource(found[0], ctx.base_url)
