"""What the SQL connections share: the engine's transactions, database
errors made storage errors, the schema's creation and upgrade.

``sqlite.Connection`` and ``postgresql.Connection`` (one per dialect,
chosen by the URL scheme in the ``calipso.storage`` namespace) make the
engine and store sample rows their own way.
"""

import abc
import contextlib

import sqlalchemy as sa

from calipso_agent.storage import base
from calipso_agent.storage.sql import (
    crud,
    graph,
    reads,
    schema,
    statistics,
    values,
    writes,
)

# SQLSTATE classes of errors about the statement's data, not the server:
# data exception (22: out of range, bad encoding, NUL), integrity
# constraint violation (23) and program limit exceeded (54: index row
# too big, too many columns).
_DATA_SQLSTATE_CLASSES = ('22', '23', '54')
# Unique violations come from concurrent writers racing: retry them.
_RETRIED_SQLSTATES = ('23505',)
_DATA_SQLITE_ERRORS = ('SQLITE_TOOBIG', 'SQLITE_MISMATCH', 'SQLITE_RANGE',
                       'SQLITE_CONSTRAINT_NOTNULL', 'SQLITE_CONSTRAINT_CHECK')


def refuses_the_data(exc, cause):
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


class Connection(writes.Writes, reads.Reads, statistics.Statistics,
                 crud.Crud, graph.GraphReads, base.Connection):
    """A SQL store; the subclasses are its dialects."""

    # The backend name of the URLs this class takes.
    backend = None
    # The dialect's INSERT (with ON CONFLICT).
    _insert = None

    def __init__(self, conf, url):
        super().__init__(conf, url)
        parsed = sa.engine.make_url(url)
        if parsed.get_backend_name() != self.backend:
            raise ValueError(f'{parsed.drivername!r} is not a '
                             f'{self.backend} URL')
        # One writer at a time per process (SQLite); everything through
        # one lock (an in-memory database is one shared connection).
        self._write_lock = None
        self._read_lock = None
        # Meter (the seven fields) -> its key, shared by the batches.
        self._meter_keys = {}
        self.engine = self._create_engine(parsed, dict(
            json_serializer=values.dumps, json_deserializer=values.loads))
        self._read_engine = self.engine
        self._prepare_engine()
        with self._transaction() as conn:
            ready = sa.inspect(conn).has_table(schema.SCHEMA.name)
        if not ready:
            self.created_on_connect = self.upgrade()

    @abc.abstractmethod
    def _create_engine(self, parsed, options):
        """The engine of the URL ``parsed`` (``options``: the engine
        options every dialect takes)."""

    def _prepare_engine(self):
        """What the dialect sets up once the engine exists."""

    def _begin_write(self, conn):
        """What the dialect does to a connection before a write
        transaction begins."""

    def _lock_upgrade(self, conn):
        """Serialize concurrent upgrade() calls, where needed."""

    def _json_param(self, name):
        """A bind parameter taking JSON text (serialized once, by us)."""
        return sa.bindparam(name, type_=sa.Text())

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
                    if write:
                        self._begin_write(conn)
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
                        if refuses_the_data(exc, cause)
                        else base.StorageUnavailableError)
                raise kind(f'{type(cause).__name__}: '
                           f'{" ".join(str(cause).split())}') from exc

    def upgrade(self):
        version_now = schema.SCHEMA_VERSION
        with self._transaction(write=True) as conn:
            self._lock_upgrade(conn)
            existing = set(sa.inspect(conn).get_table_names())
            version = None
            if schema.SCHEMA.name in existing:
                version = conn.execute(sa.select(schema.SCHEMA.c.version)
                                       ).scalar()
            if version is not None and version > version_now:
                raise base.StorageError(
                    f'the database schema is version {version}, newer than '
                    f'this code ({version_now})')
            for old in range(version or version_now, version_now):
                for name in schema.RECREATED_FROM.get(old, ()):
                    schema.METADATA.tables[name].drop(conn, checkfirst=True)
                    existing.discard(name)
            schema.METADATA.create_all(conn)
            if version is None:
                conn.execute(schema.SCHEMA.insert().values(
                    version=version_now))
            elif version < version_now:
                conn.execute(schema.SCHEMA.update().values(
                    version=version_now))
        tables = set(schema.METADATA.tables)
        created = sorted(tables - existing)
        if not existing & tables:
            return (f'created schema version {version_now} '
                    f'({len(created)} tables: {", ".join(created)})')
        if created:
            return (f'schema version {version_now}: added the tables '
                    f'{", ".join(created)}')
        return f'schema version {version_now} is up to date'

    def ping(self):
        with self._transaction() as conn:
            conn.execute(sa.text('SELECT 1'))

    def close(self):
        self.engine.dispose()
