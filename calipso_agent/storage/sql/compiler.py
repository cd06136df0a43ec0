"""Complex-query expressions to SQL conditions, one compiler per dialect.

The conditions reproduce ``query.matches``: every term is built in a
positive and a negated form so that NULL columns and missing metadata
keys never match, not even under ``not``.
"""

import abc
import decimal
import operator
import re

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from calipso_agent.storage import base
from calipso_agent.storage import query as query_mod
from calipso_agent.storage.sql import schema, values

COLUMN_OF = {'timestamp': 'ts', 'recorded_at': 'recorded_ts'}
_INT64 = 2 ** 63 - 1
_COMPARE = {'=': operator.eq, '!=': operator.ne, '<': operator.lt,
            '<=': operator.le, '>': operator.gt, '>=': operator.ge}
_INTEGER_KEY = re.compile(r'^-?[0-9]+$')


def fields(expression):
    """Every field an expression tests."""
    if expression is None:
        return set()
    ((op, operand),) = expression.items()
    if op in ('and', 'or'):
        return set().union(*(fields(e) for e in operand))
    if op == 'not':
        return fields(operand)
    return set(operand)


def meter_terms(expression):
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
             if fields(term) <= set(schema.METER_FIELDS)]
    if not terms:
        return None
    return terms[0] if len(terms) == 1 else {'and': terms}


def check_limit(limit):
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise base.InvalidQuery(f'limit {limit!r} is not a positive integer')
    return limit


def _kind(value):
    if isinstance(value, bool):
        return bool
    if isinstance(value, (int, float)):
        return float
    return str


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


class Compiler(abc.ABC):
    """What both dialects compile alike; the subclasses the rest."""

    def where(self, expression, table=schema.SAMPLE):
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
        column = table.c[COLUMN_OF.get(field, field)]
        if field in query_mod.TIME_FIELDS:
            # Bound as BIGINT like the column: compared as numeric (what
            # _bind makes of a number) no index would serve them.
            condition = self._term(column, op, [
                sa.literal(values.to_us(v), sa.BigInteger()) for v in value]
                if op == 'in' else sa.literal(values.to_us(value),
                                              sa.BigInteger()))
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
            values_ = [self._bind(v) for v in value
                       if not self._unstorable(v)]
            return expr.in_(values_) if values_ else sa.false()
        if op == 'like':
            if self._unstorable(value):
                return sa.false()
            return self._like(expr, value)
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
        """Whether no stored text can equal ``value``."""
        return False

    @abc.abstractmethod
    def _like(self, expr, pattern):
        """SQL of ``expr`` LIKE ``pattern`` (``%`` and ``_`` wildcards)."""

    def _bind(self, value):
        if isinstance(value, sa.sql.ClauseElement):
            return value
        if isinstance(value, bool):
            return sa.literal(value, sa.Boolean())
        if not isinstance(value, (int, float)):
            return value
        return self._bind_number(value)

    @abc.abstractmethod
    def _bind_number(self, value):
        """A bound parameter of a number the dialect compares exactly."""

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
        is_kind, extracted = self._metadata_value(
            table.c.resource_metadata, self._keys(field), kind)
        return sa.case((is_kind, self._term(extracted, op, value)),
                       else_=sa.false())

    @abc.abstractmethod
    def _metadata_value(self, column, keys, kind):
        """(condition: the key holds a value of ``kind``, its value)."""

    @abc.abstractmethod
    def group_values(self, field):
        """Expressions grouping by a metadata key as the reference does:
        1 and 1.0 together, True and 1 and '1' apart, missing with null."""

    @staticmethod
    def _keys(field):
        if not query_mod.valid_metadata_key(field):
            raise base.InvalidQuery(f'invalid metadata field {field!r}')
        return field[len(query_mod.METADATA_PREFIX):].split('.')


class SqliteCompiler(Compiler):

    def _like(self, expr, pattern):
        return expr.op('GLOB', is_comparison=True)(_glob(pattern))

    def _bind_number(self, value):
        if isinstance(value, int) and abs(value) > _INT64:
            return float(value)
        return value

    def _metadata_value(self, column, keys, kind):
        path = _sqlite_path(keys)
        json_type = sa.func.json_type(column, path)
        types = {bool: ('true', 'false'), float: ('integer', 'real'),
                 str: ('text',)}[kind]
        return json_type.in_(types), sa.func.json_extract(column, path)

    def group_values(self, field):
        """The key's SQL value (numbers compare numerically) and its
        kind."""
        column = schema.SAMPLE.c.resource_metadata
        path = _sqlite_path(self._keys(field))
        json_type = sa.func.json_type(column, path)
        kind = sa.case((json_type.in_(('integer', 'real')), 'number'),
                       (json_type == 'null', sa.null()), else_=json_type)
        return [sa.func.json_extract(column, path), kind]


class PostgresqlCompiler(Compiler):

    def _unstorable(self, value):
        return isinstance(value, str) and '\x00' in value

    def _like(self, expr, pattern):
        return expr.like(pattern.replace('\\', '\\\\'))

    def _bind_number(self, value):
        # JSON numbers are compared as numeric: exact for integers, and a
        # float is stored as its shortest repr.
        return decimal.Decimal(repr(value) if isinstance(value, float)
                               else value)

    def _metadata_value(self, column, keys, kind):
        node = column.op('#>')(_pg_path(keys))
        kind_name = {bool: 'boolean', float: 'number', str: 'string'}[kind]
        is_kind = sa.and_(sa.func.jsonb_typeof(node) == kind_name,
                          *self._object_guards(column, keys))
        if kind is str:
            extracted = sa.collate(
                column.op('#>>', return_type=sa.Text)(_pg_path(keys)), 'C')
        elif kind is float:
            extracted = sa.cast(node, sa.Numeric())
        else:
            extracted = sa.cast(node, sa.Boolean())
        return is_kind, extracted

    def group_values(self, field):
        """The jsonb value (jsonb equality already groups as asked)."""
        column = schema.SAMPLE.c.resource_metadata
        keys = self._keys(field)
        node = column.op('#>', return_type=postgresql.JSONB)(_pg_path(keys))
        guards = self._object_guards(column, keys)
        if guards:
            node = sa.case((sa.and_(*guards), node))
        return [sa.func.coalesce(node, sa.literal_column("'null'::jsonb"))]

    @staticmethod
    def _object_guards(column, keys):
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
