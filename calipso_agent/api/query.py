"""The simple query of the v2 API (``q.field``/``q.op``/``q.value``/
``q.type``) and the other list parameters, as a storage SampleFilter.

Semantics are Ceilometer's v2 (``ceilometer/api/controllers/v2/utils.py``
and ``base.Query``), with two extensions: ``ne`` and ``in`` (a comma
separated list) on every non-timestamp field. Several terms on one field
all hold (an intersection), where Ceilometer kept the last.
"""

import ast
import datetime
import math

from oslo_utils import strutils

from calipso_agent.storage import base as storage_base
from calipso_agent.storage import query as storage_query
from calipso_agent.wsgi import errors, query_string

OPERATORS = ('lt', 'le', 'eq', 'ne', 'ge', 'gt', 'in')
TIMESTAMP_OPERATORS = ('lt', 'le', 'gt', 'ge')
VALUE_OPERATORS = ('eq', 'ne', 'in')
TYPES = ('integer', 'float', 'string', 'boolean', 'datetime')
# Ceilometer accepted the storage argument names too.
FIELD_ALIASES = {'user': 'user_id', 'project': 'project_id',
                 'resource': 'resource_id'}
# Simple-query field -> SampleFilter argument and storage field.
VALUE_FIELDS = {'user_id': 'user_id', 'project_id': 'project_id',
                'resource_id': 'resource_id', 'source': 'source',
                'meter': 'name', 'message_id': 'message_id'}
METADATA_PREFIXES = ('metadata.', 'resource_metadata.')
FIELDS = tuple(VALUE_FIELDS) + ('timestamp', 'search_offset') + tuple(
    f'{p}<key>' for p in METADATA_PREFIXES)
STORAGE_OPS = {'eq': '=', 'ne': '!=', 'in': 'in'}
# The largest limit handed to a store (a 64-bit signed LIMIT).
MAX_LIMIT = 2 ** 63 - 1
MAX_PERIOD = storage_base.MAX_PERIOD


class Term:
    """One validated simple-query term; ``value`` is typed (a list for
    ``in``)."""

    __slots__ = ('field', 'op', 'value')

    def __init__(self, field, op, value):
        self.field = field
        self.op = op
        self.value = value

    def __repr__(self):
        return f'<Term {self.field} {self.op} {self.value!r}>'


def utc(value):
    """An aware UTC datetime from ISO 8601 text, or ValueError."""
    try:
        return storage_base.parse_timestamp(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(str(exc))


def _bool(value):
    return strutils.bool_from_string(value, strict=True)


def _autodetect(value):
    """Ceilometer's untyped metadata value: a Python literal when the text
    is one (number, boolean, string), else the text itself."""
    try:
        converted = ast.literal_eval(value)
    except Exception:
        return value
    if isinstance(converted, (bool, str)):
        return converted
    if isinstance(converted, int):
        return _number(converted)
    if isinstance(converted, float) and math.isfinite(converted):
        return converted
    return value


def _number(value):
    # JSON numbers are doubles to the stores; an integer past 64 bits
    # cannot be bound as one.
    if abs(value) >= 2 ** 63:
        try:
            return float(value)
        except OverflowError:
            raise errors.InvalidParameterError(
                'q.value', f'the integer of {len(str(value))} digits is '
                           'beyond the range of numbers')
    return value


def typed_value(value, type_):
    """A metadata value converted to ``type_`` ('' autodetects)."""
    if not type_:
        return _autodetect(value)
    try:
        if type_ == 'integer':
            return _number(int(value))
        if type_ == 'float':
            converted = float(value)
            if not math.isfinite(converted):
                raise ValueError('not finite')
            return converted
        if type_ == 'boolean':
            return _bool(value)
        if type_ == 'datetime':
            return naive(utc(value)).isoformat()
    except ValueError:
        raise errors.InvalidParameterError(
            'q.value', f'Unable to convert the value {value!r} to the '
                       f'expected data type {type_}.')
    return value


def naive(ts):
    """A UTC datetime without its timezone, as Ceilometer answered."""
    return ts.astimezone(datetime.UTC).replace(tzinfo=None)


def _split(value):
    items = [item.strip() for item in value.split(',')]
    items = [item for item in items if item]
    if not items:
        raise errors.InvalidParameterError('q.value',
                                           'in needs comma-separated values')
    return items


def _metadata_field(field):
    for prefix in METADATA_PREFIXES:
        if field.startswith(prefix):
            key = storage_query.METADATA_PREFIX + field[len(prefix):]
            if storage_query.valid_metadata_key(key):
                return key
            raise errors.InvalidParameterError(
                'q.field', f'{field!r} is not a valid metadata key')
    return None


def parse_term(field, op, value, type_):
    """A Term from one q.field/q.op/q.value/q.type quadruple."""
    op = op or 'eq'
    if op not in OPERATORS:
        raise errors.InvalidParameterError(
            'q.op', f'{op!r} is not one of {", ".join(OPERATORS)}')
    if type_ and type_ not in TYPES:
        raise errors.InvalidParameterError(
            'q.type', f'The data type {type_} is not supported. The '
                      f'supported data type list is: {", ".join(TYPES)}')
    field = FIELD_ALIASES.get(field, field)
    if field == 'timestamp':
        if op not in TIMESTAMP_OPERATORS:
            raise errors.InvalidParameterError(
                'q.op', f'unimplemented operator {op} for timestamp')
        try:
            return Term(field, op, utc(value))
        except ValueError:
            raise errors.InvalidParameterError(
                'q.value', f'invalid timestamp format {value!r}')
    if field == 'search_offset':
        if op != 'eq':
            raise errors.InvalidParameterError(
                'q.op', f'unimplemented operator {op} for search_offset')
        try:
            return Term(field, op, int(value))
        except ValueError:
            raise errors.InvalidParameterError(
                'q.value', f'search_offset {value!r} is not an integer')
    metadata_key = _metadata_field(field)
    if field not in VALUE_FIELDS and metadata_key is None:
        raise errors.InvalidParameterError(
            'q.field', f'unrecognized field in query: {field!r}, valid '
                       f'keys: {", ".join(FIELDS)}')
    if op not in VALUE_OPERATORS:
        raise errors.InvalidParameterError(
            'q.op', f'unimplemented operator {op} for {field} (one of '
                    f'{", ".join(VALUE_OPERATORS)})')
    if metadata_key is None:
        return Term(field, op, _split(value) if op == 'in' else value)
    if op == 'in':
        return Term(metadata_key, op,
                    [typed_value(v, type_) for v in _split(value)])
    return Term(metadata_key, op, typed_value(value, type_))


def parse_terms(params):
    """The Terms of the repeated q.* parameters of a request."""
    return [parse_term(*quadruple)
            for quadruple in query_string.query_quadruples(params)]


class SimpleQuery:
    """The terms of a request, with its timestamp bounds worked out."""

    def __init__(self, terms):
        self.terms = list(terms)
        self.start = self.start_op = self.end = self.end_op = None
        offsets = []
        for term in self.terms:
            if term.field == 'search_offset':
                offsets.append(term.value)
            elif term.field == 'timestamp' and term.op in ('gt', 'ge'):
                # The tightest lower bound: the latest, gt before ge.
                if self.start is None or (term.value, term.op == 'gt') > (
                        self.start, self.start_op == 'gt'):
                    self.start, self.start_op = term.value, term.op
            elif term.field == 'timestamp':
                if self.end is None or (term.value, term.op == 'le') < (
                        self.end, self.end_op == 'le'):
                    self.end, self.end_op = term.value, term.op
        self.search_offset = offsets[-1] if offsets else 0
        if offsets and self.start is None and self.end is None:
            raise errors.InvalidParameterError(
                'q.field', 'search_offset cannot be used without timestamp')

    @classmethod
    def from_params(cls, params):
        return cls(parse_terms(params))

    def project_terms(self):
        return [t for t in self.terms if t.field == 'project_id']

    def sample_filter(self, meter=None, project_scope=None):
        """The storage SampleFilter of these terms.

        ``meter`` (a URL's meter name) and ``project_scope`` (the
        project every answer must belong to, from RBAC) are added to
        the terms.
        """
        arguments = {}
        conditions = []
        if meter is not None:
            arguments['meter'] = meter
        for term in self.terms:
            if term.field in ('timestamp', 'search_offset'):
                continue
            op = STORAGE_OPS[term.op]
            argument = term.field if term.field in VALUE_FIELDS else None
            if argument is not None and op != '!=' and (
                    arguments.get(argument) is None):
                arguments[argument] = (set(term.value) if op == 'in'
                                       else term.value)
                continue
            field = VALUE_FIELDS.get(term.field, term.field)
            conditions.append((field, op, term.value))
        if project_scope is not None:
            if arguments.get('project_id') is None:
                arguments['project_id'] = project_scope
            else:
                conditions.append(('project_id', '=', project_scope))
        try:
            offset = datetime.timedelta(minutes=self.search_offset)
            if self.start is not None:
                arguments['start_timestamp'] = self.start - offset
                arguments['start_timestamp_op'] = self.start_op
            if self.end is not None:
                arguments['end_timestamp'] = self.end + offset
                arguments['end_timestamp_op'] = self.end_op
        except OverflowError:
            raise errors.InvalidParameterError(
                'q.value', f'search_offset {self.search_offset} takes the '
                           'timestamps out of range')
        return storage_base.SampleFilter(conditions=conditions, **arguments)


def parse_limit(params, default):
    """The ``limit`` parameter: ``default`` when absent, 400 unless a
    positive integer."""
    values = params.getall('limit')
    if not values or values[-1] == '':
        return default
    try:
        limit = int(values[-1])
    except ValueError:
        raise errors.InvalidParameterError('limit',
                                           f'{values[-1]!r} is not an integer')
    if limit <= 0:
        raise errors.ClientError('Limit must be positive')
    return min(limit, MAX_LIMIT)


def parse_period(params):
    """The statistics ``period`` in seconds: None when absent or 0 (no
    period), 400 unless an integer from 0 to MAX_PERIOD."""
    period = parse_int(params, 'period', None)
    if period is None:
        return None
    if period < 0:
        raise errors.InvalidParameterError('period', 'Period must be '
                                                     'positive.')
    if period > MAX_PERIOD:
        raise errors.InvalidParameterError(
            'period', f'{period} is longer than {MAX_PERIOD} seconds (a '
                      'century)')
    return period or None


def parse_int(params, name, default):
    values = params.getall(name)
    if not values or values[-1] == '':
        return default
    try:
        return int(values[-1])
    except ValueError:
        raise errors.InvalidParameterError(name,
                                           f'{values[-1]!r} is not an integer')


def parse_bool(params, name, default):
    values = params.getall(name)
    if not values or values[-1] == '':
        return default
    try:
        return _bool(values[-1])
    except ValueError:
        raise errors.InvalidParameterError(name,
                                           f'{values[-1]!r} is not a boolean')
