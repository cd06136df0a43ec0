"""The PostgreSQL store.

Usually every sample of a batch is new: its rows are COPYed straight into
``sample`` (text COPY: the server stores each row as it arrives while the
next ones are made), then their resources and meters are merged from
arrays (one per column) in one pipeline. A batch holding a known sample
takes the staged path: COPY into INCOMING, one merge statement.
"""

import functools
import re

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from calipso_agent.storage.sql import compiler, connection, values
from calipso_agent.storage.sql.schema import INCOMING, METER, RESOURCE, SAMPLE

# Serializes concurrent upgrade() calls on one PostgreSQL database.
_UPGRADE_LOCK_KEY = 0x63616C6970736F


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


class Connection(connection.Connection):
    """PostgreSQL store."""

    backend = 'postgresql'
    text_holds_nul = False
    _insert = staticmethod(postgresql.insert)
    _compiler = compiler.PostgresqlCompiler()

    def _create_engine(self, parsed, options):
        if parsed.drivername == 'postgresql':
            parsed = parsed.set(drivername='postgresql+psycopg')
        # JSON read back (jsonb, decoded by psycopg) through orjson, as
        # SQLite's text is (values.loads keeps big integers exact).
        options.update(pool_pre_ping=True, pool_size=5, max_overflow=10,
                       json_deserializer=values.loads)
        return sa.create_engine(parsed, **options)

    def _prepare_engine(self):
        # Reads in autocommit: no BEGIN and COMMIT round trips around
        # each query. At read committed, each statement of a transaction
        # saw its own snapshot anyway.
        self._read_engine = self.engine.execution_options(
            isolation_level='AUTOCOMMIT')

    def _lock_upgrade(self, conn):
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(
            _UPGRADE_LOCK_KEY)))

    def _json_param(self, name):
        return sa.cast(super()._json_param(name), postgresql.JSONB())

    # --- writes -------------------------------------------------------------
    def _store(self, rows):
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

    def _stage(self, conn, rows):
        """COPY into INCOMING."""
        cursor = conn.connection.driver_connection.cursor()
        with cursor.copy(f'COPY {INCOMING.name} FROM STDIN') as copy:
            for row in rows:
                copy.write_row(row)

    def _merge_incoming(self, conn):
        """One statement in which the samples inserted feed the resource
        and meter maintenance."""
        inserted = self._insert_new_samples().returning(
            *SAMPLE.c).cte('inserted')
        return conn.execute(
            sa.select(sa.func.count()).select_from(inserted)
            .add_cte(self._resources_upsert(inserted).cte('resources'))
            .add_cte(self._meters_insert(inserted).cte('meters'))
        ).scalar()

    def _least(self, *columns):
        return sa.func.least(*columns)
