"""/v2/capabilities: what the API and its store can do (Ceilometer's
flattened ``{"api": {...}, "storage": {...}}``)."""

from calipso_agent.api.v2 import models

_SIMPLE = {'simple': True, 'metadata': True, 'complex': False}
# Every driver passes the same storage contract: the API's capabilities
# do not depend on the store.
API_CAPABILITIES = {
    'meters': {'query': dict(_SIMPLE)},
    'resources': {'query': dict(_SIMPLE)},
    'samples': {'query': dict(_SIMPLE, complex=True)},
    'statistics': {
        'groupby': True,
        'query': dict(_SIMPLE),
        'aggregation': {
            'standard': True,
            'selectable': {'max': True, 'min': True, 'sum': True,
                           'avg': True, 'count': True, 'stddev': True,
                           'cardinality': True, 'quartile': False},
        },
    },
    'events': {'query': {'simple': False}},
}


def get_capabilities(ctx):
    production_ready = not ctx.storage.url.startswith('sqlite')
    return {
        'api': models.flatten_capabilities(API_CAPABILITIES),
        'storage': models.flatten_capabilities(
            {'storage': {'production_ready': production_ready}}),
    }
