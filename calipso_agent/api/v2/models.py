"""The v2 API's representations of stored things (Ceilometer's types).

Datetimes are naive UTC ISO 8601 (``2026-01-01T00:00:00``, microseconds
when not zero); metadata is flattened to strings as Ceilometer did
(``{"flavor": {"name": "m1"}}`` → ``{"flavor.name": "m1"}``, deeper
levels joined by ``:``).
"""

import base64
import datetime
import urllib.parse

from calipso_agent.api import query as api_query
from calipso_agent.storage import base as storage_base

# What the stores' UTC timestamps look like: their naive form is the text
# before the offset (microseconds are shown only when not zero, by both).
_UTC_LENGTHS = (len('2026-01-01T00:00:00+00:00'),
                len('2026-01-01T00:00:00.000000+00:00'))


def format_datetime(value):
    if value is None:
        return None
    if value.__class__ is datetime.datetime and value.tzinfo is (
            datetime.UTC):
        # The ISO form of a UTC datetime ends with "+00:00".
        return value.isoformat()[:-6]
    if (isinstance(value, str) and len(value) in _UTC_LENGTHS
            and value.endswith('+00:00') and value[10] == 'T'
            and not value.endswith('.000000+00:00')):
        try:
            datetime.datetime.fromisoformat(value)
            return value[:-6]
        except ValueError:
            pass
    return api_query.naive(storage_base.parse_timestamp(value)).isoformat()


def _utc_datetime(value):
    """``value`` (None, a UTC datetime or a timestamp) as a UTC datetime."""
    if value is None or (value.__class__ is datetime.datetime
                         and value.tzinfo is datetime.UTC):
        return value
    return storage_base.parse_timestamp(value)


def _keypairs(mapping, separator):
    for name, value in sorted(mapping.items()):
        if isinstance(value, dict):
            for subname, subvalue in _keypairs(value, separator):
                yield f'{name}{separator}{subname}', subvalue
        else:
            yield name, value


def _flatten_into(mapping, prefix, out):
    """Every leaf of ``mapping`` into ``out``, depth first in key order,
    under its dotted key (sets are left out, other values become text)."""
    for name in sorted(mapping):
        value = mapping[name]
        if value.__class__ is not str:
            if isinstance(value, dict):
                _flatten_into(value, f'{prefix}{name}.', out)
                continue
            if isinstance(value, (set, frozenset)):
                continue
            value = str(value)
        key = prefix + name
        if ':' in key or ('.' in key and key.count('.') > 1):
            # The first dot stays, later ones become colons.
            key = key.replace('.', ':').replace(':', '.', 1)
        out[key] = value
    return out


def flatten_metadata(metadata):
    """Ceilometer's ``flatten_metadata``: one string per leaf."""
    if not metadata:
        return {}
    return _flatten_into(metadata, '', {})


def flatten_capabilities(mapping):
    return dict(_keypairs(mapping, ':'))


def restore_nesting(flat):
    """The nested form of flattened metadata (``a.b`` → ``{a: {b}}``),
    as Ceilometer stored posted samples."""
    nested = {}
    for key, value in flat.items():
        parts = key.split('.')
        node = nested
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
    return nested


def meter(item):
    data = {field: getattr(item, field) for field in (
        'name', 'type', 'unit', 'resource_id', 'project_id', 'user_id',
        'source')}
    data['meter_id'] = base64.b64encode(
        f'{item.resource_id}+{item.name}'.encode()).decode('ascii')
    return data


def sample(item):
    """A sample as /v2/samples shows it."""
    return {
        'id': item.id, 'meter': item.name, 'type': item.type,
        'unit': item.unit, 'volume': float(item.volume),
        'user_id': item.user_id, 'project_id': item.project_id,
        'resource_id': item.resource_id, 'source': item.source,
        'timestamp': format_datetime(item.timestamp),
        'recorded_at': format_datetime(item.recorded_at),
        'metadata': flatten_metadata(item.resource_metadata),
    }


def old_sample(item):
    """A sample as /v2/meters/{name} shows it (Ceilometer's OldSample)."""
    return {
        'counter_name': item.name, 'counter_type': item.type,
        'counter_unit': item.unit, 'counter_volume': float(item.volume),
        'user_id': item.user_id, 'project_id': item.project_id,
        'resource_id': item.resource_id, 'source': item.source,
        'timestamp': format_datetime(item.timestamp),
        'recorded_at': format_datetime(item.recorded_at),
        'resource_metadata': flatten_metadata(item.resource_metadata),
        'message_id': item.message_id,
    }


def link(base_url, rel, path, resource_id=None):
    href = f'{base_url}/v2/{path}'
    if resource_id is not None:
        href += '?' + urllib.parse.urlencode(
            [('q.field', 'resource_id'), ('q.value', resource_id)])
    return {'href': href, 'rel': rel}


def resource(item, base_url, meter_links=True):
    quoted = urllib.parse.quote(item.resource_id, safe='')
    links = [link(base_url, 'self', f'resources/{quoted}')]
    if meter_links:
        names = sorted({m.name for m in item.meters})
        links.extend(link(base_url, name,
                          f'meters/{urllib.parse.quote(name, safe="")}',
                          item.resource_id)
                     for name in names)
    return {
        'resource_id': item.resource_id, 'project_id': item.project_id,
        'user_id': item.user_id, 'source': item.source,
        'first_sample_timestamp': format_datetime(
            item.first_sample_timestamp),
        'last_sample_timestamp': format_datetime(
            item.last_sample_timestamp),
        'metadata': flatten_metadata(item.metadata),
        'links': links,
    }


def statistics(item, start=None, end=None, period_texts=None):
    """Statistics with the durations clamped to the query's bounds
    [start, end], as Ceilometer: all three None when no sample time
    falls inside them. ``period_texts`` (a dict shared by the items of
    one answer) keeps the text of each period bound: grouped answers
    repeat the same periods for every group."""
    fields = item.as_dict()
    first = _utc_datetime(fields['duration_start'])
    last = _utc_datetime(fields['duration_end'])
    if start is not None and first is not None and first < start:
        first = start
    if end is not None and last is not None and last > end:
        last = end
    if first is not None and last is not None and first <= last:
        duration = (last - first).total_seconds()
    else:
        first = last = duration = None
    data = {'groupby': fields['groupby'], 'unit': fields['unit']}
    for name in ('min', 'max', 'avg', 'sum'):
        value = fields[name]
        data[name] = (value if value is None or value.__class__ is float
                      else float(value))
    data['count'] = fields['count']
    data['aggregate'] = fields['aggregate'] or {}
    data['duration'] = duration
    data['duration_start'] = format_datetime(first)
    data['duration_end'] = format_datetime(last)
    data['period'] = fields['period']
    if period_texts is None:
        period_texts = {}
    for name in ('period_start', 'period_end'):
        value = fields[name]
        text = period_texts.get(value)
        if text is None:
            text = period_texts[value] = format_datetime(value)
        data[name] = text
    return data
