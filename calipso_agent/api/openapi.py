"""The OpenAPI 3 document of the API, served at ``/v2/openapi.json``.

The unit tests validate every answer they get against it and check that
it documents exactly the routes of ``api/v2``: keep it true.
"""

import copy
import functools

from calipso_agent.api import query as api_query
from calipso_agent.wsgi import v2_routes

PATH = v2_routes.OPENAPI_PATH
VERSION = '2.0'

SAMPLE_TYPES = ['gauge', 'delta', 'cumulative']
SIMPLE_OPERATORS = ['lt', 'le', 'eq', 'ne', 'ge', 'gt', 'in']
VALUE_TYPES = ['', 'integer', 'float', 'string', 'boolean', 'datetime']
AGGREGATES = ['avg', 'sum', 'min', 'max', 'count', 'stddev', 'cardinality']
CARDINALITY_FIELDS = ['resource_id', 'user_id', 'project_id', 'source']

DATETIME_PATTERN = r'^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?$'


def _ref(kind, name):
    return {'$ref': f'#/components/{kind}/{name}'}


def _string(nullable=False, **extra):
    schema = {'type': 'string', **extra}
    if nullable:
        schema['nullable'] = True
    return schema


def _datetime(nullable=False, description=None):
    schema = _string(nullable, pattern=DATETIME_PATTERN)
    schema['description'] = description or (
        'UTC, ISO 8601 without a timezone (microseconds when not zero)')
    return schema


def _number(nullable=False, description=None):
    schema = {'type': 'number'}
    if nullable:
        schema['nullable'] = True
    if description:
        schema['description'] = description
    return schema


def _object(properties, required=None, description=None):
    schema = {'type': 'object', 'properties': properties,
              'required': list(required or properties),
              'additionalProperties': False}
    if description:
        schema['description'] = description
    return schema


def _array(items, description=None):
    schema = {'type': 'array', 'items': items}
    if description:
        schema['description'] = description
    return schema


FLAT_METADATA = {
    'type': 'object', 'additionalProperties': {'type': 'string'},
    'description': 'Resource metadata flattened as Ceilometer did: one '
                   'string per leaf, keys joined with "." (first level) '
                   'and ":" (deeper levels).'}

def _polling_override():
    return _object({
        'interval': _number(description='Seconds between cycles.'),
        'meters': _array(_string(), description='Meter names and '
                         'patterns (*, cpu*, !name).'),
        'enabled': {'type': 'boolean'},
        'updated_at': _string(description='When it was last changed '
                                          '(ISO 8601, UTC).'),
    }, required=['updated_at'], description='The fields of a source set '
       'through the API, over the file\'s.')


SCHEMAS = {
    'Error': _object({
        'error_message': _object({
            'faultstring': _string(description='What went wrong.'),
            'faultcode': {'type': 'string', 'enum': ['Client', 'Server']},
        }),
    }),
    'Meter': _object({
        'name': _string(description='The meter name.'),
        'type': {'type': 'string', 'enum': SAMPLE_TYPES},
        'unit': _string(nullable=True),
        'resource_id': _string(),
        'project_id': _string(nullable=True),
        'user_id': _string(nullable=True),
        'source': _string(nullable=True),
        'meter_id': _string(description='base64 of "<resource_id>+<name>".'),
    }),
    'OldSample': _object({
        'counter_name': _string(),
        'counter_type': {'type': 'string', 'enum': SAMPLE_TYPES},
        'counter_unit': _string(nullable=True),
        'counter_volume': _number(),
        'user_id': _string(nullable=True),
        'project_id': _string(nullable=True),
        'resource_id': _string(),
        'source': _string(nullable=True),
        'timestamp': _datetime(),
        'recorded_at': _datetime(nullable=True),
        'resource_metadata': FLAT_METADATA,
        'message_id': _string(
            nullable=True, description='Id of the notification the sample '
                                       'was made from (generated for '
                                       'posted samples).'),
    }, description='A sample as /v2/meters/{meter_name} shows it.'),
    'PostedSample': _object({
        'counter_name': _string(description='Must be the meter name of the '
                                            'URL.'),
        'counter_type': {'type': 'string', 'enum': SAMPLE_TYPES},
        'counter_unit': _string(),
        'counter_volume': {'type': 'number'},
        'resource_id': _string(minLength=1),
        'user_id': _string(nullable=True, description='Default: the '
                                                      "token's user."),
        'project_id': _string(nullable=True,
                              description="Default: the token's project; "
                                          'only an admin may post to '
                                          'another project.'),
        'source': _string(nullable=True, description='Stored as '
                                                     '"<project_id>:<source>"'
                                                     ' (default source: '
                                                     '[DEFAULT] '
                                                     'sample_source).'),
        'timestamp': _string(nullable=True, format='date-time',
                             description='ISO 8601; default: now.'),
        'recorded_at': _string(nullable=True, description='Ignored.'),
        'resource_metadata': {'type': 'object', 'nullable': True,
                              'description': 'Dotted keys are nested.'},
    }, required=['counter_name', 'counter_type', 'counter_unit',
                 'counter_volume', 'resource_id'],
        description='A sample to post (message_id must not be given: it '
                    'is generated).'),
    'Sample': _object({
        'id': _string(description='The unique id of the sample.'),
        'meter': _string(),
        'type': {'type': 'string', 'enum': SAMPLE_TYPES},
        'unit': _string(nullable=True),
        'volume': _number(),
        'user_id': _string(nullable=True),
        'project_id': _string(nullable=True),
        'resource_id': _string(),
        'source': _string(nullable=True),
        'timestamp': _datetime(),
        'recorded_at': _datetime(nullable=True),
        'metadata': FLAT_METADATA,
    }),
    'Link': _object({'href': _string(), 'rel': _string()}),
    'Resource': _object({
        'resource_id': _string(),
        'project_id': _string(nullable=True),
        'user_id': _string(nullable=True),
        'source': _string(nullable=True),
        'first_sample_timestamp': _datetime(nullable=True),
        'last_sample_timestamp': _datetime(nullable=True),
        'metadata': FLAT_METADATA,
        'links': _array(_ref('schemas', 'Link'), 'A self link, then one '
                        'link per meter of the resource (unless '
                        'meter_links=0).'),
    }),
    'Statistics': _object({
        'groupby': {'type': 'object', 'nullable': True,
                    'additionalProperties': {
                        'description': 'The value of the group (string, '
                                       'number, boolean or null).'},
                    'description': 'The group, when grouping.'},
        'unit': _string(nullable=True),
        'min': _number(nullable=True),
        'max': _number(nullable=True),
        'avg': _number(nullable=True),
        'sum': _number(nullable=True),
        'count': {'type': 'integer', 'nullable': True},
        'aggregate': {'type': 'object',
                      'additionalProperties': _number(nullable=True),
                      'description': 'The selected aggregates, by function '
                                     '(cardinality/<field> for '
                                     'cardinality); null when not finite '
                                     '(an overflowing sum).'},
        'duration': _number(nullable=True, description='Seconds between '
                            'duration_start and duration_end.'),
        'duration_start': _datetime(
            nullable=True, description='The first sample, or the query '
                                       'start when later.'),
        'duration_end': _datetime(
            nullable=True, description='The last sample, or the query end '
                                       'when earlier.'),
        'period': {'type': 'integer', 'minimum': 0},
        'period_start': _datetime(),
        'period_end': _datetime(),
    }),
    'Capabilities': _object({
        'api': {'type': 'object', 'additionalProperties': {
            'type': 'boolean'}},
        'storage': {'type': 'object', 'additionalProperties': {
            'type': 'boolean'}},
    }),
    'PollingOverride': _polling_override(),
    'PollingSource': _object({
        'name': _string(),
        'interval': _number(description='Seconds between cycles, in '
                                        'effect.'),
        'meters': _array(_string(), description='Meter patterns in '
                                                'effect.'),
        'resources': _array({}),
        'discovery': _array(_string()),
        'enabled': {'type': 'boolean'},
        'overridden': _array({'type': 'string', 'enum': [
            'interval', 'meters', 'enabled']}, description='The fields '
            'an override sets.'),
        'file': _object({'interval': _number(),
                         'meters': _array(_string()),
                         'enabled': {'type': 'boolean'}},
                        description='The source as the file says.'),
        'override': dict(_polling_override(), nullable=True),
    }),
    'PollingSources': _object({
        'file': _string(description='The polling file the API reads.'),
        'errors': _array(_string(), description='What is wrong in the '
                         'file (sources skipped, or the file refused).'),
        'sources': _array(_ref('schemas', 'PollingSource')),
        'orphan_overrides': {
            'type': 'object', 'description': 'Overrides of sources the '
            'file no longer has, by name.',
            'additionalProperties': _ref('schemas', 'PollingOverride')},
    }),
    'PollingOverrideRemoved': _object({
        'name': _string(description='The source.'),
        'removed': _ref('schemas', 'PollingOverride'),
    }, required=['name', 'removed']),
    'PollingChange': {
        'type': 'object', 'minProperties': 1, 'additionalProperties': False,
        'description': 'The fields to override; null drops a field\'s '
                       'override.',
        'properties': {
            'interval': {'type': 'number', 'exclusiveMinimum': True,
                         'minimum': 0, 'nullable': True},
            'meters': {'type': 'array', 'items': {'type': 'string'},
                       'nullable': True},
            'enabled': {'type': 'boolean', 'nullable': True}}},
    'ComplexQuery': _object({
        'filter': _string(description='A JSON filter expression: {op: '
                          '{field: value}} with = != < > <= =< >= => like, '
                          '{"in": {field: [values]}}, {"and"|"or": '
                          '[expressions]}, {"not": expression}.'),
        'orderby': _string(description='A JSON list of {field: '
                           '"asc"|"desc"}; default timestamp desc.'),
        'limit': {'oneOf': [
            {'type': 'integer', 'minimum': 1},
            {'type': 'string', 'pattern': r'^\s*\+?[0-9]*[1-9][0-9]*\s*$',
             'description': 'The limit as decimal text (as '
                            'python-ceilometerclient sends it).'}]},
    }, required=[]),
}

_NODE_PROPERTIES = {
    'id': _string(description='The object id; "opaque-<token>" for an '
                              'infrastructure object shown to a tenant.'),
    'type': _string(description='project, region, availability_zone, '
                                'host, instance, vnic, network, subnet, '
                                'port, router, floating_ip, vservice, '
                                'vedge, volume, or an operator\'s type.'),
    'name': _string(nullable=True),
    'project_id': _string(nullable=True),
    'state': _string(nullable=True, description='ACTIVE, DOWN, ERROR, '
                     'BUILD, SHUTOFF... or "deleted" (a tombstone).'),
    'opaque': {'type': 'boolean', 'description': 'An infrastructure '
               'object shown to a tenant: id (a token), type and state '
               'only.'},
    'attributes': {'type': 'object', 'description': 'The source fields.'},
}


def _node(extra=None, required=('id', 'type'), description=None):
    schema = {'type': 'object',
              'properties': {**_NODE_PROPERTIES, **(extra or {})},
              'required': list(required), 'additionalProperties': True}
    if description:
        schema['description'] = description
    return schema


def _inventory_link(nullable=False):
    schema = {
        'type': 'object', 'additionalProperties': True,
        'required': ['source_id', 'target_id', 'link_type'],
        'properties': {
            'source_id': _string(), 'target_id': _string(),
            'link_type': _string(description='"<source_type>-'
                                             '<target_type>".'),
            'state': _string(nullable=True),
            'project_id': _string(nullable=True),
            'attributes': {'type': 'object'},
        }}
    if nullable:
        schema['nullable'] = True
    return schema


SCHEMAS.update({
    'InventoryObject': _node(description='An inventory object (fields '
                             'of doc/inventory-api.md); an opaque node '
                             'has id, type, state and opaque only.'),
    'InventoryObjectWithMeters': _node(
        {'meters': _array(_ref('schemas', 'Meter'))},
        required=('id', 'type', 'meters')),
    'InventoryLink': _inventory_link(),
    'Clique': _object({
        'focal_point': _ref('schemas', 'InventoryObject'),
        'clique_type': _string(),
        'nodes': _array(_ref('schemas', 'InventoryObject')),
        'edges': _array(_ref('schemas', 'InventoryLink')),
    }),
    'Impact': _object({
        'focal_point': _ref('schemas', 'InventoryObject'),
        'dependents': _array(_node({
            'depth': {'type': 'integer', 'minimum': 1},
            'path': _array(_ref('schemas', 'InventoryLink'),
                           'The links from the focal point to it.'),
        }, required=('id', 'type', 'depth', 'path'))),
        'edges': _array(_ref('schemas', 'InventoryLink')),
    }),
    'Path': _object({
        'focal_point': _ref('schemas', 'InventoryObject'),
        'chain': _array(_node({
            'depth': {'type': 'integer', 'minimum': 0},
            'via': _inventory_link(nullable=True),
            'first_failure': {'type': 'boolean'},
        }, required=('id', 'type', 'depth', 'via', 'first_failure'))),
        'first_failure': _string(nullable=True, description='The first '
                                 'object, breadth first, not ACTIVE.'),
        'edges': _array(_ref('schemas', 'InventoryLink')),
    }),
    'Topology': _object({
        'project_ids': _array(_string()),
        'nodes': _array(_ref('schemas', 'InventoryObject')),
        'edges': _array(_ref('schemas', 'InventoryLink')),
    }),
})


def _query_array(name, items, description):
    return {'name': name, 'in': 'query', 'required': False,
            'style': 'form', 'explode': True,
            'schema': _array(items), 'description': description}


_TERM = _object({
    'field': _string(description='A sample field (name, type, unit, '
                     'volume, user_id, project_id, resource_id, '
                     'timestamp, source, id; CORD\'s counter_* names) or '
                     'resource_metadata.<key>.'),
    'op': {'type': 'string', 'enum': ['eq', 'ne', 'lt', 'le', 'gt', 'ge',
                                      'in']},
    'value': {'description': 'A string, number or boolean; for in, a '
                             'list or comma-separated text.'},
}, required=['field', 'value'])

SCHEMAS['SubscriptionBody'] = _object({
    'app_id': _string(description='The application\'s name for the '
                      'subscription, unique in the channel: a second '
                      'subscribe replaces the first.'),
    'target': _string(description='udp://HOST:PORT, http(s)://... or '
                      'amqp:// (a queue of the subscription\'s own).'),
    'sub_info': {'description': 'A meter name or pattern (cpu_*), or a '
                                'list of them.'},
    'query': _array(_TERM, 'Terms every sample must satisfy.'),
}, required=['app_id', 'target', 'sub_info'])

SCHEMAS['Subscription'] = _object({
    'app_id': _string(),
    'target': _string(description='Without credentials.'),
    'sub_info': _array(_string()),
    'query': _array(_TERM, 'The terms, with the channel\'s project '
                    'constraint last.'),
    'created_at': _string(nullable=True),
    'delivered': {'type': 'integer'},
    'dropped': {'type': 'integer'},
    'last_error': _string(nullable=True),
    'queue': _string(description='amqp:// targets: the queue to read.'),
}, required=['app_id', 'target', 'sub_info', 'query', 'delivered',
             'dropped'])

SCHEMAS['Unsubscribed'] = _object({
    'app_id': _string(), 'unsubscribed': {'type': 'boolean'}},
    required=['app_id', 'unsubscribed'])

PARAMETERS = {
    'q.field': _query_array(
        'q.field', _string(), 'Field of each simple-query term: user_id, '
        'project_id, resource_id, source, meter, message_id, timestamp, '
        'search_offset, metadata.<key>, resource_metadata.<key>.'),
    'q.op': _query_array(
        'q.op', {'type': 'string', 'enum': SIMPLE_OPERATORS},
        'Operator of each term (default eq); timestamp takes lt le gt ge, '
        'other fields eq ne in (in: comma-separated values).'),
    'q.value': _query_array('q.value', _string(), 'Value of each term.'),
    'q.type': _query_array(
        'q.type', {'type': 'string', 'enum': VALUE_TYPES},
        'Type of each metadata value ("" guesses).'),
    'limit': {'name': 'limit', 'in': 'query', 'required': False,
              'schema': {'type': 'integer', 'minimum': 1},
              'description': 'Most items returned (default [api] '
                             'default_api_return_limit).'},
    'unique': {'name': 'unique', 'in': 'query', 'required': False,
               'schema': {'type': 'boolean'},
               'description': 'One entry per meter name.'},
    'meter_links': {'name': 'meter_links', 'in': 'query',
                    'required': False, 'schema': {'type': 'integer'},
                    'description': '0: no link per meter.'},
    'groupby': _query_array(
        'groupby', _string(), 'Group by user_id, resource_id, project_id, '
        'source or resource_metadata.<key>.'),
    'period': {'name': 'period', 'in': 'query', 'required': False,
               'schema': {'type': 'integer', 'minimum': 0,
                          'maximum': api_query.MAX_PERIOD},
               'description': 'Seconds per period (from the query start), '
                              'at most a century; 0: no period.'},
    'aggregate.func': _query_array(
        'aggregate.func', {'type': 'string', 'enum': AGGREGATES},
        'Selected aggregation functions.'),
    'aggregate.param': _query_array(
        'aggregate.param', {'type': 'string', 'enum': CARDINALITY_FIELDS},
        'The field of each cardinality.'),
    'meter_name': {'name': 'meter_name', 'in': 'path', 'required': True,
                   'schema': _string(minLength=1)},
    'sample_id': {'name': 'sample_id', 'in': 'path', 'required': True,
                  'schema': _string(minLength=1)},
    'resource_id': {'name': 'resource_id', 'in': 'path', 'required': True,
                    'schema': _string(minLength=1)},
    'source_name': {'name': 'name', 'in': 'path', 'required': True,
                    'schema': _string(minLength=1),
                    'description': 'A source of the polling file.'},
    'object_id': {'name': 'object_id', 'in': 'path', 'required': True,
                  'schema': _string(minLength=1)},
    'inventory.type': _query_array(
        'type', _string(), 'Object types (repeated or comma-separated).'),
    'inventory.project_id': _query_array(
        'project_id', _string(), 'Projects (repeated or comma-separated); '
        'a tenant may name only its own (403).'),
    **{f'inventory.{name}': {
        'name': name, 'in': 'query', 'required': False,
        'schema': _string(), 'description': description}
       for name, description in (
           ('parent_id', 'Children of this object.'),
           ('host', 'Objects on this host (admin only).'),
           ('name', 'Objects of this name.'),
           ('state', 'Objects in this state.'),
           ('marker', 'The last id of the previous page: the objects '
                      'after it, by id.'),
           ('clique_type', 'The clique type (default: the first one of '
                           'the focal point\'s type).'))},
    'deleted': {'name': 'deleted', 'in': 'query', 'required': False,
                'schema': {'type': 'boolean'},
                'description': 'Also tombstones (closed links).'},
    'depth': {'name': 'depth', 'in': 'query', 'required': False,
              'schema': {'type': 'integer', 'minimum': 1, 'maximum': 64},
              'description': 'Most links from the focal point (default '
                             '64).'},
    'app_id': {'name': 'app_id', 'in': 'path', 'required': True,
               'schema': _string(minLength=1)},
}

RESPONSES = {
    name: {'description': description, 'content': {
        'application/json': {'schema': _ref('schemas', 'Error')}}}
    for name, description in (
        ('BadRequest', 'Invalid request (the message names the '
                       'parameter).'),
        ('Unauthorized', 'No or invalid token.'),
        ('Forbidden', 'The token may not see or write this project, or the '
                      'route is for admins only.'),
        ('NotFound', 'No such item (or one of a project the token may '
                     'not see).'),
        ('ServerError', 'Internal error.'),
        ('Unavailable', 'The store is unavailable; retry later.'),
    )}

QUERY = ['q.field', 'q.op', 'q.value', 'q.type']


def _operation(summary, parameters, status, schema, errors=(),
               body=None):
    responses = {str(status): {'description': summary, 'content': {
        'application/json': {'schema': schema}}}}
    for code, name in (('400', 'BadRequest'), ('401', 'Unauthorized'),
                       ('403', 'Forbidden'), *errors,
                       ('500', 'ServerError'), ('503', 'Unavailable')):
        responses[code] = _ref('responses', name)
    if status == 200 and body is None:
        # A read: an ETag, and 304 for If-None-Match naming it.
        responses['200']['headers'] = {'ETag': {
            'description': 'Digest of the answer, for If-None-Match.',
            'schema': {'type': 'string'}}}
        responses['304'] = {'description': 'Not modified: If-None-Match '
                                            'names the current ETag.'}
    operation = {'summary': summary,
                 'parameters': [_ref('parameters', p) for p in parameters],
                 'responses': dict(sorted(responses.items()))}
    if body is not None:
        operation['requestBody'] = {'required': True, 'content': {
            'application/json': {'schema': body}}}
    return operation


def _list_of(name):
    return _array(_ref('schemas', name))


NOT_FOUND = (('404', 'NotFound'),)

PATHS = {
    '/v2/meters': {'get': _operation(
        'Meters (one per meter and resource).',
        QUERY + ['limit', 'unique'], 200, _list_of('Meter'))},
    '/v2/meters/{meter_name}': {
        'get': _operation('Samples of a meter (an unknown meter has none).',
                          ['meter_name'] + QUERY + ['limit'], 200,
                          _list_of('OldSample')),
        'post': _operation('Store samples of a meter.', ['meter_name'],
                           201, _list_of('OldSample'),
                           body=dict(_list_of('PostedSample'),
                                     minItems=1)),
    },
    '/v2/meters/{meter_name}/statistics': {'get': _operation(
        'Statistics of the samples of a meter.',
        ['meter_name'] + QUERY + ['groupby', 'period', 'aggregate.func',
                                  'aggregate.param'],
        200, _list_of('Statistics'))},
    '/v2/samples': {'get': _operation(
        'Samples, newest first.', QUERY + ['limit'], 200,
        _list_of('Sample'))},
    '/v2/samples/{sample_id}': {'get': _operation(
        'One sample.', ['sample_id'], 200, _ref('schemas', 'Sample'),
        NOT_FOUND)},
    '/v2/resources': {'get': _operation(
        'Resources having samples.', QUERY + ['limit', 'meter_links'],
        200, _list_of('Resource'))},
    '/v2/resources/{resource_id}': {'get': _operation(
        'One resource, as the list shows it for this id; terms on '
        'project_id (only) limit it as they limit the list.',
        ['resource_id'] + QUERY, 200, _ref('schemas', 'Resource'),
        NOT_FOUND)},
    '/v2/query/samples': {'post': _operation(
        'Samples by complex query.', [], 200, _list_of('Sample'),
        body=_ref('schemas', 'ComplexQuery'))},
    '/v2/inventory': {'get': _operation(
        'Inventory objects by id, deleted ones only when asked.',
        ['inventory.type', 'inventory.project_id', 'inventory.parent_id',
         'inventory.host', 'inventory.name', 'inventory.state', 'limit',
         'inventory.marker', 'deleted'], 200, _list_of('InventoryObject'))},
    '/v2/inventory/{object_id}': {'get': _operation(
        'One inventory object with the meters recorded for it.',
        ['object_id'], 200, _ref('schemas', 'InventoryObjectWithMeters'),
        NOT_FOUND)},
    '/v2/inventory/{object_id}/links': {'get': _operation(
        'The links from and to an object.', ['object_id', 'deleted'], 200,
        _list_of('InventoryLink'), NOT_FOUND)},
    '/v2/inventory/{object_id}/clique': {'get': _operation(
        'The focal point\'s topology along its clique type\'s links.',
        ['object_id', 'inventory.clique_type'], 200,
        _ref('schemas', 'Clique'), NOT_FOUND)},
    '/v2/inventory/{object_id}/impact': {'get': _operation(
        'Every object depending on this one, with the links to it.',
        ['object_id', 'depth'], 200, _ref('schemas', 'Impact'),
        NOT_FOUND)},
    '/v2/inventory/{object_id}/path': {'get': _operation(
        'What the object depends on, up to the root causes, each with its '
        'state.', ['object_id'], 200, _ref('schemas', 'Path'), NOT_FOUND)},
    '/v2/topology': {'get': _operation(
        'The objects and links of projects as one graph.',
        ['inventory.project_id'], 200, _ref('schemas', 'Topology'))},
    '/v2/capabilities': {'get': _operation(
        'What the API and its store support.', [], 200,
        _ref('schemas', 'Capabilities'))},
    '/v2/polling/sources': {'get': _operation(
        'The polling sources (admins only): the file\'s, with their '
        'overrides.', [], 200, _ref('schemas', 'PollingSources'))},
    '/v2/polling/sources/{name}': {'put': _operation(
        'Override a source\'s interval, meters or enabled (admins only); '
        'the polling agents apply it at their next cycle.',
        ['source_name'], 200, _ref('schemas', 'PollingSource'), NOT_FOUND,
        body=_ref('schemas', 'PollingChange')),
        'delete': _operation(
            'Drop a source\'s override, also of a source the file no '
            'longer has (admins only).', ['source_name'], 200,
            _ref('schemas', 'PollingOverrideRemoved'), NOT_FOUND)},
    '/v2/subscribe': {
        'get': _operation('The channel\'s subscriptions with their '
                          'delivery counters (through a channel\'s '
                          'proxy).', [], 200, _list_of('Subscription')),
        'post': _operation('Subscribe (replaces the app_id\'s).', [], 201,
                           _ref('schemas', 'Subscription'),
                           body=_ref('schemas', 'SubscriptionBody')),
    },
    '/v2/subscribe/{app_id}': {'delete': _operation(
        'Unsubscribe.', ['app_id'], 200, _ref('schemas', 'Unsubscribed'),
        NOT_FOUND)},
    '/subscribe': {'post': _operation(
        'CORD\'s subscribe: as POST /v2/subscribe.', [], 201,
        _ref('schemas', 'Subscription'),
        body=_ref('schemas', 'SubscriptionBody'))},
    '/unsubscribe': {'post': _operation(
        'CORD\'s unsubscribe, body {"app_id"}.', [], 200,
        _ref('schemas', 'Unsubscribed'), NOT_FOUND,
        body=_object({'app_id': _string()}, required=['app_id']))},
    '/healthcheck': {'get': {
        'summary': 'Whether the API serves requests and its store answers '
                   '(no authentication).',
        'security': [],
        'responses': {
            '200': {'description': 'It does.', 'content': {
                'text/plain': {'schema': {'type': 'string',
                                          'enum': ['OK']}}}},
            '503': _ref('responses', 'Unavailable')}}},
    '/': {'get': {
        'summary': 'The API versions (Ceilometer\'s document; no '
                   'authentication).',
        'security': [],
        'responses': {'200': {'description': 'The versions.', 'content': {
            'application/json': {'schema': {
                'type': 'object', 'required': ['versions'],
                'properties': {'versions': {
                    'type': 'object', 'required': ['values'],
                    'properties': {'values': _array({
                        'type': 'object',
                        'required': ['id', 'status', 'links'],
                        'properties': {
                            'id': {'type': 'string'},
                            'status': {'type': 'string'},
                            'updated': {'type': 'string'},
                            'links': _array({'type': 'object'}),
                            'media-types': _array({'type': 'object'}),
                        }})}}}}}}}}}},
    PATH: {'get': {
        'summary': 'This document.', 'security': [],
        'responses': {'200': {'description': 'The OpenAPI document.',
                              'content': {'application/json': {
                                  'schema': {'type': 'object'}}}}}}},
}


@functools.cache
def _document():
    return {
        'openapi': '3.0.3',
        'info': {
            'title': 'calipso-telemetry API',
            'version': VERSION,
            'description': 'The Ceilometer v2-compatible query API of '
                           'calipso-telemetry. Errors are JSON '
                           '{"error_message": {"faultstring", '
                           '"faultcode"}}.',
        },
        'paths': PATHS,
        'components': {
            'schemas': SCHEMAS,
            'parameters': PARAMETERS,
            'responses': RESPONSES,
            'securitySchemes': {'keystone': {
                'type': 'apiKey', 'in': 'header', 'name': 'X-Auth-Token'}},
        },
        'security': [{'keystone': []}],
    }


def versions(base_url):
    """Ceilometer's answer to ``GET /``: clients probe it (ceilometerclient
    does, for aodh and panko, when given an endpoint)."""
    return {'versions': {'values': [{
        'id': 'v2', 'status': 'stable', 'updated': '2013-02-13T00:00:00Z',
        'links': [{'href': f'{base_url}/v2', 'rel': 'self'}],
        'media-types': [{
            'base': 'application/json',
            'type': 'application/vnd.openstack.telemetry-v2+json'}],
    }]}}


def document():
    """A fresh copy of the OpenAPI document."""
    return copy.deepcopy(_document())
