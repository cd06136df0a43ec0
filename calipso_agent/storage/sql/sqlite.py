"""The SQLite store (an embedded file, or in memory).

One writer at a time: writes take the database's write lock up front
(BEGIN IMMEDIATE) and, in one process, a lock of ours; a batch goes
through INCOMING and is merged in SQL. A fork of the process waits for
its transactions to end and closes its connections (``fork_guard``).
"""

import contextlib
import os
import threading

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import sqlite as sqlite_dialect

from calipso_agent.storage.sql import compiler, connection, fork_guard
from calipso_agent.storage.sql.schema import INCOMING, SAMPLE


class Connection(connection.Connection):
    """SQLite store."""

    backend = 'sqlite'
    _insert = staticmethod(sqlite_dialect.insert)
    _compiler = compiler.SqliteCompiler()

    def _create_engine(self, parsed, options):
        self._write_lock = threading.RLock()
        database = parsed.database
        if not database or database == ':memory:':
            options['poolclass'] = sa.pool.StaticPool
            self._read_lock = self._write_lock
        elif not database.startswith('file:'):
            os.makedirs(os.path.dirname(os.path.abspath(database)),
                        exist_ok=True)
        options['connect_args'] = {'check_same_thread': False,
                                   'timeout': 30}
        return sa.create_engine(parsed, **options)

    def _prepare_engine(self):
        _sqlite_transactions(self.engine, in_memory=bool(self._read_lock))
        if not self._read_lock:
            fork_guard.watch(self.engine)

    @contextlib.contextmanager
    def _transaction(self, write=False):
        # Never open across a fork (fork_guard.py).
        with fork_guard.transaction(), super()._transaction(write) as conn:
            yield conn

    def _begin_write(self, conn):
        conn.execution_options(calipso_write=True)

    # --- writes -------------------------------------------------------------
    def _store(self, rows):
        with self._transaction(write=True) as conn:
            return self._record_staged(conn, list(rows))

    def _stage(self, conn, rows):
        """One executemany (multi-row VALUES cost more to build than to
        run)."""
        marks = ', '.join('?' * len(INCOMING.c))
        conn.exec_driver_sql(
            f'INSERT INTO {INCOMING.name} VALUES ({marks})', rows)

    def _merge_incoming(self, conn):
        # SQLite has no DML in WITH: drop the known samples first (the
        # write lock is held: nobody inserts them meanwhile).
        conn.execute(INCOMING.delete().where(
            sa.exists().where(SAMPLE.c.id == INCOMING.c.id)))
        stored = conn.execute(self._insert_new_samples().execution_options(
            preserve_rowcount=True)).rowcount
        if stored:
            conn.execute(self._resources_upsert(INCOMING))
            conn.execute(self._meters_insert(INCOMING))
        conn.execute(INCOMING.delete())
        return stored

    def _least(self, *columns):
        return sa.func.min(*columns)

    # --- statistics ---------------------------------------------------------
    def _stddev_inputs(self, partition):
        """SQLite has no standard deviation: each sample's group mean."""
        return [sa.func.avg(SAMPLE.c.volume).over(
            partition_by=partition).label('mean')]

    def _stddev(self, inner):
        deviation = inner.c.volume - inner.c.mean
        return sa.func.sum(deviation * deviation).label('squares')


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
        # On the driver's connection: SQLAlchemy's execution of a
        # statement costs more than the BEGIN (a write runs one a batch).
        conn.connection.dbapi_connection.execute(
            'BEGIN IMMEDIATE' if write else 'BEGIN')
