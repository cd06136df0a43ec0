"""The test oracle of the storage contract: ordering, complex queries and
statistics computed in plain Python over samples."""

import datetime
import math

from calipso_agent.storage import base as storage_base
from calipso_agent.storage import query as storage_query


def sample_dict(item):
    """A stored or returned sample (Sample, or a mapping) as a dict."""
    if hasattr(item, 'as_dict'):
        return item.as_dict()
    return dict(item)


def instant(value):
    """An aware UTC datetime from an ISO 8601 string or datetime (None
    stays None)."""
    if value is None:
        return None
    return storage_base.parse_timestamp(value)


def _order_value(sample, field):
    value = sample.get(field)
    if field in storage_query.TIME_FIELDS:
        value = instant(value)
    elif field in storage_query.NUMBER_FIELDS and value is not None:
        value = float(value)
    # None sorts first; the contract tests never order by a field that is
    # None in their data (drivers differ: NULLS FIRST or LAST).
    return (0, 0) if value is None else (1, value)


def reference_order(samples, orderby=None):
    """``samples`` sorted as query_samples sorts (default: timestamp
    descending); ties keep their order."""
    orderby = storage_query.validate_orderby(orderby) or [('timestamp',
                                                           'desc')]
    result = list(samples)
    for field, direction in reversed(orderby):
        result.sort(key=lambda s, f=field: _order_value(s, f),
                    reverse=direction == 'desc')
    return result


def reference_query_samples(samples, filter_expr=None, orderby=None,
                            limit=None):
    """The sample dicts ``query_samples`` returns over ``samples``."""
    expression = (storage_query.validate(filter_expr)
                  if filter_expr is not None else None)
    found = [sample_dict(s) for s in samples]
    found = [s for s in found if storage_query.matches(expression, s)]
    found = reference_order(found, orderby)
    return found if limit is None else found[:limit]


def group_key(value):
    """A hashable, kind-aware key of a group value: True, 1 and '1' are
    three groups, 1 and 1.0 one; None (missing) is its own group."""
    if value is None:
        return None
    if isinstance(value, bool):
        return ('bool', value)
    if isinstance(value, (int, float)):
        return ('number', float(value))
    if isinstance(value, str):
        return ('string', value)
    raise TypeError(f'cannot group by a {type(value).__name__} '
                    f'({value!r})')


def _group_value(sample, field):
    value = storage_query.field_value(sample, field)
    return None if value is storage_query._MISSING else value


def _sort_group(key):
    # None first, then by kind name and value: a total order over keys.
    return tuple((0,) if k is None else (1, k[0], k[1]) for k in key)


def _population_stddev(values):
    mean = math.fsum(values) / len(values)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values)
                     / len(values))


def reference_statistics(samples, sample_filter=None, period=None,
                         groupby=None, aggregates=None,
                         cardinality_counts_none=False):
    """The Statistics (as dicts) ``get_statistics`` returns over
    ``samples`` (base.Connection.get_statistics semantics).

    ``cardinality_counts_none``: whether a field that is None counts as
    one more distinct value. The interface does not say; the contract
    follows SQL's COUNT DISTINCT (and both drivers): it does not.
    """
    period, groupby, aggregates = storage_base.check_statistics_args(
        period, groupby, aggregates)
    expression = (sample_filter.expression()
                  if sample_filter is not None else None)
    found = [sample_dict(s) for s in samples]
    found = [s for s in found if storage_query.matches(expression, s)]
    if not found:
        return []
    for s in found:
        s['_ts'] = instant(s['timestamp'])
    origin = None
    if period:
        origin = (sample_filter.start_timestamp
                  if sample_filter is not None
                  and sample_filter.start_timestamp is not None
                  else min(s['_ts'] for s in found))
    partitions = {}
    for s in found:
        start = (storage_base.period_start(s['_ts'], origin, period)
                 if period else None)
        values = tuple(_group_value(s, f) for f in groupby)
        key = (start, tuple(group_key(v) for v in values), s['unit'])
        partitions.setdefault(key, (values, []))[1].append(s)
    result = []
    for (start, gkey, unit), (values, members) in partitions.items():
        volumes = [float(s['volume']) for s in members]
        first = min(s['_ts'] for s in members)
        last = max(s['_ts'] for s in members)
        computed = {
            'count': len(volumes), 'min': min(volumes),
            'max': max(volumes), 'sum': math.fsum(volumes),
            'avg': math.fsum(volumes) / len(volumes),
            'stddev': _population_stddev(volumes),
        }
        stats = dict.fromkeys(storage_base.Statistics.__slots__)
        stats.update(
            unit=unit, duration_start=first, duration_end=last,
            duration=(last - first).total_seconds(),
            groupby=dict(zip(groupby, values, strict=True))
            if groupby else None)
        if period:
            stats.update(period=period, period_start=start,
                         period_end=start + datetime.timedelta(
                             seconds=period))
        else:
            stats.update(period=0, period_start=first, period_end=last)
        if not aggregates:
            for name in ('count', 'min', 'max', 'avg', 'sum'):
                stats[name] = computed[name]
            stats['aggregate'] = {}
        else:
            stats['aggregate'] = {}
            for func, param in aggregates:
                if func == 'cardinality':
                    distinct = {s.get(param) for s in members}
                    if not cardinality_counts_none:
                        distinct.discard(None)
                    stats['aggregate'][f'cardinality/{param}'] = len(
                        distinct)
                else:
                    stats[func] = computed[func]
                    stats['aggregate'][func] = computed[func]
        result.append(((start or 0, _sort_group(gkey), str(unit)), stats))
    # Sorted by period (without one, a single period: every group covers
    # the whole range), then group values (None first; the interface
    # leaves the order of mixed kinds open), then unit.
    return [stats for _, stats in sorted(result, key=lambda item: item[0])]
