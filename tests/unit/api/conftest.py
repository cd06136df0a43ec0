"""Fixtures of the API tests: the real SQL driver on SQLite files."""

import pytest

from calipso_agent import storage
from calipso_agent.api import app
from tests.unit.api import support
from tests.unit.api.support import make_conf


@pytest.fixture(scope='module')
def samples():
    return support.dataset()


@pytest.fixture(scope='module')
def store_conf(tmp_path_factory):
    return make_conf(tmp_path_factory.mktemp('api-store'))


@pytest.fixture(scope='module')
def store(store_conf, samples):
    """The data set, stored once per module (read-only tests)."""
    connection = storage.get_connection(store_conf)
    result = connection.record_samples(samples)
    assert result.stored == len(samples), result.rejected
    yield connection
    connection.close()


@pytest.fixture(scope='module')
def client(store_conf, store):
    """An admin's client of the API over the data set."""
    return support.Client(app.setup_app(conf=store_conf, storage=store))


@pytest.fixture
def conf(tmp_path):
    return make_conf(tmp_path)


@pytest.fixture
def empty_store(conf):
    connection = storage.get_connection(conf)
    yield connection
    connection.close()


@pytest.fixture
def writer(conf, empty_store):
    """An admin's client of the API over an empty store of its own."""
    return support.Client(app.setup_app(conf=conf, storage=empty_store))
