"""Reads of the SQL store: samples, meters and resources.

Unfiltered (or resource-only) listings read the ``meter`` and
``resource`` records instead of scanning samples.
"""

import sqlalchemy as sa

from calipso_agent import sample as sample_mod
from calipso_agent.storage import base
from calipso_agent.storage import query as query_mod
from calipso_agent.storage.sql import compiler, values
from calipso_agent.storage.sql.schema import (
    METER,
    METER_FIELDS,
    RESOURCE,
    SAMPLE,
)

_METER_ORDER = ('name', 'resource_id', 'project_id', 'user_id', 'source',
                'type', 'unit')


def _ascending(columns):
    """ORDER BY terms: NULL first on every engine."""
    return [c.asc().nulls_first() if c.nullable else c.asc()
            for c in columns]


class Reads:
    """The sample, meter and resource reads of the SQL connections (a
    mixin of connection.Connection)."""

    def _sample_of(self, row):
        return sample_mod.Sample(
            id=row.id, name=row.name, type=row.type, unit=row.unit,
            volume=row.volume, user_id=row.user_id,
            project_id=row.project_id, resource_id=row.resource_id,
            source=row.source, message_id=row.message_id,
            timestamp=values.iso(row.ts),
            recorded_at=values.iso(row.recorded_ts),
            resource_metadata=row.resource_metadata)

    def _where(self, expression, table=SAMPLE):
        """The SQL condition of a complex query (validated here)."""
        if expression is not None:
            expression = query_mod.validate(expression)
        return self._compiler.where(expression, table)

    def query_samples(self, filter_expr=None, orderby=None, limit=None):
        where = self._where(filter_expr)
        limit = compiler.check_limit(limit)
        if limit == 0:
            return []
        ordering = query_mod.validate_orderby(orderby) or [('timestamp',
                                                             'desc')]
        statement = sa.select(SAMPLE)
        if where is not None:
            statement = statement.where(where)
        clauses = []
        for field, direction in ordering:
            column = SAMPLE.c[compiler.COLUMN_OF.get(field, field)]
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

    # --- meters and resources ---------------------------------------------
    def get_meters(self, sample_filter=None, limit=None, unique=False):
        """Distinct meters in (name, resource, project, user, source,
        type, unit) order; ``unique``: the first of each name."""
        expression = (sample_filter.expression()
                      if sample_filter is not None else None)
        limit = compiler.check_limit(limit)
        if limit == 0:
            return []
        # The meter table holds the distinct tuples of all samples: exact
        # whenever the filter only tests fields of those tuples.
        table = (METER if compiler.fields(expression) <= set(METER_FIELDS)
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
        limit = compiler.check_limit(limit)
        if limit == 0:
            return []
        if compiler.fields(expression) <= {'resource_id'}:
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
        meter_where = self._where(compiler.meter_terms(expression), METER)
        with self._transaction() as conn:
            rows = conn.execute(statement).all()
            meters = self._meters_of(conn, [row.resource_id for row in rows],
                                     meter_where)
        return [base.Resource(
            row.resource_id, row.project_id, row.user_id, row.source,
            values.from_us(row.first_ts), values.from_us(row.last_ts),
            row.metadata, meters.get(row.resource_id, ())) for row in rows]

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
