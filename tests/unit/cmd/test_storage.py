"""calipso-dbsync and calipso-expirer."""

import datetime
import subprocess
import sys

import pytest

from calipso_agent import storage
from calipso_agent.cmd import storage as storage_cmd
from calipso_agent.storage import base as storage_base
from tests.helpers import basics
from tests.helpers.basics import make_sample


@pytest.fixture
def db_url(tmp_path):
    return f'sqlite:///{tmp_path}/store.sqlite'


def run_tool(name, config_file):
    """``calipso-<name>`` as its console script runs it."""
    return subprocess.run(
        [sys.executable, '-c',
         f'from calipso_agent.cmd.storage import {name}; {name}()',
         '--config-file', str(config_file)],
        capture_output=True, text=True, timeout=60, cwd=basics.REPO)


def write_config(tmp_path, connection, ttl=-1):
    path = tmp_path / 'calipso.conf'
    path.write_text(f'[database]\nconnection = {connection}\n'
                    f'metering_time_to_live = {ttl}\n')
    return path


def ago(seconds):
    ts = datetime.datetime.now(datetime.UTC) - datetime.timedelta(
        seconds=seconds)
    return ts.isoformat()


class FakeStore:
    created_on_connect = None

    def __init__(self, deleted=0):
        self.deleted = deleted
        self.ttls = []
        self.upgrades = 0
        self.closed = False

    def upgrade(self):
        self.upgrades += 1
        return 'up to date'

    def clear_expired_samples(self, ttl):
        self.ttls.append(ttl)
        return self.deleted

    def close(self):
        self.closed = True


def test_dbsync_creates_the_schema_and_is_idempotent(db_url, capsys):
    conf = basics.make_conf(database__connection=db_url)
    storage_cmd.sync(conf)
    store = storage.get_connection(conf)
    try:
        store.record_samples([make_sample(1)])
        storage_cmd.sync(conf)
        assert [s.id for s in store.get_samples()] == [make_sample(1).id]
    finally:
        store.close()
    first, second = capsys.readouterr().out.splitlines()
    assert first.startswith(f'calipso-dbsync: database {db_url}: created '
                            f'schema version ')
    assert ' tables: ' in first and 'sample' in first
    assert second.startswith(f'calipso-dbsync: database {db_url}: schema '
                             f'version ')
    assert second.endswith(' is up to date')


def test_dbsync_closes_the_store(monkeypatch, capsys):
    fake = FakeStore()
    monkeypatch.setattr(storage, 'get_connection', lambda conf: fake)
    storage_cmd.sync(basics.make_conf())
    assert fake.upgrades == 1 and fake.closed


def test_dbsync_unreachable_database_exits_with_the_reason(tmp_path):
    port = basics.free_port()
    config = write_config(
        tmp_path, f'postgresql+psycopg://calipso:topsecret@127.0.0.1:{port}'
                  f'/calipso?connect_timeout=2')
    result = run_tool('dbsync', config)
    assert result.returncode != 0
    assert (f'calipso-dbsync: cannot upgrade the database '
            f'postgresql+psycopg://calipso:***@127.0.0.1:{port}/calipso'
            in result.stderr)
    assert 'topsecret' not in result.stderr + result.stdout


def test_dbsync_store_error_exits_non_zero(monkeypatch):
    def get_connection(conf):
        raise storage_base.StorageError('connection refused')

    monkeypatch.setattr(storage, 'get_connection', get_connection)
    conf = basics.make_conf(database__connection='sqlite:////nowhere/x')
    with pytest.raises(SystemExit) as exit_info:
        storage_cmd.sync(conf)
    assert exit_info.value.code == (
        'calipso-dbsync: cannot upgrade the database sqlite:////nowhere/x: '
        'StorageError: connection refused')


def test_dbsync_unknown_scheme(tmp_path):
    result = run_tool('dbsync', write_config(tmp_path, 'nosuch://h/db'))
    assert result.returncode == 1
    assert "no storage driver for 'nosuch'" in result.stderr


def test_dbsync_console_script(tmp_path, db_url):
    result = run_tool('dbsync', write_config(tmp_path, db_url))
    assert result.returncode == 0, result.stderr
    assert f'database {db_url}: created schema version' in result.stdout


@pytest.mark.parametrize('ttl', [0, -1])
def test_expirer_without_ttl_does_nothing_and_says_so(ttl, monkeypatch,
                                                      capsys):
    def get_connection(conf):
        raise AssertionError('the store must not be touched')

    monkeypatch.setattr(storage, 'get_connection', get_connection)
    storage_cmd.expire(basics.make_conf(
        database__metering_time_to_live=ttl))
    assert capsys.readouterr().out == (
        f'calipso-expirer: nothing to do: [database] metering_time_to_live '
        f'is {ttl}, samples are kept forever\n')


def test_expirer_deletes_old_samples(db_url, capsys):
    conf = basics.make_conf(database__connection=db_url,
                             database__metering_time_to_live=3600)
    storage_cmd.sync(conf)
    store = storage.get_connection(conf)
    try:
        store.record_samples([make_sample(1, timestamp=ago(7200)),
                              make_sample(2, timestamp=ago(7200)),
                              make_sample(3, timestamp=ago(60))])
        storage_cmd.expire(conf)
        assert [s.id for s in store.get_samples()] == [make_sample(3).id]
    finally:
        store.close()
    assert capsys.readouterr().out.endswith(
        'calipso-expirer: 2 samples older than 3600s deleted\n')


def test_expirer_passes_the_ttl_and_closes(monkeypatch, capsys):
    fake = FakeStore(deleted=4)
    monkeypatch.setattr(storage, 'get_connection', lambda conf: fake)
    storage_cmd.expire(basics.make_conf(
        database__metering_time_to_live=60))
    assert fake.ttls == [60] and fake.closed
    assert capsys.readouterr().out == (
        'calipso-expirer: 4 samples older than 60s deleted\n')


def test_expirer_console_script(tmp_path, db_url):
    config = write_config(tmp_path, db_url, ttl=60)
    assert run_tool('dbsync', config).returncode == 0
    result = run_tool('expirer', config)
    assert result.returncode == 0, result.stderr
    assert 'calipso-expirer: 0 samples older than 60s deleted' in (
        result.stdout)


def test_expirer_unreachable_database_exits_with_the_reason(tmp_path):
    port = basics.free_port()
    config = write_config(
        tmp_path, f'postgresql+psycopg://calipso@127.0.0.1:{port}/calipso'
                  f'?connect_timeout=2', ttl=60)
    result = run_tool('expirer', config)
    assert result.returncode == 1
    assert ('calipso-expirer: cannot expire samples in the database '
            f'postgresql+psycopg://calipso@127.0.0.1:{port}/calipso'
            in result.stderr)


def test_dbsync_without_connection_says_it_is_the_embedded_file(
        tmp_path, capsys):
    conf = basics.make_conf(state_path=str(tmp_path))
    storage_cmd.sync(conf)
    out = capsys.readouterr().out
    assert out.startswith(f'calipso-dbsync: database sqlite:///{tmp_path}/'
                          f'calipso.sqlite (no [database] connection '
                          f'configured: the embedded SQLite file): created')
