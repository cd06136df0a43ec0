"""SQL storage driver (SQLAlchemy Core): SQLite embedded, PostgreSQL.

Timestamps are stored as microseconds since the epoch (BIGINT), so period
buckets are exact integer arithmetic on every engine. Metadata is JSON
(JSONB on PostgreSQL) and complex queries compile to SQL reproducing
``query.matches``: every term is built in a positive and a negated form
so that NULL columns and missing metadata keys never match, not even
under ``not``. Text columns use the "C" collation on PostgreSQL so string
order is code point order, as in Python and SQLite.

Besides ``sample``, ``resource`` keeps each resource's first/last
timestamps and latest sample, and ``meter`` each distinct (name, type,
unit, resource, project, user, source): both are maintained by
``record_samples`` in the same transaction and answer unfiltered (or
resource-only) listings without scanning samples.
"""

import contextlib
import datetime
import decimal
import functools
import hashlib
import itertools
import json
import logging
import math
import operator
import os
import re
import threading

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite as sqlite_dialect

from calipso_agent import sample as sample_mod
from calipso_agent.storage import base
from calipso_agent.storage import query as query_mod

LOG = logging.getLogger(__name__)

SCHEMA_VERSION = 1
# Serializes concurrent upgrade() calls on one PostgreSQL database.
_UPGRADE_LOCK_KEY = 0x63616C6970736F

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_MICROSECOND = datetime.timedelta(microseconds=1)
_INT64 = 2 ** 63 - 1

_TEXT = sa.Text().with_variant(sa.Text(collation='C'), 'postgresql')
_JSON = sa.JSON().with_variant(postgresql.JSONB(), 'postgresql')

METADATA = sa.MetaData()

SAMPLE = sa.Table(
    'sample', METADATA,
    sa.Column('id', _TEXT, primary_key=True),
    sa.Column('name', _TEXT, nullable=False),
    sa.Column('type', _TEXT, nullable=False),
    sa.Column('unit', _TEXT),
    sa.Column('volume', sa.Double(), nullable=False),
    sa.Column('user_id', _TEXT),
    sa.Column('project_id', _TEXT),
    sa.Column('resource_id', _TEXT, nullable=False),
    sa.Column('source', _TEXT),
    sa.Column('message_id', _TEXT),
    sa.Column('ts', sa.BigInteger(), nullable=False),
    sa.Column('recorded_ts', sa.BigInteger(), nullable=False),
    sa.Column('resource_metadata', _JSON, nullable=False),
    sa.Index('ix_sample_name_ts', 'name', 'ts'),
    sa.Index('ix_sample_project_name_ts', 'project_id', 'name', 'ts'),
    sa.Index('ix_sample_resource_ts', 'resource_id', 'ts'),
    sa.Index('ix_sample_ts', 'ts'),
)

# The latest sample is the one with the greatest (ts, id). Every stored
# batch updates its resources: free space in each page (fillfactor) and
# no index on the updated columns let PostgreSQL update in place (HOT).
RESOURCE = sa.Table(
    'resource', METADATA,
    sa.Column('resource_id', _TEXT, primary_key=True),
    sa.Column('project_id', _TEXT),
    sa.Column('user_id', _TEXT),
    sa.Column('source', _TEXT),
    sa.Column('first_ts', sa.BigInteger(), nullable=False),
    sa.Column('last_ts', sa.BigInteger(), nullable=False),
    sa.Column('latest_id', _TEXT, nullable=False),
    sa.Column('metadata', _JSON, nullable=False),
    postgresql_with={'fillfactor': 70},
)

METER_FIELDS = ('name', 'type', 'unit', 'resource_id', 'project_id',
                'user_id', 'source')

# ``key`` hashes the seven fields: a unique constraint over nullable
# columns would let NULLs repeat.
METER = sa.Table(
    'meter', METADATA,
    sa.Column('key', _TEXT, primary_key=True),
    sa.Column('name', _TEXT, nullable=False),
    sa.Column('type', _TEXT, nullable=False),
    sa.Column('unit', _TEXT),
    sa.Column('resource_id', _TEXT, nullable=False),
    sa.Column('project_id', _TEXT),
    sa.Column('user_id', _TEXT),
    sa.Column('source', _TEXT),
    sa.Index('ix_meter_name', 'name'),
    sa.Index('ix_meter_resource', 'resource_id'),
    sa.Index('ix_meter_project', 'project_id'),
)

INVENTORY = sa.Table(
    'inventory', METADATA,
    sa.Column('id', _TEXT, primary_key=True),
    sa.Column('type', _TEXT, nullable=False),
    sa.Column('project_id', _TEXT),
    sa.Column('last_event_ts', sa.BigInteger(), nullable=False),
    sa.Column('data', _JSON, nullable=False),
    sa.Index('ix_inventory_type', 'type'),
    sa.Index('ix_inventory_project', 'project_id'),
)

LINK = sa.Table(
    'link', METADATA,
    sa.Column('source_id', _TEXT, primary_key=True),
    sa.Column('target_id', _TEXT, primary_key=True),
    sa.Column('link_type', _TEXT, primary_key=True),
    sa.Column('project_id', _TEXT),
    sa.Column('data', _JSON, nullable=False),
    sa.Index('ix_link_target', 'target_id'),
    sa.Index('ix_link_project', 'project_id'),
)

CHANNEL = sa.Table(
    'channel', METADATA,
    sa.Column('id', _TEXT, primary_key=True),
    sa.Column('data', _JSON, nullable=False),
)

SUBSCRIPTION = sa.Table(
    'subscription', METADATA,
    sa.Column('id', _TEXT, primary_key=True),
    sa.Column('channel_id', _TEXT),
    sa.Column('data', _JSON, nullable=False),
    sa.Index('ix_subscription_channel', 'channel_id'),
)

# Staging of record_samples: one per database session.
INCOMING = sa.Table(
    'sample_incoming', sa.MetaData(),
    *(sa.Column(c.name, c.type) for c in SAMPLE.c),
    sa.Column('meter_key', _TEXT),
    prefixes=['TEMPORARY'], postgresql_on_commit='DELETE ROWS',
)

SCHEMA = sa.Table(
    'calipso_schema', METADATA,
    sa.Column('version', sa.Integer(), nullable=False),
)

_METER_ORDER = ('name', 'resource_id', 'project_id', 'user_id', 'source',
                'type', 'unit')
_COLUMN_OF = {'timestamp': 'ts', 'recorded_at': 'recorded_ts'}
_SAMPLE_FIELDS = operator.attrgetter(
    'id', 'name', 'type', 'unit', 'volume', 'user_id', 'project_id',
    'resource_id', 'timestamp', 'recorded_at', 'resource_metadata', 'source',
    'message_id')
_TYPES = frozenset(sample_mod.TYPES)
# Meter keys kept by a store (its meters, usually far fewer).
_METER_KEYS_KEPT = 100_000
_STRING_COLUMNS = ('id', 'name', 'type', 'unit', 'user_id', 'project_id',
                   'resource_id', 'source', 'message_id')
_COMPARE = {'=': operator.eq, '!=': operator.ne, '<': operator.lt,
            '<=': operator.le, '>': operator.gt, '>=': operator.ge}
_INTEGER_KEY = re.compile(r'^-?[0-9]+$')
_LONG_DIGITS = re.compile(r'[0-9]{20}')
# \u0000 in JSON text, not an escaped backslash followed by "u0000".
_JSON_NUL = re.compile(r'(?<!\\)(?:\\\\)*\\u0000')
_LONG_DIGITS_BYTES = re.compile(rb'[0-9]{20}')


# --- values ----------------------------------------------------------------

def to_us(value):
    """Microseconds since the epoch of a timestamp (string or datetime)."""
    try:
        # What base.parse_timestamp reads, without its normalizing round
        # trip (this runs for every sample).
        ts = (datetime.datetime.fromisoformat(value)
              if isinstance(value, str) else value)
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=datetime.UTC)
        return (ts - EPOCH) // _MICROSECOND
    except (AttributeError, TypeError, ValueError):
        return (base.parse_timestamp(value) - EPOCH) // _MICROSECOND


def _now_us():
    return (datetime.datetime.now(datetime.UTC) - EPOCH) // _MICROSECOND


def from_us(us):
    return EPOCH + datetime.timedelta(microseconds=us)


def _iso(us):
    return from_us(us).isoformat()


def _json_default(value):
    return str(value)


def dumps(value):
    """JSON text of ``value`` (non-JSON values as their str); ValueError
    when there is none (a cycle, text that is not Unicode)."""
    try:
        return orjson.dumps(value, default=_json_default,
                            option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        pass
    # orjson refuses integers beyond 64 bits; json does not. Both refuse
    # nesting deeper than the interpreter's stack: a ValueError too.
    try:
        text = json.dumps(value, default=_json_default, allow_nan=False,
                          ensure_ascii=False)
    except RecursionError:
        raise ValueError('nested too deeply to encode')
    text.encode()
    return text


def loads(text):
    """The value of JSON text; integers beyond 64 bits stay exact (orjson
    would make them floats)."""
    long_digits = (_LONG_DIGITS if isinstance(text, str)
                   else _LONG_DIGITS_BYTES)
    if long_digits.search(text):
        return json.loads(text)
    return orjson.loads(text)


def _kind(value):
    if isinstance(value, bool):
        return bool
    if isinstance(value, (int, float)):
        return float
    return str


def _fields(expression):
    """Every field an expression tests."""
    if expression is None:
        return set()
    ((op, operand),) = expression.items()
    if op in ('and', 'or'):
        return set().union(*(_fields(e) for e in operand))
    if op == 'not':
        return _fields(operand)
    return set(operand)


def _meter_terms(expression):
    """The top-level conjuncts of ``expression`` that test only fields of
    a meter record (None: there are none). A resource's meters are read
    from its meter records under these terms: a caller limited to some
    projects (a conjunct on project_id) gets only the meters its projects'
    samples have, never those another project wrote on the same
    resource id."""
    if expression is None:
        return None
    ((op, operand),) = expression.items()
    conjuncts = operand if op == 'and' else [expression]
    terms = [term for term in conjuncts
             if _fields(term) <= set(METER_FIELDS)]
    if not terms:
        return None
    return terms[0] if len(terms) == 1 else {'and': terms}


def _check_limit(limit):
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise base.InvalidQuery(f'limit {limit!r} is not a positive integer')
    return limit


def _ascending(columns):
    """ORDER BY terms: NULL first on every engine."""
    return [c.asc().nulls_first() if c.nullable else c.asc()
            for c in columns]


def _glob(pattern):
    """The SQLite GLOB pattern (case-sensitive) of a LIKE pattern."""
    out = []
    for char in pattern:
        if char == '%':
            out.append('*')
        elif char == '_':
            out.append('?')
        elif char in '*?[':
            out.append(f'[{char}]')
        else:
            out.append(char)
    return ''.join(out)


def _group_sort_key(value):
    """Orders group values of any kind (None first)."""
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, value)
    if isinstance(value, (int, float)):
        return (2, value)
    if isinstance(value, str):
        return (3, value)
    return (4, dumps(value))


def _execute_plain(conn, statement):
    """(column names, rows as tuples) of ``statement``, without
    SQLAlchemy's per-value result processing: statistics can run to one
    row per period and resource, and their columns are plain numbers and
    strings already. The statement's compiled form comes from SQLAlchemy's
    cache."""
    cursor = conn.execute(statement).cursor
    names = tuple(column[0] for column in cursor.description)
    return names, cursor.fetchall()


class _StatisticsRow(base.Statistics):
    """Statistics read from their SQL row when first looked at.

    A long statistics answer (one row per period and resource) is returned
    as rows; each is decoded once, on first access, instead of all of them
    up front.
    """

    __slots__ = ('_row', '_decode', '_decoded')

    def __init__(self, row, decode):
        self._row = row
        self._decode = decode
        self._decoded = None

    def _fields(self):
        if self._decoded is None:
            self._decoded = self._decode(self._row)
        return self._decoded

    def _field(self, name):
        return self._fields().get(name)

    def as_dict(self):
        return _NO_STATISTICS | self._fields()


_NO_STATISTICS = dict.fromkeys(base.Statistics.FIELDS)


for _name in base.Statistics.FIELDS:
    setattr(_StatisticsRow, _name, property(
        lambda self, name=_name: self._field(name)))


def _statistics_decoder(names, period, origin_us, period_us, groupby,
                        wanted):
    """The function decoding one statistics result row (columns ``names``)
    into the fields of its Statistics. Column positions are looked up once
    per query and period bounds once per period: a long answer has a row
    per period and group."""
    at = {name: index for index, name in enumerate(names)}
    unit_at, first_at, last_at, count_at = (
        at['unit'], at['first_ts'], at['last_ts'], at['n'])
    bucket_at = at.get('bucket')
    groups = [(field, at[f'g{index}'], at.get(f'k{index}'))
              for index, field in enumerate(groupby)]
    simple = None if wanted else tuple(
        (name, at[name]) for name in ('min', 'max', 'avg', 'sum'))
    computed = []
    for func, param in wanted:
        if func == 'count':
            computed.append((func, None, count_at))
        elif func == 'stddev' and 'squares' in at:
            computed.append((func, 'squares', at['squares']))
        elif func == 'cardinality':
            computed.append((func, param, at[f'cardinality_{param}']))
        else:
            computed.append((func, None, at[func]))
    period = period or 0
    bounds = {}

    def decode(row):
        first_us, last_us = row[first_at], row[last_at]
        first = from_us(first_us)
        last = first if last_us == first_us else from_us(last_us)
        fields = {'unit': row[unit_at], 'aggregate': {}, 'period': period,
                  'duration_start': first, 'duration_end': last,
                  'duration': (last_us - first_us) / 1e6}
        if period_us:
            bucket = row[bucket_at]
            span = bounds.get(bucket)
            if span is None:
                start = origin_us + bucket * period_us
                span = bounds[bucket] = (from_us(start),
                                         from_us(start + period_us))
            fields['period_start'], fields['period_end'] = span
        else:
            fields['period_start'], fields['period_end'] = first, last
        fields['groupby'] = ({
            field: _group_value(row[value_at],
                                '' if kind_at is None else row[kind_at])
            for field, value_at, kind_at in groups} if groups else None)
        if simple:
            fields['count'] = row[count_at]
            for name, index in simple:
                fields[name] = row[index]
            return fields
        aggregate = fields['aggregate']
        for func, param, index in computed:
            value = row[index]
            if func == 'cardinality':
                aggregate[f'cardinality/{param}'] = value
                continue
            if param == 'squares':
                value = math.sqrt(max(value, 0.0) / row[count_at])
            elif func != 'count':
                value = float(value)
            fields[func] = aggregate[func] = value
        return fields

    return decode


def _group_value(value, kind):
    """A group's value from its SQL value and (SQLite metadata) kind."""
    if kind in ('', 'number', 'text'):
        return value
    if kind in ('true', 'false'):
        return kind == 'true'
    if kind is None:
        return None
    return loads(value)


# --- the query compiler ----------------------------------------------------

class _Compiler:
    """Complex-query expressions to SQL conditions on one dialect."""

    def __init__(self, postgres):
        self.postgres = postgres

    def where(self, expression, table=SAMPLE):
        if expression is None:
            return None
        return self._compile(expression, table, negated=False)

    def _compile(self, expression, table, negated):
        """A condition TRUE exactly when the expression holds (or, when
        ``negated``, exactly when it does not); FALSE or NULL otherwise."""
        ((op, operand),) = expression.items()
        if op in ('and', 'or'):
            parts = [self._compile(e, table, negated) for e in operand]
            return (sa.and_ if (op == 'and') != negated else sa.or_)(*parts)
        if op == 'not':
            return self._compile(operand, table, not negated)
        ((field, value),) = operand.items()
        if field.startswith(query_mod.METADATA_PREFIX):
            condition = self._metadata_term(op, field, value, table)
            return sa.not_(condition) if negated else condition
        column = table.c[_COLUMN_OF.get(field, field)]
        if field in query_mod.TIME_FIELDS:
            # Bound as BIGINT like the column: compared as numeric (what
            # _bind makes of a number) no index would serve them.
            condition = self._term(column, op, [
                sa.literal(to_us(v), sa.BigInteger()) for v in value]
                if op == 'in' else sa.literal(to_us(value), sa.BigInteger()))
        else:
            condition = self._term(column, op, value)
        if not negated:
            return condition
        if column.nullable:
            return sa.or_(column.is_(None), sa.not_(condition))
        return sa.not_(condition)

    def _term(self, expr, op, value):
        """``expr op value``; TRUE exactly when it holds for a non-NULL
        ``expr``."""
        if op == 'in':
            values = [self._bind(v) for v in value
                      if not self._unstorable(v)]
            return expr.in_(values) if values else sa.false()
        if op == 'like':
            if self._unstorable(value):
                return sa.false()
            if self.postgres:
                return expr.like(value.replace('\\', '\\\\'))
            return expr.op('GLOB', is_comparison=True)(_glob(value))
        if self._unstorable(value):
            # PostgreSQL text holds no NUL: nothing stored equals the
            # value, which sorts right after its part before the NUL.
            prefix = value.split('\x00', 1)[0]
            if op == '=':
                return sa.false()
            if op == '!=':
                return expr.is_not(None)
            if op in ('<', '<='):
                return expr <= prefix
            return expr > prefix
        return _COMPARE[op](expr, self._bind(value))

    def _unstorable(self, value):
        return (self.postgres and isinstance(value, str)
                and '\x00' in value)

    def _bind(self, value):
        if isinstance(value, sa.sql.ClauseElement):
            return value
        if isinstance(value, bool):
            return sa.literal(value, sa.Boolean())
        if not isinstance(value, (int, float)):
            return value
        if self.postgres:
            # JSON numbers are compared as numeric: exact for integers,
            # and a float is stored as its shortest repr.
            return decimal.Decimal(repr(value) if isinstance(value, float)
                                   else value)
        if isinstance(value, int) and abs(value) > _INT64:
            return float(value)
        return value

    # metadata --------------------------------------------------------------
    def _metadata_term(self, op, field, value, table):
        """A CASE that is TRUE or FALSE, never NULL (so NOT works)."""
        if op == 'in':
            by_kind = {}
            for item in value:
                by_kind.setdefault(_kind(item), []).append(item)
            return sa.or_(*(self._metadata_case(field, kind, 'in', items,
                                                table)
                            for kind, items in by_kind.items()))
        kind = str if op == 'like' else _kind(value)
        return self._metadata_case(field, kind, op, value, table)

    def _metadata_case(self, field, kind, op, value, table):
        is_kind, extracted = self._metadata_value(field, kind, table)
        return sa.case((is_kind, self._term(extracted, op, value)),
                       else_=sa.false())

    def _metadata_value(self, field, kind, table):
        """(condition: the key holds a value of ``kind``, its value)."""
        column = table.c.resource_metadata
        keys = self._keys(field)
        if self.postgres:
            node = column.op('#>')(_pg_path(keys))
            kind_name = {bool: 'boolean', float: 'number',
                         str: 'string'}[kind]
            is_kind = sa.and_(sa.func.jsonb_typeof(node) == kind_name,
                              *self._pg_object_guards(column, keys))
            if kind is str:
                extracted = sa.collate(
                    column.op('#>>', return_type=sa.Text)(_pg_path(keys)),
                    'C')
            elif kind is float:
                extracted = sa.cast(node, sa.Numeric())
            else:
                extracted = sa.cast(node, sa.Boolean())
            return is_kind, extracted
        path = _sqlite_path(keys)
        json_type = sa.func.json_type(column, path)
        types = {bool: ('true', 'false'), float: ('integer', 'real'),
                 str: ('text',)}[kind]
        return json_type.in_(types), sa.func.json_extract(column, path)

    def group_values(self, field):
        """Expressions grouping by a metadata key as the reference does:
        1 and 1.0 together, True and 1 and '1' apart, missing with null.

        PostgreSQL: the jsonb value (jsonb equality already does that).
        SQLite: its SQL value (numbers compare numerically) and its kind.
        """
        column = SAMPLE.c.resource_metadata
        keys = self._keys(field)
        if self.postgres:
            node = column.op('#>', return_type=postgresql.JSONB)(
                _pg_path(keys))
            guards = self._pg_object_guards(column, keys)
            if guards:
                node = sa.case((sa.and_(*guards), node))
            return [sa.func.coalesce(node,
                                     sa.literal_column("'null'::jsonb"))]
        path = _sqlite_path(keys)
        json_type = sa.func.json_type(column, path)
        kind = sa.case((json_type.in_(('integer', 'real')), 'number'),
                       (json_type == 'null', sa.null()), else_=json_type)
        return [sa.func.json_extract(column, path), kind]

    @staticmethod
    def _keys(field):
        if not query_mod.valid_metadata_key(field):
            raise base.InvalidQuery(f'invalid metadata field {field!r}')
        return field[len(query_mod.METADATA_PREFIX):].split('.')

    @staticmethod
    def _pg_object_guards(column, keys):
        """jsonb ``#>`` also indexes arrays by integer-like keys, where
        the Python reference only walks mappings."""
        return [sa.func.jsonb_typeof(column.op('#>')(_pg_path(keys[:i])))
                == 'object'
                for i in range(1, len(keys)) if _INTEGER_KEY.match(keys[i])]


def _pg_path(keys):
    # Keys match query._METADATA_KEY: no quote can reach the SQL text.
    return sa.literal_column(
        "'{" + ','.join(f'"{k}"' for k in keys) + "}'::text[]")


def _sqlite_path(keys):
    return sa.literal_column("'$" + ''.join(f'."{k}"' for k in keys) + "'")


def _unnest(*columns):
    """PostgreSQL: the rows of one array parameter per column (named as
    the column; JSON as text), in array order."""
    return sa.func.unnest(*(sa.bindparam(c.name, type_=postgresql.ARRAY(
        sa.Text() if isinstance(c.type, sa.JSON) else c.type))
        for c in columns)).table_valued(
        *(c.name for c in columns)).render_derived()


def _arrays_select(table):
    """PostgreSQL: the rows of ``table`` given as one array per column.
    unnest reads arrays in order: sent in primary key order, rows are
    written (and locked) in that order without an ORDER BY."""
    arrays = _unnest(*table.c)
    return sa.select(*(
        sa.cast(arrays.c[c.name], postgresql.JSONB).label(c.name)
        if isinstance(c.type, sa.JSON) else arrays.c[c.name]
        for c in table.c))


# Resources per upsert statement of record_samples on PostgreSQL.
_RESOURCE_CHUNK = 250


class _KnownSampleError(Exception):
    """A sample of the batch is stored already."""


def _by_id(item):
    """Sort key of an (index, sample): its id (samples without a string
    id are rejected anyway)."""
    sample_id = getattr(item[1], 'id', None)
    return sample_id if isinstance(sample_id, str) else ''


class _BatchRecords:
    """The resource and meter records of rows of new samples, added in
    id order."""

    __slots__ = ('latest', 'first_ts', 'meters')

    def __init__(self):
        self.latest = {}
        self.first_ts = {}
        self.meters = {}

    def add(self, row):
        resource_id, ts = row[7], row[10]
        kept = self.latest.get(resource_id)
        if kept is None:
            self.latest[resource_id] = row
            self.first_ts[resource_id] = ts
        else:
            # Ids ascend: at an equal ts the later id is the newer sample.
            if ts >= kept[10]:
                self.latest[resource_id] = row
            if ts < self.first_ts[resource_id]:
                self.first_ts[resource_id] = ts
        self.meters.setdefault(row[13], row)


# --- write errors ----------------------------------------------------------

# SQLSTATE classes of errors about the statement's data, not the server:
# data exception (22: out of range, bad encoding, NUL), integrity
# constraint violation (23) and program limit exceeded (54: index row
# too big, too many columns).
_DATA_SQLSTATE_CLASSES = ('22', '23', '54')
# Unique violations come from concurrent writers racing: retry them.
_RETRIED_SQLSTATES = ('23505',)
_DATA_SQLITE_ERRORS = ('SQLITE_TOOBIG', 'SQLITE_MISMATCH', 'SQLITE_RANGE',
                       'SQLITE_CONSTRAINT_NOTNULL', 'SQLITE_CONSTRAINT_CHECK')


def _refuses_the_data(exc, cause):
    """Whether a database error says the data can never be written (a
    StorageDataError), rather than that the server failed now."""
    if isinstance(exc, sa.exc.DataError) or type(cause).__name__ in (
            'DataError', 'ProgramLimitExceeded'):
        return True
    sqlstate = getattr(cause, 'sqlstate', None)
    if isinstance(sqlstate, str):
        return (sqlstate[:2] in _DATA_SQLSTATE_CLASSES
                and sqlstate not in _RETRIED_SQLSTATES)
    return getattr(cause, 'sqlite_errorname', None) in _DATA_SQLITE_ERRORS


# --- the driver ------------------------------------------------------------

class Connection(base.Connection):
    """SQLite (embedded file) or PostgreSQL store."""

    def __init__(self, conf, url):
        super().__init__(conf, url)
        parsed = sa.engine.make_url(url)
        self.postgres = parsed.get_backend_name() == 'postgresql'
        self._compiler = _Compiler(self.postgres)
        # One writer at a time per process on SQLite; an in-memory
        # database is one shared connection, so everything goes through.
        self._write_lock = None
        self._read_lock = None
        # Meter (the seven fields) -> its key, shared by the batches.
        self._meter_keys = {}
        options = dict(json_serializer=dumps, json_deserializer=loads)
        if self.postgres:
            if parsed.drivername == 'postgresql':
                parsed = parsed.set(drivername='postgresql+psycopg')
            options.update(pool_pre_ping=True, pool_size=5, max_overflow=10)
            self._insert = postgresql.insert
        elif parsed.get_backend_name() == 'sqlite':
            self._insert = sqlite_dialect.insert
            self._write_lock = threading.RLock()
            database = parsed.database
            connect_args = {'check_same_thread': False, 'timeout': 30}
            if not database or database == ':memory:':
                options['poolclass'] = sa.pool.StaticPool
                self._read_lock = self._write_lock
            elif not database.startswith('file:'):
                os.makedirs(os.path.dirname(os.path.abspath(database)),
                            exist_ok=True)
            options['connect_args'] = connect_args
        else:
            raise ValueError(f'{parsed.drivername!r} is not a SQLite or '
                             'PostgreSQL URL')
        self.engine = sa.create_engine(parsed, **options)
        # PostgreSQL reads in autocommit: no BEGIN and COMMIT round trips
        # around each query. At read committed, each statement of a
        # transaction saw its own snapshot anyway.
        self._read_engine = (self.engine.execution_options(
            isolation_level='AUTOCOMMIT') if self.postgres else self.engine)
        if not self.postgres:
            _sqlite_transactions(self.engine, in_memory=bool(
                self._read_lock))
        with self._transaction() as conn:
            ready = sa.inspect(conn).has_table(SCHEMA.name)
        if not ready:
            self.created_on_connect = self.upgrade()

    @contextlib.contextmanager
    def _transaction(self, write=False):
        """A connection in a transaction; database errors become
        StorageError, but a read's data errors InvalidQuery."""
        lock = self._write_lock if write else self._read_lock
        # The driver's own errors too: COPY talks to psycopg directly.
        dbapi = self.engine.dialect.loaded_dbapi
        errors = (sa.exc.DBAPIError, sa.exc.TimeoutError, dbapi.Error)
        with lock or contextlib.nullcontext():
            try:
                engine = self.engine if write else self._read_engine
                with engine.connect() as conn:
                    if write and not self.postgres:
                        conn.execution_options(calipso_write=True)
                    with conn.begin():
                        yield conn
            except errors as exc:
                cause = getattr(exc, 'orig', None) or exc
                if not write and isinstance(cause, dbapi.DataError):
                    # A value of a query the database cannot take (a
                    # number out of range): the question is wrong, not
                    # the store.
                    raise base.InvalidQuery(
                        'the store cannot evaluate the query: '
                        f'{str(cause).splitlines()[0]}') from exc
                kind = (base.StorageDataError
                        if _refuses_the_data(exc, cause)
                        else base.StorageUnavailableError)
                raise kind(f'{type(cause).__name__}: '
                           f'{" ".join(str(cause).split())}') from exc

    def upgrade(self):
        with self._transaction(write=True) as conn:
            if self.postgres:
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(
                    _UPGRADE_LOCK_KEY)))
            existing = set(sa.inspect(conn).get_table_names())
            METADATA.create_all(conn)
            version = conn.execute(sa.select(SCHEMA.c.version)).scalar()
            if version is None:
                conn.execute(SCHEMA.insert().values(version=SCHEMA_VERSION))
            elif version > SCHEMA_VERSION:
                raise base.StorageError(
                    f'the database schema is version {version}, newer than '
                    f'this code ({SCHEMA_VERSION})')
        created = sorted(set(METADATA.tables) - existing)
        if not existing & set(METADATA.tables):
            return (f'created schema version {SCHEMA_VERSION} '
                    f'({len(created)} tables: {", ".join(created)})')
        if created:
            return (f'schema version {SCHEMA_VERSION}: added the tables '
                    f'{", ".join(created)}')
        return f'schema version {SCHEMA_VERSION} is up to date'

    def ping(self):
        with self._transaction() as conn:
            conn.execute(sa.text('SELECT 1'))

    def close(self):
        self.engine.dispose()

    # --- samples ------------------------------------------------------------
    def record_samples(self, samples):
        rejected = []
        rows = self._rows(samples, rejected)
        first = next(rows, None)
        stored = 0
        if first is not None:
            rows = itertools.chain((first,), rows)
            if self.postgres:
                stored = self._record_postgres(rows)
            else:
                with self._transaction(write=True) as conn:
                    stored = self._record_staged(conn, list(rows))
        rejected.sort(key=operator.itemgetter(0))
        return base.RecordResult(
            stored, [(sample, reason) for _, sample, reason in rejected])

    def _rows(self, samples, rejected):
        """The rows of the valid samples in id order (the order concurrent
        writers lock in), the first valid sample of each id; ``rejected``
        gets (index, sample, reason) of the others.

        A generator: PostgreSQL copies each row as it is made, while the
        server stores the ones before.
        """
        now_us = _now_us()
        previous = None
        for index, sample in sorted(enumerate(samples), key=_by_id):
            try:
                row = self._row(sample, now_us)
            except ValueError as exc:
                reason = str(exc)
                # The caller names the message of the sample.
                LOG.debug('Sample %s rejected: %s',
                          getattr(sample, 'id', None), reason)
                rejected.append((index, sample, reason))
                continue
            if row[0] != previous:
                previous = row[0]
                yield row

    def _record_staged(self, conn, rows):
        """Rows through INCOMING, merged in SQL: any mix of new and known
        samples."""
        conn.execute(sa.schema.CreateTable(INCOMING, if_not_exists=True))
        self._stage(conn, rows)
        return self._merge_incoming(conn)

    def _record_postgres(self, rows):
        """Usually every sample of a batch is new: COPY the rows straight
        into sample, then merge their resources and meters. A known id (a
        redelivery) fails the COPY: that transaction rolls back, having
        written nothing, and another one takes the staged path. (Not a
        savepoint: its two round trips cost every batch some 5%.)"""
        written = []
        try:
            with self._transaction(write=True) as conn:
                records = self._copy_new_samples(conn, rows, written)
                self._upsert_records(conn, records)
            return len(written)
        except _KnownSampleError:
            written.extend(rows)
        with self._transaction(write=True) as conn:
            return self._record_staged(conn, written)

    def _copy_new_samples(self, conn, rows, written):
        """COPY ``rows`` into sample, each appended to ``written`` as it
        goes; their resource and meter records. _KnownSampleError when
        one is stored already.

        Text, not binary: the server stores text rows as they arrive
        (binary ones a thousand at a time) while the next ones are made.
        """
        records = _BatchRecords()
        width = len(SAMPLE.c)
        columns = ', '.join(c.name for c in SAMPLE.c)
        cursor = conn.connection.driver_connection.cursor()
        try:
            with cursor.copy(
                    f'COPY {SAMPLE.name} ({columns}) FROM STDIN') as copy:
                for row in rows:
                    written.append(row)
                    records.add(row)
                    copy.write_row(row[:width])
        except self.engine.dialect.loaded_dbapi.errors.UniqueViolation as exc:
            raise _KnownSampleError() from exc
        return records

    def _upsert_records(self, conn, records):
        """The resources and meters of a batch of new samples.

        One pipeline: which meters are missing (only their keys are sent:
        usually every meter is known), then the resources, a chunk per
        statement so that the server merges one while the next is encoded;
        then the missing meters, if any.
        """
        missing_sql, resources_sql, meters_sql = self._records_sql
        driver = conn.connection.driver_connection
        missing = driver.cursor()
        resource_ids = sorted(records.latest)
        with driver.pipeline():
            missing.execute(missing_sql, {'key': sorted(records.meters)})
            for start in range(0, len(resource_ids), _RESOURCE_CHUNK):
                chunk = resource_ids[start:start + _RESOURCE_CHUNK]
                newest = [records.latest[r] for r in chunk]
                driver.cursor().execute(resources_sql, {
                    'resource_id': chunk,
                    'project_id': [row[6] for row in newest],
                    'user_id': [row[5] for row in newest],
                    'source': [row[8] for row in newest],
                    'first_ts': [records.first_ts[r] for r in chunk],
                    'last_ts': [row[10] for row in newest],
                    'latest_id': [row[0] for row in newest],
                    'metadata': [row[12] for row in newest]})
        keys = sorted(key for (key,) in missing.fetchall())
        if keys:
            meters = [records.meters[key] for key in keys]
            driver.cursor().execute(meters_sql, {
                'key': keys, 'name': [row[1] for row in meters],
                'type': [row[2] for row in meters],
                'unit': [row[3] for row in meters],
                'resource_id': [row[7] for row in meters],
                'project_id': [row[6] for row in meters],
                'user_id': [row[5] for row in meters],
                'source': [row[8] for row in meters]})

    @functools.cached_property
    def _records_sql(self):
        """PostgreSQL: the meter keys missing from given ones, the resource
        upsert and the meter insert, taking one array per column, as SQL
        for psycopg with binary parameters (the text form of an array
        escapes every quote of the JSON, slowly)."""
        keys = _unnest(METER.c.key)
        statements = (
            sa.select(keys.c.key).where(
                ~sa.exists().where(METER.c.key == keys.c.key)),
            self._resources_merge(_arrays_select(RESOURCE)),
            self._insert(METER).from_select(
                [c.name for c in METER.c], _arrays_select(METER),
            ).on_conflict_do_nothing(index_elements=['key']))
        dialect = self.engine.dialect
        return tuple(re.sub(r'%\((\w+)\)s', r'%(\1)b',
                            str(statement.compile(dialect=dialect)))
                     for statement in statements)

    def _row(self, sample, now_us):
        """The INCOMING row of a sample, or ValueError (the reason).

        One pass over the usual sample (ASCII text, a float volume, a
        dict of metadata); any other goes through every check, which
        names what is wrong or lets it through (Unicode text, an int).
        """
        try:
            (sample_id, name, type_, unit, volume, user_id, project_id,
             resource_id, timestamp, recorded_at, metadata, source,
             message_id) = _SAMPLE_FIELDS(sample)
        except AttributeError:
            self._check_sample(sample)
            raise
        try:
            text = ''.join([value for value in (
                sample_id, name, type_, unit, user_id, project_id,
                resource_id, source, message_id) if value is not None])
        except TypeError:
            text = None
        if (text is None or not text.isascii() or '\x00' in text
                or not (sample_id and name and resource_id)
                or type_ not in _TYPES or type(volume) is not float
                or not math.isfinite(volume)
                or (metadata is not None and type(metadata) is not dict)):
            self._check_sample(sample)
            volume = float(volume)
        try:
            ts = to_us(timestamp)
        except (TypeError, ValueError):
            raise ValueError(f'timestamp {timestamp!r} is not ISO 8601')
        if recorded_at is None:
            recorded_ts = now_us
        else:
            try:
                recorded_ts = to_us(recorded_at)
            except (TypeError, ValueError):
                raise ValueError(f'recorded_at {recorded_at!r} is not '
                                 'ISO 8601')
        try:
            metadata = dumps(metadata or {})
        except (TypeError, ValueError) as exc:
            raise ValueError(f'resource_metadata is not JSON: {exc}')
        if self.postgres and '\\u0000' in metadata and _JSON_NUL.search(
                metadata):
            raise ValueError('resource_metadata holds a NUL character, '
                             'which PostgreSQL cannot store')
        meter = (name, type_, unit, resource_id, project_id, user_id, source)
        key = self._meter_keys.get(meter)
        if key is None:
            if len(self._meter_keys) >= _METER_KEYS_KEPT:
                self._meter_keys.clear()
            key = self._meter_keys[meter] = hashlib.sha1(
                orjson.dumps(meter)).hexdigest()
        return (sample_id, name, type_, unit, volume, user_id, project_id,
                resource_id, source, message_id, ts, recorded_ts, metadata,
                key)

    def _check_sample(self, sample):
        """ValueError naming what cannot be stored in ``sample`` (its
        timestamps aside)."""
        reason = base.validate_sample(sample, timestamp=False)
        if reason:
            raise ValueError(reason)
        for field in _STRING_COLUMNS:
            value = getattr(sample, field)
            if value is not None:
                if not isinstance(value, str):
                    raise ValueError(f'{field} is a {type(value).__name__}, '
                                     'not a string')
                if not value.isascii():
                    try:
                        value.encode()
                    except UnicodeEncodeError:
                        raise ValueError(f'{field} is not valid Unicode')
                if self.postgres and '\x00' in value:
                    raise ValueError(f'{field} holds a NUL character, '
                                     'which PostgreSQL cannot store')

    def _stage(self, conn, rows):
        """Load rows into INCOMING: COPY on PostgreSQL, one executemany on
        SQLite (multi-row VALUES cost more to build than to run)."""
        if self.postgres:
            cursor = conn.connection.driver_connection.cursor()
            with cursor.copy(f'COPY {INCOMING.name} FROM STDIN') as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ', '.join('?' * len(INCOMING.c))
            conn.exec_driver_sql(
                f'INSERT INTO {INCOMING.name} VALUES ({marks})', rows)

    def _merge_incoming(self, conn):
        """INCOMING into sample, resource and meter; how many samples were
        new. Resources and meters take only the samples inserted, so a
        redelivered batch touches nothing. Set-based SQL in primary key
        order: concurrent writers lock rows in the same order."""
        new = INCOMING.c
        columns = [c.name for c in SAMPLE.c]
        insert = self._insert(SAMPLE).from_select(
            columns, sa.select(*(new[c] for c in columns)).where(sa.true())
            .order_by(new.id)).on_conflict_do_nothing(index_elements=['id'])
        if self.postgres:
            return self._merge_statement(conn, insert)
        # SQLite has no DML in WITH: drop the known samples first (the
        # write lock is held: nobody inserts them meanwhile).
        conn.execute(INCOMING.delete().where(
            sa.exists().where(SAMPLE.c.id == new.id)))
        stored = conn.execute(
            insert.execution_options(preserve_rowcount=True)).rowcount
        if stored:
            conn.execute(self._resources_upsert(INCOMING))
            conn.execute(self._meters_insert(INCOMING))
        conn.execute(INCOMING.delete())
        return stored

    def _merge_statement(self, conn, insert):
        """PostgreSQL: one statement in which what ``insert`` returns
        feeds the resource and meter maintenance."""
        inserted = insert.returning(*SAMPLE.c).cte('inserted')
        return conn.execute(
            sa.select(sa.func.count()).select_from(inserted)
            .add_cte(self._resources_upsert(inserted).cte('resources'))
            .add_cte(self._meters_insert(inserted).cte('meters'))
        ).scalar()

    def _resources_upsert(self, rows):
        """The first timestamp and latest sample of each resource of
        ``rows`` (INCOMING or the inserted samples) merged into its
        record."""
        ranked = sa.select(
            rows.c.resource_id, rows.c.project_id, rows.c.user_id,
            rows.c.source,
            sa.func.min(rows.c.ts).over(partition_by=rows.c.resource_id)
            .label('first_ts'),
            rows.c.ts.label('last_ts'), rows.c.id.label('latest_id'),
            rows.c.resource_metadata.label('metadata'),
            sa.func.row_number().over(
                partition_by=rows.c.resource_id,
                order_by=(rows.c.ts.desc(), rows.c.id.desc())).label('rank'),
        ).subquery()
        latest = sa.select(*(c for c in ranked.c if c.name != 'rank')).where(
            ranked.c.rank == 1).order_by(ranked.c.resource_id)
        return self._resources_merge(latest)

    def _resources_merge(self, latest):
        """``latest`` (one row per resource: the RESOURCE columns) merged
        into the resource records."""
        statement = self._insert(RESOURCE).from_select(
            [c.name for c in latest.selected_columns], latest)
        excluded = statement.excluded
        newer = (sa.tuple_(excluded.last_ts, excluded.latest_id)
                 > sa.tuple_(RESOURCE.c.last_ts, RESOURCE.c.latest_id))
        least = sa.func.least if self.postgres else sa.func.min
        changes = {'first_ts': least(RESOURCE.c.first_ts,
                                     excluded.first_ts)}
        for name in ('project_id', 'user_id', 'source', 'last_ts',
                     'latest_id', 'metadata'):
            changes[name] = sa.case((newer, excluded[name]),
                                    else_=RESOURCE.c[name])
        return statement.on_conflict_do_update(
            index_elements=['resource_id'], set_=changes)

    def _meters_insert(self, rows):
        """The meters of ``rows`` (INCOMING or the inserted samples), with
        their key from INCOMING."""
        new = INCOMING.c
        meters = sa.select(new.meter_key, *(new[f] for f in METER_FIELDS))
        meters = meters.where(sa.true() if rows is INCOMING else new.id.in_(
            sa.select(rows.c.id)))
        return self._insert(METER).from_select(
            ['key', *METER_FIELDS],
            meters.distinct().order_by(new.meter_key),
        ).on_conflict_do_nothing(index_elements=['key'])

    def _json_param(self, name):
        """A bind parameter taking JSON text (serialized once, by us)."""
        param = sa.bindparam(name, type_=sa.Text())
        return sa.cast(param, postgresql.JSONB()) if self.postgres else param

    def _sample_of(self, row):
        return sample_mod.Sample(
            id=row.id, name=row.name, type=row.type, unit=row.unit,
            volume=row.volume, user_id=row.user_id,
            project_id=row.project_id, resource_id=row.resource_id,
            source=row.source, message_id=row.message_id,
            timestamp=_iso(row.ts), recorded_at=_iso(row.recorded_ts),
            resource_metadata=row.resource_metadata)

    def _where(self, expression, table=SAMPLE):
        if expression is not None:
            expression = query_mod.validate(expression)
        return self._compiler.where(expression, table)

    def query_samples(self, filter_expr=None, orderby=None, limit=None):
        where = self._where(filter_expr)
        limit = _check_limit(limit)
        if limit == 0:
            return []
        ordering = query_mod.validate_orderby(orderby) or [('timestamp',
                                                             'desc')]
        statement = sa.select(SAMPLE)
        if where is not None:
            statement = statement.where(where)
        clauses = []
        for field, direction in ordering:
            column = SAMPLE.c[_COLUMN_OF.get(field, field)]
            clause = column.asc() if direction == 'asc' else column.desc()
            if column.nullable:
                # NULL sorts lowest on every engine.
                clause = (clause.nulls_first() if direction == 'asc'
                          else clause.nulls_last())
            clauses.append(clause)
        if 'id' not in {field for field, _ in ordering}:
            clauses.append(SAMPLE.c.id.asc())
        statement = statement.order_by(*clauses).limit(limit)
        with self._transaction() as conn:
            return [self._sample_of(row) for row in conn.execute(statement)]

    # --- meters and resources -----------------------------------------------
    def get_meters(self, sample_filter=None, limit=None, unique=False):
        """Distinct meters in (name, resource, project, user, source,
        type, unit) order; ``unique``: the first of each name."""
        expression = (sample_filter.expression()
                      if sample_filter is not None else None)
        limit = _check_limit(limit)
        if limit == 0:
            return []
        # The meter table holds the distinct tuples of all samples: exact
        # whenever the filter only tests fields of those tuples.
        table = (METER if _fields(expression) <= set(METER_FIELDS)
                 else SAMPLE)
        where = self._where(expression, table)
        columns = [table.c[f] for f in _METER_ORDER]
        if unique:
            ranked = sa.select(*columns, sa.func.row_number().over(
                partition_by=table.c.name,
                order_by=_ascending(columns[1:])).label('rank'))
            if where is not None:
                ranked = ranked.where(where)
            ranked = ranked.subquery()
            statement = sa.select(*(ranked.c[f] for f in _METER_ORDER)
                                  ).where(ranked.c.rank == 1)
            order = [ranked.c.name]
        else:
            statement = sa.select(*columns).distinct()
            if where is not None:
                statement = statement.where(where)
            order = _ascending(columns)
        statement = statement.order_by(*order).limit(limit)
        with self._transaction() as conn:
            return [base.Meter(**row._mapping)
                    for row in conn.execute(statement)]

    def get_resources(self, sample_filter=None, limit=None):
        """Resources in id order; ``meters``: every meter seen for the
        resource."""
        expression = (sample_filter.expression()
                      if sample_filter is not None else None)
        limit = _check_limit(limit)
        if limit == 0:
            return []
        if _fields(expression) <= {'resource_id'}:
            # Every sample of a selected resource matches: the resource
            # table already holds the answer.
            where = self._where(expression, RESOURCE)
            statement = sa.select(
                RESOURCE.c.resource_id, RESOURCE.c.project_id,
                RESOURCE.c.user_id, RESOURCE.c.source, RESOURCE.c.first_ts,
                RESOURCE.c.last_ts, RESOURCE.c.metadata)
            if where is not None:
                statement = statement.where(where)
            order = RESOURCE.c.resource_id
        else:
            where = self._where(expression)
            inner = sa.select(
                SAMPLE.c.resource_id, SAMPLE.c.project_id, SAMPLE.c.user_id,
                SAMPLE.c.source,
                sa.func.min(SAMPLE.c.ts).over(
                    partition_by=SAMPLE.c.resource_id).label('first_ts'),
                SAMPLE.c.ts.label('last_ts'),
                SAMPLE.c.resource_metadata.label('metadata'),
                sa.func.row_number().over(
                    partition_by=SAMPLE.c.resource_id,
                    order_by=(SAMPLE.c.ts.desc(), SAMPLE.c.id.desc()),
                ).label('rank')).where(where).subquery()
            statement = sa.select(
                *(c for c in inner.c if c.name != 'rank')).where(
                inner.c.rank == 1)
            order = inner.c.resource_id
        statement = statement.order_by(order).limit(limit)
        meter_where = self._where(_meter_terms(expression), METER)
        with self._transaction() as conn:
            rows = conn.execute(statement).all()
            meters = self._meters_of(conn, [row.resource_id for row in rows],
                                     meter_where)
        return [base.Resource(
            row.resource_id, row.project_id, row.user_id, row.source,
            from_us(row.first_ts), from_us(row.last_ts), row.metadata,
            meters.get(row.resource_id, ())) for row in rows]

    @staticmethod
    def _meters_of(conn, resource_ids, where=None):
        """The meters of these resources (``where``: only those meter
        records, e.g. of the projects a caller may see)."""
        columns = [METER.c[f] for f in _METER_ORDER]
        statement = sa.select(*columns).where(
            METER.c.resource_id.in_(sa.bindparam('ids', expanding=True))
        ).order_by(*_ascending(columns))
        if where is not None:
            statement = statement.where(where)
        meters = {}
        for start in range(0, len(resource_ids), 500):
            for row in conn.execute(
                    statement, {'ids': resource_ids[start:start + 500]}):
                meters.setdefault(row.resource_id, []).append(
                    base.Meter(**row._mapping))
        return meters

    # --- statistics ---------------------------------------------------------
    def get_statistics(self, sample_filter, period=None, groupby=None,
                       aggregates=None):
        period, groupby, wanted = base.check_statistics_args(
            period, groupby, aggregates)
        period_us = None
        if period:
            period_us = round(period * 1_000_000)
            if period_us < 1:
                raise base.InvalidQuery('period is shorter than a '
                                        'microsecond')
        expression = (sample_filter.expression()
                      if sample_filter is not None else None)
        where = self._where(expression)
        with self._transaction() as conn:
            origin_us = None
            if period_us:
                if sample_filter is not None and (
                        sample_filter.start_timestamp is not None):
                    origin_us = to_us(sample_filter.start_timestamp)
                else:
                    first = sa.select(sa.func.min(SAMPLE.c.ts))
                    if where is not None:
                        first = first.where(where)
                    origin_us = conn.execute(first).scalar()
                    if origin_us is None:
                        return []
            in_sql_order = all(f in base.GROUPBY_FIELDS for f in groupby)
            statement = self._statistics_query(
                where, origin_us, period_us, groupby, wanted, in_sql_order)
            names, rows = _execute_plain(conn, statement)
        decode = _statistics_decoder(names, period, origin_us, period_us,
                                     groupby, wanted)
        if in_sql_order:
            return [_StatisticsRow(row, decode) for row in rows]
        results = [base.Statistics(**decode(row)) for row in rows]
        # Without a period every group covers the same (whole) range.
        results.sort(key=lambda s: (
            s.period_start if period_us else 0,
            tuple(_group_sort_key(s.groupby[f]) for f in groupby),
            _group_sort_key(s.unit)))
        return results

    def _statistics_query(self, where, origin_us, period_us, groupby,
                          wanted, in_sql_order=False):
        """One row per (bucket, group, unit), every aggregate in SQL;
        ``in_sql_order``: sorted by SQL too (None first, code points)."""
        columns = [SAMPLE.c.ts, SAMPLE.c.volume, SAMPLE.c.unit]
        keys = []
        if period_us:
            columns.append(((SAMPLE.c.ts - sa.literal(origin_us,
                                                      sa.BigInteger()))
                            // sa.literal(period_us, sa.BigInteger())
                            ).label('bucket'))
            keys.append('bucket')
        for index, field in enumerate(groupby):
            exprs = ([SAMPLE.c[field]] if field in base.GROUPBY_FIELDS
                     else self._compiler.group_values(field))
            # g: the value; k (SQLite): its kind.
            for part, expr in zip('gk', exprs, strict=False):
                columns.append(expr.label(f'{part}{index}'))
                keys.append(f'{part}{index}')
        keys.append('unit')
        for param in sorted({p for f, p in wanted if f == 'cardinality'}):
            columns.append(SAMPLE.c[param].label(param))
        sqlite_stddev = not self.postgres and any(
            func == 'stddev' for func, _ in wanted)
        if sqlite_stddev:
            partition = [c for c in columns if c.name in keys]
            columns.append(sa.func.avg(SAMPLE.c.volume).over(
                partition_by=partition).label('mean'))
        inner = sa.select(*columns)
        if where is not None:
            inner = inner.where(where)
        inner = inner.subquery()
        volume = inner.c.volume
        outputs = [inner.c[k] for k in keys] + [
            sa.func.min(inner.c.ts).label('first_ts'),
            sa.func.max(inner.c.ts).label('last_ts'),
            sa.func.count().label('n')]
        simple = {'min': sa.func.min, 'max': sa.func.max,
                  'avg': sa.func.avg, 'sum': sa.func.sum}
        functions = wanted or [(f, None) for f in simple]
        for func, param in dict.fromkeys(functions):
            if func in simple:
                outputs.append(simple[func](volume).label(func))
            elif func == 'stddev':
                if sqlite_stddev:
                    deviation = volume - inner.c.mean
                    outputs.append(sa.func.sum(deviation * deviation)
                                   .label('squares'))
                else:
                    outputs.append(sa.func.stddev_pop(volume).label(func))
            elif func == 'cardinality':
                # NULL (an unset id) is not a value: SQL's COUNT DISTINCT.
                outputs.append(sa.func.count(sa.distinct(inner.c[param]))
                               .label(f'cardinality_{param}'))
        statement = sa.select(*outputs).group_by(*(inner.c[k] for k in keys))
        if in_sql_order:
            statement = statement.order_by(
                *(inner.c[k].asc().nulls_first() for k in keys))
        return statement

    # --- expiry -------------------------------------------------------------
    def clear_expired_samples(self, ttl):
        cutoff = _now_us() - round(ttl * 1_000_000)
        with self._transaction(write=True) as conn:
            affected = [r for (r,) in conn.execute(
                sa.select(RESOURCE.c.resource_id).where(
                    RESOURCE.c.first_ts < cutoff))]
            deleted = conn.execute(SAMPLE.delete().where(
                SAMPLE.c.ts < cutoff)).rowcount
            if affected:
                self._refresh_resources(conn, affected)
        LOG.info('Deleted %d samples older than %ss', deleted, ttl)
        return deleted

    def _refresh_resources(self, conn, resource_ids):
        """After expiry: first timestamps, then resources and meters
        without samples left."""
        param = sa.bindparam('ids', expanding=True)
        oldest = (sa.select(sa.func.min(SAMPLE.c.ts))
                  .where(SAMPLE.c.resource_id == RESOURCE.c.resource_id)
                  .scalar_subquery())
        for start in range(0, len(resource_ids), 500):
            ids = {'ids': resource_ids[start:start + 500]}
            conn.execute(RESOURCE.delete().where(
                RESOURCE.c.resource_id.in_(param),
                ~sa.exists().where(
                    SAMPLE.c.resource_id == RESOURCE.c.resource_id)), ids)
            conn.execute(RESOURCE.update().where(
                RESOURCE.c.resource_id.in_(param)).values(
                first_ts=oldest), ids)
            same = [SAMPLE.c[f].is_not_distinct_from(METER.c[f])
                    if METER.c[f].nullable else SAMPLE.c[f] == METER.c[f]
                    for f in METER_FIELDS]
            conn.execute(METER.delete().where(
                METER.c.resource_id.in_(param),
                ~sa.exists().where(*same)), ids)

    # --- inventory ----------------------------------------------------------
    def upsert_inventory(self, objects):
        newest = {}
        for obj in objects:
            for field in ('id', 'type'):
                if not isinstance(obj.get(field), str) or not obj[field]:
                    raise ValueError(f'inventory object {obj!r}: {field} is '
                                     'missing or not a string')
            try:
                last = to_us(obj.get('last_event_at'))
            except (TypeError, ValueError):
                raise ValueError(f'inventory object {obj["id"]}: '
                                 f'last_event_at {obj.get("last_event_at")!r}'
                                 ' is not an ISO 8601 timestamp')
            kept = newest.get(obj['id'])
            if kept is None or last >= kept['last_event_ts']:
                newest[obj['id']] = {
                    'id': obj['id'], 'type': obj['type'],
                    'project_id': obj.get('project_id'),
                    'last_event_ts': last, 'data': dumps(obj)}
        if not newest:
            return 0
        values = {c.name: sa.bindparam(c.name, type_=c.type)
                  for c in INVENTORY.c if c.name != 'data'}
        values['data'] = self._json_param('data')
        statement = self._insert(INVENTORY).values(values)
        new = statement.excluded
        statement = statement.on_conflict_do_update(
            index_elements=['id'],
            set_={c: new[c] for c in ('type', 'project_id', 'last_event_ts',
                                      'data')},
            where=new.last_event_ts >= INVENTORY.c.last_event_ts,
        ).returning(INVENTORY.c.id)
        with self._transaction(write=True) as conn:
            return len(conn.execute(
                statement, [newest[k] for k in sorted(newest)]).all())

    def get_inventory(self, ids=None, types=None, project_ids=None,
                      limit=None):
        limit = _check_limit(limit)
        if limit == 0:
            return []
        statement = sa.select(INVENTORY.c.data).order_by(INVENTORY.c.id)
        for column, values in ((INVENTORY.c.id, ids),
                               (INVENTORY.c.type, types),
                               (INVENTORY.c.project_id, project_ids)):
            if values is not None:
                statement = statement.where(column.in_(list(values)))
        with self._transaction() as conn:
            return list(conn.execute(statement.limit(limit)).scalars())

    def delete_inventory(self, ids):
        ids = list(ids)
        if not ids:
            return 0
        with self._transaction(write=True) as conn:
            conn.execute(LINK.delete().where(sa.or_(
                LINK.c.source_id.in_(ids), LINK.c.target_id.in_(ids))))
            return conn.execute(INVENTORY.delete().where(
                INVENTORY.c.id.in_(ids))).rowcount

    def upsert_links(self, links):
        rows = {}
        for link in links:
            key = tuple(link.get(f) for f in ('source_id', 'target_id',
                                              'link_type'))
            if not all(isinstance(k, str) and k for k in key):
                raise ValueError(f'link {link!r} needs source_id, target_id '
                                 'and link_type strings')
            rows[key] = {'source_id': key[0], 'target_id': key[1],
                         'link_type': key[2],
                         'project_id': link.get('project_id'),
                         'data': dumps(link)}
        if not rows:
            return 0
        values = {c.name: sa.bindparam(c.name, type_=c.type)
                  for c in LINK.c if c.name != 'data'}
        values['data'] = self._json_param('data')
        statement = self._insert(LINK).values(values)
        statement = statement.on_conflict_do_update(
            index_elements=['source_id', 'target_id', 'link_type'],
            set_={'project_id': statement.excluded.project_id,
                  'data': statement.excluded.data})
        with self._transaction(write=True) as conn:
            conn.execute(statement, [rows[k] for k in sorted(rows)])
        return len(rows)

    @staticmethod
    def _link_conditions(source_id, target_id, link_type):
        return [column == value for column, value in (
            (LINK.c.source_id, source_id), (LINK.c.target_id, target_id),
            (LINK.c.link_type, link_type)) if value is not None]

    def get_links(self, source_id=None, target_id=None, link_type=None,
                  project_ids=None):
        statement = sa.select(LINK.c.data).where(
            *self._link_conditions(source_id, target_id, link_type))
        if project_ids is not None:
            statement = statement.where(
                LINK.c.project_id.in_(list(project_ids)))
        statement = statement.order_by(LINK.c.source_id, LINK.c.target_id,
                                       LINK.c.link_type)
        with self._transaction() as conn:
            return list(conn.execute(statement).scalars())

    def delete_links(self, source_id=None, target_id=None, link_type=None):
        conditions = self._link_conditions(source_id, target_id, link_type)
        if not conditions:
            raise ValueError('delete_links needs source_id, target_id or '
                             'link_type')
        with self._transaction(write=True) as conn:
            return conn.execute(LINK.delete().where(*conditions)).rowcount

    # --- channels and subscriptions -----------------------------------------
    def create_channel(self, channel):
        return self._create(CHANNEL, 'channel', channel, {})

    def _create(self, table, what, obj, columns):
        if not isinstance(obj.get('id'), str) or not obj['id']:
            raise ValueError(f'{what} {obj!r}: id is missing or not a '
                             'string')
        statement = (self._insert(table)
                     .values(id=obj['id'], data=obj, **columns)
                     .on_conflict_do_nothing(index_elements=['id'])
                     .execution_options(preserve_rowcount=True))
        with self._transaction(write=True) as conn:
            if not conn.execute(statement).rowcount:
                raise base.StorageError(f'{what} {obj["id"]} exists')
        return loads(dumps(obj))

    def get_channels(self, ids=None):
        statement = sa.select(CHANNEL.c.data).order_by(CHANNEL.c.id)
        if ids is not None:
            statement = statement.where(CHANNEL.c.id.in_(list(ids)))
        with self._transaction() as conn:
            return list(conn.execute(statement).scalars())

    def update_channel(self, channel_id, changes):
        with self._transaction(write=True) as conn:
            data = conn.execute(
                sa.select(CHANNEL.c.data).where(CHANNEL.c.id == channel_id)
                .with_for_update()).scalar()
            if data is None:
                return None
            data.update(changes)
            data['id'] = channel_id
            conn.execute(CHANNEL.update().where(
                CHANNEL.c.id == channel_id).values(data=data))
        return loads(dumps(data))

    def delete_channel(self, channel_id):
        with self._transaction(write=True) as conn:
            conn.execute(SUBSCRIPTION.delete().where(
                SUBSCRIPTION.c.channel_id == channel_id))
            return bool(conn.execute(CHANNEL.delete().where(
                CHANNEL.c.id == channel_id)).rowcount)

    def create_subscription(self, subscription):
        return self._create(SUBSCRIPTION, 'subscription', subscription,
                     {'channel_id': subscription.get('channel_id')})

    def get_subscriptions(self, channel_id=None, ids=None):
        statement = sa.select(SUBSCRIPTION.c.data).order_by(
            SUBSCRIPTION.c.id)
        if channel_id is not None:
            statement = statement.where(
                SUBSCRIPTION.c.channel_id == channel_id)
        if ids is not None:
            statement = statement.where(SUBSCRIPTION.c.id.in_(list(ids)))
        with self._transaction() as conn:
            return list(conn.execute(statement).scalars())

    def delete_subscription(self, subscription_id):
        with self._transaction(write=True) as conn:
            return bool(conn.execute(SUBSCRIPTION.delete().where(
                SUBSCRIPTION.c.id == subscription_id)).rowcount)


def _sqlite_transactions(engine, in_memory):
    """Let SQLAlchemy, not the sqlite3 module, issue BEGIN: writes take
    the write lock up front (BEGIN IMMEDIATE), so two writers wait for
    each other instead of failing to upgrade a read lock."""

    @event.listens_for(engine, 'connect')
    def _connect(dbapi_connection, record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not in_memory:
            cursor.execute('PRAGMA journal_mode=WAL')
            cursor.execute('PRAGMA synchronous=NORMAL')
        cursor.close()

    @event.listens_for(engine, 'begin')
    def _begin(conn):
        write = conn.get_execution_options().get('calipso_write')
        conn.exec_driver_sql('BEGIN IMMEDIATE' if write else 'BEGIN')
