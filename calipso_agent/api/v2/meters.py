"""/v2/meters: meters, their samples (read and post), statistics."""

import datetime
import math
import uuid

from calipso_agent import sample as sample_mod
from calipso_agent.api import query as api_query
from calipso_agent.api import rbac
from calipso_agent.api.context import Reply
from calipso_agent.api.v2 import models
from calipso_agent.storage import base as storage_base
from calipso_agent.storage import query as storage_query
from calipso_agent.wsgi import errors

# The attributes of Ceilometer's OldSample a client may post.
POSTED_FIELDS = ('counter_name', 'counter_type', 'counter_unit',
                 'counter_volume', 'user_id', 'project_id', 'resource_id',
                 'source', 'timestamp', 'recorded_at', 'resource_metadata',
                 'message_id')
MANDATORY_FIELDS = ('counter_name', 'counter_type', 'counter_unit',
                    'counter_volume', 'resource_id')
TEXT_FIELDS = ('counter_name', 'counter_type', 'counter_unit', 'user_id',
               'project_id', 'resource_id', 'source', 'timestamp',
               'recorded_at', 'message_id')


def list_meters(ctx):
    params = ctx.params
    limit = api_query.parse_limit(params,
                                  ctx.conf.api.default_api_return_limit)
    unique = api_query.parse_bool(params, 'unique', False)
    sample_filter = ctx.sample_filter(ctx.simple_query())
    return [models.meter(item) for item in ctx.storage.get_meters(
        sample_filter, limit=limit, unique=unique)]


def list_samples(ctx, meter_name):
    params = ctx.params
    limit = api_query.parse_limit(params,
                                  ctx.conf.api.default_api_return_limit)
    sample_filter = ctx.sample_filter(ctx.simple_query(), meter=meter_name)
    return [models.old_sample(item) for item in ctx.storage.get_samples(
        sample_filter, limit=limit)]


def _posted_sample(ctx, meter_name, index, item, now):
    """The Sample of one posted OldSample (400 or 403 when it cannot be
    stored)."""
    def invalid(field, reason):
        return errors.InvalidParameterError(field, f'sample {index}: {reason}')

    if not isinstance(item, dict):
        raise invalid('samples', 'a sample is a JSON object')
    for field in item:
        if field not in POSTED_FIELDS:
            raise invalid(field, 'unknown attribute')
    for field in MANDATORY_FIELDS:
        if item.get(field) is None:
            raise invalid(field, 'mandatory field missing')
    for field in TEXT_FIELDS:
        if item.get(field) is not None and not isinstance(item[field], str):
            raise invalid(field, 'must be a string')
    if item['counter_name'] != meter_name:
        raise invalid('counter_name', f'{item["counter_name"]!r} should be '
                                      f'{meter_name!r}')
    if item.get('message_id') is not None:
        raise invalid('message_id', 'The message_id must not be set')
    if item['counter_type'] not in sample_mod.TYPES:
        raise invalid('counter_type', 'The counter type must be: ' +
                      ', '.join(sample_mod.TYPES))
    volume = item['counter_volume']
    try:
        if isinstance(volume, bool):
            raise ValueError
        volume = float(volume)
        if not math.isfinite(volume):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise invalid('counter_volume', 'not a finite number')
    timestamp = now
    if item.get('timestamp') is not None:
        try:
            timestamp = api_query.utc(item['timestamp'])
        except ValueError:
            raise invalid('timestamp', f'{item["timestamp"]!r} is not an '
                                       'ISO 8601 timestamp')
    metadata = item.get('resource_metadata')
    if metadata is not None and not isinstance(metadata, dict):
        raise invalid('resource_metadata', 'must be an object')
    identity = ctx.identity
    project_id = item.get('project_id') or identity.project_id
    user_id = item.get('user_id') or identity.user_id
    rbac.check_write(identity, project_id)
    source = item.get('source') or ctx.conf.sample_source
    posted = sample_mod.Sample(
        name=meter_name, type=item['counter_type'],
        unit=item['counter_unit'], volume=volume, user_id=user_id,
        project_id=project_id, resource_id=item['resource_id'],
        timestamp=timestamp.isoformat(),
        resource_metadata=models.restore_nesting(metadata or {}),
        # Ceilometer marks posted samples with the posting project.
        source=f'{project_id}:{source}', message_id=str(uuid.uuid4()))
    reason = storage_base.validate_sample(posted)
    if reason is not None:
        raise invalid('samples', reason)
    return posted


def post_samples(ctx, meter_name):
    body = ctx.json_body()
    if not isinstance(body, list) or not body:
        raise errors.ClientError('Samples should be included in request '
                                 'body (a JSON list)')
    now = datetime.datetime.now(datetime.UTC)
    samples = [_posted_sample(ctx, meter_name, index, item, now)
               for index, item in enumerate(body)]
    storage = ctx.storage
    result = storage.record_samples(samples)
    if result.rejected:
        reasons = '; '.join(str(reason) for _, reason in result.rejected)
        raise errors.ClientError(f'Samples rejected: {reasons}')
    stored = {item.id: item for item in storage.query_samples(
        {'in': {'id': [s.id for s in samples]}})}
    return Reply(201, [models.old_sample(stored.get(s.id, s))
                       for s in samples])


def _groupby(params):
    fields = []
    for field in params.getall('groupby'):
        if field not in storage_base.GROUPBY_FIELDS and not (
                field.startswith('resource_metadata.') and
                storage_query.valid_metadata_key(field)):
            raise errors.InvalidParameterError(
                'groupby', f'Invalid groupby field {field!r} (one of '
                           f'{", ".join(storage_base.GROUPBY_FIELDS)}, '
                           'resource_metadata.<key>)')
        if field not in fields:
            fields.append(field)
    return fields


def _aggregates(params):
    """(func, param) pairs of the repeated aggregate.func/aggregate.param.

    Params pair with funcs one to one, or, when fewer, with the
    cardinality funcs in order (a client gives params only to those).
    """
    funcs = params.getall('aggregate.func')
    given = params.getall('aggregate.param')
    cardinalities = [f for f in funcs if f == 'cardinality']
    if len(given) == len(funcs):
        pairs = list(zip(funcs, given, strict=True))
    elif len(given) == len(cardinalities):
        remaining = iter(given)
        pairs = [(f, next(remaining) if f == 'cardinality' else None)
                 for f in funcs]
    else:
        raise errors.InvalidParameterError(
            'aggregate.param', f'{len(given)} aggregate.param for '
                               f'{len(funcs)} aggregate.func')
    aggregates = []
    for func, param in pairs:
        if func not in storage_base.AGGREGATES:
            raise errors.InvalidParameterError(
                'aggregate.func', f'Invalid aggregation function {func!r} '
                                  f'(one of '
                                  f'{", ".join(storage_base.AGGREGATES)})')
        if func != 'cardinality':
            param = None
        elif param not in storage_base.CARDINALITY_FIELDS:
            raise errors.InvalidParameterError(
                'aggregate.param', f'cardinality of {param!r}: one of '
                f'{", ".join(storage_base.CARDINALITY_FIELDS)}')
        if (func, param) not in aggregates:
            aggregates.append((func, param))
    return aggregates


def statistics(ctx, meter_name):
    params = ctx.params
    simple_query = ctx.simple_query()
    period = api_query.parse_period(params)
    groupby = _groupby(params)
    aggregates = _aggregates(params)
    sample_filter = ctx.sample_filter(simple_query, meter=meter_name)
    try:
        computed = ctx.storage.get_statistics(
            sample_filter, period=period or None, groupby=groupby,
            aggregates=aggregates or None)
        # Rows may be decoded as they are read: a period ending past the
        # year 9999 fails here.
        period_texts = {}
        return [models.statistics(item, simple_query.start,
                                  simple_query.end, period_texts)
                for item in computed]
    except OverflowError as exc:
        raise errors.InvalidParameterError('period',
                                           f'Invalid period {period}: {exc}')
