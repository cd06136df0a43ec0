"""The complex query of ``POST /v2/query/samples``, translated from
Ceilometer's language into the store's (``storage/query.py``).

Ceilometer's filter is a JSON string: leaves ``{op: {field: value}}``
with ``= != < > <= =< >= =>`` (case-insensitive) and ``=~`` (a regular
expression, which the stores cannot evaluate: refused), ``{"in": {field:
[values]}}``, ``{"and"|"or": [two or more]}``, ``{"not": expr}``. Fields
are the sample's, under Ceilometer's names and aliases (``meter``,
``counter_name``, ``resource``, ``user``, ``project``, ``volume`` ...),
and ``metadata.X``. Extensions: ``like`` (SQL LIKE), ``resource_metadata.X``
and ``id``. The orderby is a JSON string ``[{field: "asc"|"desc"}]``.
"""

import json
import re

from calipso_agent import query_model
from calipso_agent.api import query as api_query
from calipso_agent.storage import query as storage_query
from calipso_agent.wsgi import errors

OPERATORS = {'=': '=', '!=': '!=', '<': '<', '>': '>', '<=': '<=',
             '=<': '<=', '>=': '>=', '=>': '>=', 'in': 'in', 'like': 'like'}
UNSUPPORTED_OPERATORS = ('=~',)
FIELDS = {
    'id': 'id', 'message_id': 'message_id', 'source': 'source',
    'meter': 'name', 'counter_name': 'name',
    'type': 'type', 'counter_type': 'type',
    'unit': 'unit', 'counter_unit': 'unit',
    'volume': 'volume', 'counter_volume': 'volume',
    'resource': 'resource_id', 'resource_id': 'resource_id',
    'user': 'user_id', 'user_id': 'user_id',
    'project': 'project_id', 'project_id': 'project_id',
    'timestamp': 'timestamp', 'recorded_at': 'recorded_at',
}
METADATA_PREFIXES = ('metadata.', 'resource_metadata.')
_DECIMAL = re.compile(r'\s*[+-]?[0-9]+\s*')


class InvalidExpressionError(ValueError):
    """A filter or orderby that is not valid (the reason)."""


def _reject_constant(name):
    raise ValueError(f'{name} is not a JSON number')


def _check_unicode(value):
    """ValueError when a string of ``value`` holds a lone surrogate (a
    JSON escape no store can encode)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            try:
                item.encode('utf-8')
            except UnicodeEncodeError:
                raise ValueError(f'{item!a} is not valid Unicode')


def load_json(text):
    """The value of a JSON document (no NaN or Infinity, no lone
    surrogate), or ValueError."""
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError('nested too deeply')
    _check_unicode(value)
    return value


def _field(name):
    if not isinstance(name, str):
        raise InvalidExpressionError(f'field {name!r} is not a string')
    if name in FIELDS:
        return FIELDS[name]
    for prefix in METADATA_PREFIXES:
        if name.startswith(prefix):
            key = storage_query.METADATA_PREFIX + name[len(prefix):]
            if storage_query.valid_metadata_key(key):
                return key
    raise InvalidExpressionError(
        f'unknown field {name!r} (one of {", ".join(sorted(FIELDS))}, '
        'metadata.<key>)')


def _scalar(value):
    return (isinstance(value, (str, bool, int, float)) and
            value is not None)


class _Translator(query_model.Walker):
    """The store's tree of a decoded Ceilometer filter."""

    error = InvalidExpressionError
    expression_shape = 'an object of exactly one operator'
    leaf_shape = 'an object of one field and its value'

    def leaf_operator(self, op):
        if op in UNSUPPORTED_OPERATORS:
            raise InvalidExpressionError(
                f'operator {op} (regular expression) is not supported; '
                'use like')
        if op not in OPERATORS:
            raise InvalidExpressionError(
                f'unknown operator {op!r} (one of and, or, not, '
                f'{", ".join(OPERATORS)})')
        return op

    def leaf(self, op, name, value):
        field = _field(name)
        if op == 'in':
            if (not isinstance(value, list) or not value or
                    not all(_scalar(v) for v in value)):
                raise InvalidExpressionError(
                    f'in: {name} needs a non-empty list of strings and '
                    'numbers')
        elif not _scalar(value):
            raise InvalidExpressionError(
                f'{op}: the value of {name} must be a string, number or '
                f'boolean, not {value!r}')
        return {OPERATORS[op]: {field: value}}


_TRANSLATOR = _Translator()


def translate(expression):
    """The store's expression of a decoded Ceilometer filter."""
    return _TRANSLATOR.walk(expression)


def parse_filter(text):
    """The store's expression (validated) of a Ceilometer filter string;
    None when there is none."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise errors.ClientError('Filter expression not valid: the filter '
                                 'must be a JSON string')
    try:
        expression = translate(load_json(text))
        return storage_query.validate(expression)
    except (ValueError, RecursionError) as exc:
        raise errors.ClientError(f'Filter expression not valid: {exc}')


def parse_orderby(text):
    """[(field, 'asc'|'desc')] of a Ceilometer orderby string; None when
    there is none."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise errors.ClientError('Order-by expression not valid: the '
                                 'orderby must be a JSON string')
    try:
        items = load_json(text)
        if not isinstance(items, list):
            raise InvalidExpressionError(f'{items!r} is not a list')
        orderby = []
        for item in items:
            if not isinstance(item, dict) or len(item) != 1:
                raise InvalidExpressionError(
                    f'{item!r} is not an object of one field')
            ((name, direction),) = item.items()
            field = _field(name)
            if field not in storage_query.ORDERABLE:
                raise InvalidExpressionError(f'cannot order by {name!r}')
            orderby.append({field: direction})
        return storage_query.validate_orderby(orderby)
    except ValueError as exc:
        raise errors.ClientError(f'Order-by expression not valid: {exc}')


def parse_limit(value):
    """The body's limit: None (no limit, as Ceilometer) or positive; an
    integer or its decimal text (python-ceilometerclient sends
    ``"limit": "2"``)."""
    if value is None:
        return None
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.InvalidParameterError('limit', f'{value!r} is not an '
                                               'integer')
    if value <= 0:
        raise errors.ClientError('Limit should be positive')
    return min(value, api_query.MAX_LIMIT)
