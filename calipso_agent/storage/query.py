"""The query language of the store: Ceilometer's complex query.

An expression is a JSON-like tree::

    {"and": [e1, e2, ...]}    {"or": [e1, e2, ...]}    {"not": e}
    {"=": {field: value}}     ("!=", "<", "<=", ">", ">=" likewise)
    {"in": {field: [v1, v2, ...]}}
    {"like": {field: "pattern"}}   (SQL LIKE: % any run, _ one char;
                                    case-sensitive)

Fields: the sample's ``id, message_id, name, type, unit, volume, user_id,
project_id, resource_id, source, timestamp, recorded_at`` and
``resource_metadata.<key>[.<key>...]`` (nested keys). Timestamps are ISO
8601 strings or datetimes. A metadata term matches only a value of the
same kind (number, string, boolean) that compares as asked; a missing
value matches nothing, not even ``!=``.

``validate`` checks and normalizes an expression (raising InvalidQuery
with the offending part); ``matches`` evaluates one on a sample dict, the
reference every driver is tested against.
"""

import datetime
import math
import re

from calipso_agent import query_model
from calipso_agent import sample as sample_mod

COMPARISONS = ('=', '!=', '<', '<=', '>', '>=')
LEAF_OPS = COMPARISONS + ('in', 'like')
STRING_FIELDS = ('id', 'message_id', 'name', 'type', 'unit', 'user_id',
                 'project_id', 'resource_id', 'source')
NUMBER_FIELDS = ('volume',)
TIME_FIELDS = ('timestamp', 'recorded_at')
FIELDS = STRING_FIELDS + NUMBER_FIELDS + TIME_FIELDS
ORDERABLE = FIELDS
METADATA_PREFIX = 'resource_metadata.'
_METADATA_KEY = re.compile(r'^[A-Za-z0-9_:\-@]+(\.[A-Za-z0-9_:\-@]+)*$')


class InvalidQuery(ValueError):  # noqa: N818 - the API's word for it
    """A query that cannot be answered as asked."""


def valid_metadata_key(field):
    return (field.startswith(METADATA_PREFIX) and
            bool(_METADATA_KEY.match(field[len(METADATA_PREFIX):])))


def _timestamp(value, field):
    if isinstance(value, datetime.datetime):
        ts = value
    elif isinstance(value, str):
        try:
            ts = datetime.datetime.fromisoformat(
                sample_mod.normalize_timestamp(value))
        except ValueError:
            raise InvalidQuery(f'{field}: {value!r} is not an ISO 8601 '
                               'timestamp')
    else:
        raise InvalidQuery(f'{field}: {value!r} is not a timestamp')
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=datetime.UTC)
    return ts.astimezone(datetime.UTC)


def _scalar(value):
    return value is None or isinstance(value, (str, int, float, bool))


def _check_value(field, op, value):
    """The value normalized for ``field`` (timestamps parsed)."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            float(value)
        except OverflowError:
            raise InvalidQuery(f'{field}: an integer of {len(str(value))} '
                               'digits is beyond the range of numbers')
    if field in TIME_FIELDS:
        if op == 'like':
            raise InvalidQuery(f'like does not apply to {field}')
        return _timestamp(value, field)
    if op == 'like':
        if not isinstance(value, str):
            raise InvalidQuery(f'like: {field} pattern {value!r} is not a '
                               'string')
        if field in NUMBER_FIELDS:
            raise InvalidQuery(f'like does not apply to {field}')
        return value
    if field in NUMBER_FIELDS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidQuery(f'{field}: {value!r} is not a number')
        if not math.isfinite(value):
            raise InvalidQuery(f'{field}: {value!r} is not finite')
        return float(value)
    if field in STRING_FIELDS:
        if not isinstance(value, str):
            raise InvalidQuery(f'{field}: {value!r} is not a string')
        return value
    if not _scalar(value) or value is None:
        raise InvalidQuery(f'{field}: {value!r} is not a string, number or '
                           'boolean')
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidQuery(f'{field}: {value!r} is not finite')
    return value


def _check_field(field):
    if not isinstance(field, str):
        raise InvalidQuery(f'field {field!r} is not a string')
    if field in FIELDS or valid_metadata_key(field):
        return field
    raise InvalidQuery(f'unknown field {field!r}')


class _Validator(query_model.Walker):
    """Checks and normalizes a tree of the store's language."""

    error = InvalidQuery

    def leaf_operator(self, op):
        if op not in LEAF_OPS:
            raise InvalidQuery(f'unknown operator {op!r}')
        return op

    def leaf(self, op, field, value):
        field = _check_field(field)
        if op == 'in':
            if not isinstance(value, list) or not value:
                raise InvalidQuery(f'in: {field} needs a non-empty list')
            return {'in': {field: [_check_value(field, '=', v)
                                   for v in value]}}
        return {op: {field: _check_value(field, op, value)}}


_VALIDATOR = _Validator()


def validate(expression):
    """A normalized copy of ``expression``, or InvalidQuery."""
    return _VALIDATOR.walk(expression)


def validate_orderby(orderby):
    """[(field, 'asc'|'desc')] from [(f, d)] or [{f: d}] forms."""
    normalized = []
    for item in orderby or ():
        if isinstance(item, dict) and len(item) == 1:
            ((field, direction),) = item.items()
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            field, direction = item
        else:
            raise InvalidQuery(f'orderby item {item!r} is not '
                               '{field: asc|desc}')
        if not isinstance(direction, str) or direction.lower() not in (
                'asc', 'desc'):
            raise InvalidQuery(f'orderby direction {direction!r} is not asc '
                               'or desc')
        if field not in ORDERABLE:
            raise InvalidQuery(f'cannot order by {field!r}')
        normalized.append((field, direction.lower()))
    return normalized


def like_regex(pattern):
    """The regular expression of a SQL LIKE pattern (whole string)."""
    parts = []
    for char in pattern:
        if char == '%':
            parts.append('.*')
        elif char == '_':
            parts.append('.')
        else:
            parts.append(re.escape(char))
    return re.compile('(?s)^' + ''.join(parts) + r'\Z')


_MISSING = object()


def field_value(sample, field):
    """The value of ``field`` in a sample dict (_MISSING if absent)."""
    if field.startswith(METADATA_PREFIX):
        value = sample.get('resource_metadata') or {}
        for key in field[len(METADATA_PREFIX):].split('.'):
            if not isinstance(value, dict) or key not in value:
                return _MISSING
            value = value[key]
        return value
    value = sample.get(field)
    if field in TIME_FIELDS and value is not None:
        return _timestamp(value, field)
    return value


def _kind(value):
    if isinstance(value, bool):
        return bool
    if isinstance(value, (int, float)):
        return float
    if isinstance(value, str):
        return str
    if isinstance(value, datetime.datetime):
        return datetime.datetime
    return None


def _compare(op, have, want):
    if have is _MISSING or have is None or _kind(have) is None:
        return False
    if _kind(have) is not _kind(want):
        return False
    if op == '=':
        return have == want
    if op == '!=':
        return have != want
    if op == '<':
        return have < want
    if op == '<=':
        return have <= want
    if op == '>':
        return have > want
    return have >= want


def matches(expression, sample):
    """Whether a validated expression holds for a sample dict."""
    if expression is None:
        return True
    ((op, operand),) = expression.items()
    if op == 'and':
        return all(matches(e, sample) for e in operand)
    if op == 'or':
        return any(matches(e, sample) for e in operand)
    if op == 'not':
        return not matches(operand, sample)
    ((field, want),) = operand.items()
    have = field_value(sample, field)
    if op == 'in':
        return any(_compare('=', have, w) for w in want)
    if op == 'like':
        return isinstance(have, str) and bool(like_regex(want).match(have))
    return _compare(op, have, want)

