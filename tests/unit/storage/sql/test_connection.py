"""The SQL connections: one class per dialect, chosen by the URL
scheme; write errors on SQLite and their classification."""

import sqlite3

import pytest
import sqlalchemy as sa
from stevedore import driver

from calipso_agent import storage
from calipso_agent.storage.sql import connection as sql_connection
from calipso_agent.storage.sql import postgresql, sqlite
from tests.helpers import basics
from tests.helpers.basics import make_sample


@pytest.fixture
def store(tmp_path):
    connection = sqlite.Connection(
        basics.make_conf(), f'sqlite:///{tmp_path}/s.sqlite')
    yield connection
    connection.close()


def test_metadata_nested_past_the_stack_is_a_rejected_sample(store):
    deep = {}
    for _ in range(5000):
        deep = {'a': deep}
    bad = make_sample(1, resource_metadata={'deep': deep})
    result = store.record_samples([make_sample(0), bad])
    assert result.stored == 1
    assert [r for _, r in result.rejected] == [
        'resource_metadata is not JSON: nested too deeply to encode']


def test_ping(store):
    store.ping()


class DriverError(Exception):
    def __init__(self, sqlstate=None, sqlite_errorname=None):
        super().__init__('x')
        self.sqlstate = sqlstate
        self.sqlite_errorname = sqlite_errorname


@pytest.mark.parametrize('cause,refused', [
    (DriverError('54000'), True),       # program limit exceeded: index row
    (DriverError('22021'), True),       # character not in repertoire
    (DriverError('22003'), True),       # numeric value out of range
    (DriverError('23502'), True),       # not null violation
    (DriverError('23505'), False),      # unique violation: concurrent writers
    (DriverError('40001'), False),      # serialization failure
    (DriverError('40P01'), False),      # deadlock
    (DriverError('57P01'), False),      # admin shutdown
    (DriverError('08006'), False),      # connection failure
    (DriverError(sqlite_errorname='SQLITE_TOOBIG'), True),
    (DriverError(sqlite_errorname='SQLITE_BUSY'), False),
    (sqlite3.DataError('x'), True),
    (sqlite3.OperationalError('database is locked'), False),
])
def test_which_database_errors_refuse_the_data(cause, refused):
    wrapped = sa.exc.DBAPIError('stmt', {}, cause)
    assert sql_connection.refuses_the_data(wrapped, cause) is refused


@pytest.mark.parametrize('scheme, dialect', [
    ('sqlite', sqlite.Connection), ('postgresql', postgresql.Connection)])
def test_each_scheme_loads_its_dialect(scheme, dialect):
    manager = driver.DriverManager(storage.NAMESPACE, scheme)
    assert manager.driver is dialect
    assert issubclass(dialect, sql_connection.Connection)


@pytest.mark.parametrize('dialect, url', [
    (sqlite.Connection, 'postgresql://127.0.0.1:1/x'),
    (postgresql.Connection, 'sqlite://')])
def test_a_dialect_refuses_the_url_of_another(dialect, url):
    with pytest.raises(ValueError, match='is not a'):
        dialect(basics.make_conf(), url)
