"""Statistics in SQL: one row per (period bucket, group, unit), every
aggregate computed by the database, decoded into Statistics lazily."""

import math

import sqlalchemy as sa

from calipso_agent.storage import base
from calipso_agent.storage.sql import values
from calipso_agent.storage.sql.schema import SAMPLE


def group_sort_key(value):
    """Orders group values of any kind (None first)."""
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, value)
    if isinstance(value, (int, float)):
        return (2, value)
    if isinstance(value, str):
        return (3, value)
    return (4, values.dumps(value))


def execute_plain(conn, statement):
    """(column names, rows as tuples) of ``statement``, without
    SQLAlchemy's per-value result processing: statistics can run to one
    row per period and resource, and their columns are plain numbers and
    strings already. The statement's compiled form comes from SQLAlchemy's
    cache."""
    cursor = conn.execute(statement).cursor
    names = tuple(column[0] for column in cursor.description)
    return names, cursor.fetchall()


class StatisticsRow(base.Statistics):
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
    setattr(StatisticsRow, _name, property(
        lambda self, name=_name: self._field(name)))


def decoder(names, period, origin_us, period_us, groupby,
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
        first = values.from_us(first_us)
        last = first if last_us == first_us else values.from_us(last_us)
        fields = {'unit': row[unit_at], 'aggregate': {}, 'period': period,
                  'duration_start': first, 'duration_end': last,
                  'duration': (last_us - first_us) / 1e6}
        if period_us:
            bucket = row[bucket_at]
            span = bounds.get(bucket)
            if span is None:
                start = origin_us + bucket * period_us
                span = bounds[bucket] = (values.from_us(start),
                                         values.from_us(start + period_us))
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
    return values.loads(value)


# --- the query compiler ----------------------------------------------------


class Statistics:
    """get_statistics of the SQL connections (a mixin of
    connection.Connection); the standard deviation by the dialect's
    means."""
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
                    origin_us = values.to_us(sample_filter.start_timestamp)
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
            names, rows = execute_plain(conn, statement)
        decode = decoder(names, period, origin_us, period_us,
                                     groupby, wanted)
        if in_sql_order:
            return [StatisticsRow(row, decode) for row in rows]
        results = [base.Statistics(**decode(row)) for row in rows]
        # Without a period every group covers the same (whole) range.
        results.sort(key=lambda s: (
            s.period_start if period_us else 0,
            tuple(group_sort_key(s.groupby[f]) for f in groupby),
            group_sort_key(s.unit)))
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
        if any(func == 'stddev' for func, _ in wanted):
            columns += self._stddev_inputs(
                [c for c in columns if c.name in keys])
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
                outputs.append(self._stddev(inner))
            elif func == 'cardinality':
                # NULL (an unset id) is not a value: SQL's COUNT DISTINCT.
                outputs.append(sa.func.count(sa.distinct(inner.c[param]))
                               .label(f'cardinality_{param}'))
        statement = sa.select(*outputs).group_by(*(inner.c[k] for k in keys))
        if in_sql_order:
            statement = statement.order_by(
                *(inner.c[k].asc().nulls_first() for k in keys))
        return statement

    def _stddev_inputs(self, partition):
        """Inner columns the stddev aggregate needs besides the volume
        (``partition``: the grouping columns)."""
        return []

    def _stddev(self, inner):
        """The output column of the population standard deviation: its
        value, or (labelled ``squares``) the sum of squared deviations
        the decoder takes the root of."""
        return sa.func.stddev_pop(inner.c.volume).label('stddev')
