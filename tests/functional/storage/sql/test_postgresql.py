"""The SQL driver on the real PostgreSQL server: the checks of the
generated SQL (SQLChecks) and PostgreSQL specifics (the storage contract
runs on PostgreSQL in test_contract.py).

A database of its own (``calipso_test_<hex>``) is created for the session
and dropped at the end; the tests are skipped when the server does not
answer. ``CALIPSO_TEST_POSTGRESQL_URL`` names the server (any database on
it: it is used to create and drop the test database).
"""

import os
import random
import threading
import uuid

import psycopg
import pytest
import sqlalchemy as sa

from calipso_agent.storage import base, query
from calipso_agent.storage.sql import postgresql, schema
from tests.helpers import basics
from tests.helpers.basics import make_sample
from tests.unit.storage.sql.test_sqlite import SQLChecks, at, indexes

pytestmark = pytest.mark.functional

SERVER_URL = os.environ.get('CALIPSO_TEST_POSTGRESQL_URL',
                            'postgresql://postgres@127.0.0.1:5432/test')
TABLES = ('sample', 'resource', 'meter', 'inventory', 'link', 'channel',
          'subscription', 'subscription_counter', 'subscription_version',
          'polling_override')


@pytest.fixture(scope='session')
def database_url():
    server = sa.engine.make_url(SERVER_URL).set(
        drivername='postgresql+psycopg')
    admin = sa.create_engine(server, isolation_level='AUTOCOMMIT',
                             connect_args={'connect_timeout': 3})
    name = f'calipso_test_{uuid.uuid4().hex}'
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE {name}')
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.skip(f'PostgreSQL at {server.render_as_string()} does not '
                    f'answer: {exc.orig}')
    yield server.set(drivername='postgresql', database=name
                     ).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE {name} WITH (FORCE)')
    admin.dispose()


def connect(database_url):
    return postgresql.Connection(basics.make_conf(), database_url)


def emptied(connection):
    connection.upgrade()  # a test may have dropped a table
    with connection.engine.begin() as conn:
        conn.exec_driver_sql(f'TRUNCATE {", ".join(TABLES)}')
    return connection


@pytest.fixture(scope='module')
def connection_factory(database_url):
    """The contract's fresh store: the same connection, emptied."""
    connection = connect(database_url)
    yield lambda: emptied(connection)
    connection.close()


@pytest.fixture
def connection(connection_factory):
    return connection_factory()


class TestPostgreSQL(SQLChecks):

    @pytest.fixture
    def store(self, database_url):
        connection = emptied(connect(database_url))
        yield connection
        connection.close()

    def test_psycopg_3_serves_postgresql_urls(self, store):
        assert store.engine.dialect.name == 'postgresql'
        assert store.engine.dialect.driver == 'psycopg'

    def test_schema(self, store):
        with store.engine.connect() as conn:
            types = dict(conn.execute(sa.text(
                "SELECT column_name, data_type FROM "
                "information_schema.columns WHERE table_name = 'sample'"
            )).all())
            collations = dict(conn.execute(sa.text(
                "SELECT column_name, collation_name FROM "
                "information_schema.columns WHERE table_name = 'sample' "
                "AND data_type = 'text'")).all())
            sample_indexes = {name for (name,) in conn.execute(sa.text(
                "SELECT indexname FROM pg_indexes WHERE tablename = "
                "'sample'"))}
            options = conn.execute(sa.text(
                "SELECT reloptions FROM pg_class WHERE relname = "
                "'resource'")).scalar()
        assert types['resource_metadata'] == 'jsonb'
        assert (types['ts'], types['recorded_ts']) == ('bigint', 'bigint')
        assert types['volume'] == 'double precision'
        assert set(collations.values()) == {'C'}
        assert sample_indexes == {
            'sample_pkey', 'ix_sample_name_ts', 'ix_sample_project_name_ts',
            'ix_sample_resource_ts', 'ix_sample_ts'}
        assert options == ['fillfactor=70']

    def test_concurrent_upgrades_of_an_empty_database(self, store,
                                                      database_url):
        with store.engine.begin() as conn:
            schema.METADATA.drop_all(conn)
        errors = []

        def start():
            try:
                connection = connect(database_url)
                connection.upgrade()
                connection.close()
            except Exception as exc:
                errors.append(exc)

        threads = [threading.Thread(target=start) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        with store.engine.connect() as conn:
            assert conn.execute(sa.text(
                'SELECT version FROM calipso_schema')).all() == [
                (schema.SCHEMA_VERSION,)]
        assert store.record_samples([make_sample(1)]).stored == 1

    def test_concurrent_overlapping_batches(self, store, database_url):
        """Collectors redelivering to each other: each sample once, no
        deadlock, records as if written by one."""
        samples = [make_sample(i, resource_id=f'vm-{i % 7}',
                               timestamp=at(i % 50, i))
                   for i in range(300)]
        stored = []
        errors = []

        def write(seed):
            connection = connect(database_url)
            try:
                order = list(samples)
                random.Random(seed).shuffle(order)
                for start in range(0, 300, 60):
                    stored.append(connection.record_samples(
                        order[start:start + 60]).stored)
            except Exception as exc:
                errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=write, args=(n,))
                   for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert errors == []
        assert sum(stored) == 300
        assert len(store.get_samples()) == 300
        self.assert_records_agree(store, base.SampleFilter(
            start_timestamp=at(-1)))

    def test_nul_characters(self, store):
        result = store.record_samples([
            make_sample(0, name='a'), make_sample(1, name='a\x00b'),
            make_sample(2, resource_metadata={'k': 'x\x00'}),
            make_sample(3, name='ab', user_id=None),
            make_sample(4, name='b')])
        assert indexes(s for s, _ in result.rejected) == [1, 2]
        assert all('NUL' in reason for _, reason in result.rejected)
        stored = [s.as_dict() for s in store.get_samples()]
        for op in query.COMPARISONS + ('like', 'in'):
            for field in ('name', 'user_id', 'resource_metadata.k'):
                value = ['a\x00', 'b'] if op == 'in' else 'a\x00b'
                expression = query.validate({op: {field: value}})
                for term in (expression, {'not': expression}):
                    want = {s['id'] for s in stored
                            if query.matches(term, s)}
                    got = {s.id for s in store.query_samples(term)}
                    assert got == want, term

    def test_metadata_numbers_compare_exactly(self, store):
        values = [2 ** 53, 2 ** 53 + 1, 0.1, 1, 1.0, 2 ** 63 - 1, 10 ** 30]
        store.record_samples([make_sample(i, resource_metadata={'n': v})
                              for i, v in enumerate(values)])
        stored = [s.as_dict() for s in store.get_samples()]
        assert sorted(s['resource_metadata']['n'] for s in stored) == sorted(
            values)
        for want in values + [0.3, 10 ** 30 + 1]:
            for op in query.COMPARISONS:
                expression = {op: {'resource_metadata.n': want}}
                assert indexes(store.query_samples(expression)) == sorted(
                    int(s['message_id'][2:]) for s in stored
                    if query.matches(expression, s)), expression

    def test_a_batch_costs_a_few_statements_whatever_its_size(
            self, store, monkeypatch):
        """Samples go through COPY and set-based SQL: no statement per
        row, one per chunk of resources (what makes bulk writes fast is
        checked by tox -e bench). Counted at the driver: record_samples
        sends most of them itself."""
        statements = []

        def counting(method):
            def send(cursor, query, *args, **kwargs):
                statements.append(str(query))
                return method(cursor, query, *args, **kwargs)
            return send

        for name in ('execute', 'copy'):
            monkeypatch.setattr(psycopg.Cursor, name,
                                counting(getattr(psycopg.Cursor, name)))
        counts = []
        for first, size in ((0, 10), (10, 1000)):
            statements.clear()
            samples = [make_sample(i, resource_id=f'vm-{i % 300}',
                                   timestamp=at(i))
                       for i in range(first, first + size)]
            assert store.record_samples(samples).stored == size
            counts.append(len(statements))
        chunks = -(-300 // postgresql._RESOURCE_CHUNK)
        assert counts[1] <= counts[0] + chunks - 1, statements
        assert any(s.startswith('COPY sample') for s in statements)

    def test_reads_run_in_autocommit_and_writes_in_a_transaction(
            self, store, monkeypatch):
        """Reads spare the BEGIN and COMMIT round trips; a batch of
        samples still commits as one."""
        modes = []
        execute = psycopg.Cursor.execute

        def recording(cursor, query, *args, **kwargs):
            if str(query) != ';':  # the pool's ping
                modes.append(cursor.connection.autocommit)
            return execute(cursor, query, *args, **kwargs)

        monkeypatch.setattr(psycopg.Cursor, 'execute', recording)
        store.record_samples([make_sample(i) for i in range(3)])
        assert modes and not any(modes)
        for read in (store.get_samples, store.get_meters,
                     store.get_resources,
                     lambda: store.get_statistics(base.SampleFilter()),
                     store.get_inventory, store.get_channels):
            modes.clear()
            read()
            assert modes and all(modes), read
        assert len(store.get_samples()) == 3


def test_unreachable_server_is_storage_error():
    url = f'postgresql://postgres@127.0.0.1:{basics.free_port()}/x'
    with pytest.raises(base.StorageError):
        postgresql.Connection(basics.make_conf(), url)


def test_data_error_of_a_read_is_invalid_query(connection):
    """A value the database cannot take in a read (a BIGINT overflow)
    is a wrong question, not a failing store; in a write it stays a
    StorageError (retried, never dropped as the caller's fault)."""
    overflow = 'SELECT 9223372036854775807::bigint + 1'
    with pytest.raises(base.InvalidQuery, match='out of range'):
        with connection._transaction() as conn:
            conn.exec_driver_sql(overflow)
    with pytest.raises(base.StorageError, match='out of range'):
        with connection._transaction(write=True) as conn:
            conn.exec_driver_sql(overflow)
