"""/v2/query/samples: samples by complex query."""

from calipso_agent.api import complex_query, rbac
from calipso_agent.api.v2 import models
from calipso_agent.wsgi import errors

BODY_FIELDS = ('filter', 'orderby', 'limit')


def query_samples(ctx):
    body = ctx.json_body()
    if not isinstance(body, dict):
        raise errors.ClientError('The body must be a JSON object with '
                                 'filter, orderby and limit')
    for field in body:
        if field not in BODY_FIELDS:
            raise errors.InvalidParameterError(field, 'unknown attribute (one '
                                               f'of {", ".join(BODY_FIELDS)})')
    expression = complex_query.parse_filter(body.get('filter'))
    expression = rbac.scope_expression(ctx.identity, expression)
    orderby = complex_query.parse_orderby(body.get('orderby'))
    limit = complex_query.parse_limit(body.get('limit'))
    return [models.sample(item) for item in ctx.storage.query_samples(
        expression, orderby, limit)]
