"""The storage contract (tests/storage_contract.py) on real servers.

* PostgreSQL at ``CALIPSO_TEST_POSTGRESQL_URL`` (default
  postgresql://postgres@127.0.0.1:5432/test, trust auth): a database
  ``calipso_contract_<hex>`` is created for the session through that one
  and dropped at the end; every store is a freshly recreated schema.
* MongoDB at ``CALIPSO_TEST_MONGODB_URL`` when it is set (skipped
  otherwise): a database ``calipso_contract_<hex>``, dropped before every
  store and at the end.
"""

import os
import urllib.parse
import uuid

import pytest
import sqlalchemy as sa

from tests.helpers import basics

pytest.register_assert_rewrite('tests.storage_contract')

from tests.storage_contract import *  # noqa: E402,F401,F403

pytestmark = pytest.mark.functional

POSTGRESQL_URL = os.environ.get('CALIPSO_TEST_POSTGRESQL_URL',
                                'postgresql://postgres@127.0.0.1:5432/test')
MONGODB_URL = os.environ.get('CALIPSO_TEST_MONGODB_URL')


def _psycopg(url):
    return sa.engine.make_url(url).set(drivername='postgresql+psycopg')


class _Stores:
    """A fresh store per test (``__call__``); the current one is closed
    before the next is made and at the end."""

    current = None

    def close_current(self):
        if self.current is not None:
            self.current.close()
            self.current = None


class PostgreSQLStores(_Stores):
    """A database of its own; each call recreates its schema and returns a
    new, upgraded driver connection (the previous one closed)."""

    def __init__(self):
        from calipso_agent.storage.sql import postgresql
        self.driver = postgresql
        self.conf = basics.make_conf()
        self.name = f'calipso_contract_{uuid.uuid4().hex}'
        self.server = sa.create_engine(
            _psycopg(POSTGRESQL_URL), isolation_level='AUTOCOMMIT',
            connect_args={'connect_timeout': 5})
        try:
            with self.server.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE {self.name}')
        except sa.exc.OperationalError as exc:
            self.server.dispose()
            pytest.skip(f'PostgreSQL at {POSTGRESQL_URL} does not answer: '
                        f'{exc.orig}')
        url = sa.engine.make_url(POSTGRESQL_URL).set(database=self.name)
        self.url = url.render_as_string(hide_password=False)
        self.admin = sa.create_engine(
            _psycopg(self.url), isolation_level='AUTOCOMMIT',
            poolclass=sa.pool.StaticPool)
        self.current = None

    def __call__(self):
        self.close_current()
        with self.admin.connect() as conn:
            conn.exec_driver_sql("SET lock_timeout = '10s'")
            conn.exec_driver_sql('DROP SCHEMA public CASCADE')
            conn.exec_driver_sql('CREATE SCHEMA public')
        self.current = self.driver.Connection(self.conf, self.url)
        self.current.upgrade()
        return self.current

    def broken(self):
        url = sa.engine.make_url(POSTGRESQL_URL).set(
            host='127.0.0.1', port=basics.free_port(), database=self.name)
        return self.driver.Connection(
            self.conf, url.render_as_string(hide_password=False))


    def close(self):
        self.close_current()
        self.admin.dispose()
        with self.server.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE {self.name} WITH (FORCE)')
        self.server.dispose()


class MongoDBStores(_Stores):
    """A database of its own on the server, dropped before every store."""

    def __init__(self):
        if not MONGODB_URL:
            pytest.skip('CALIPSO_TEST_MONGODB_URL is not set (no MongoDB '
                        'server to run the contract on)')
        import pymongo

        from calipso_agent.storage import impl_mongodb
        self.driver = impl_mongodb
        self.conf = basics.make_conf()
        self.name = f'calipso_contract_{uuid.uuid4().hex}'
        parts = urllib.parse.urlsplit(MONGODB_URL)
        self.url = urllib.parse.urlunsplit(parts._replace(
            path='/' + self.name))
        self.client = pymongo.MongoClient(MONGODB_URL,
                                          serverSelectionTimeoutMS=5000)
        self.current = None

    def __call__(self):
        self.close_current()
        self.client.drop_database(self.name)
        self.current = self.driver.Connection(self.conf, self.url)
        self.current.upgrade()
        return self.current

    def broken(self):
        return self.driver.Connection(
            self.conf, f'mongodb://127.0.0.1:{basics.free_port()}/'
            f'{self.name}?serverSelectionTimeoutMS=300&connectTimeoutMS=300')


    def close(self):
        self.close_current()
        self.client.drop_database(self.name)
        self.client.close()


@pytest.fixture(scope='module', params=['postgresql', 'mongodb'])
def connection_factory(request):
    stores = (PostgreSQLStores if request.param == 'postgresql'
              else MongoDBStores)()
    yield stores
    stores.close()


@pytest.fixture
def connection(connection_factory):
    return connection_factory()
