"""Fixtures of the controller's unit tests: options over a temporary
state directory, its SQLite store, a launcher recording its calls."""

import pytest

from calipso_agent import storage
from tests.unit.proxy.controller.test_channels import FakeLauncher, make_conf


@pytest.fixture
def conf(tmp_path):
    return make_conf(tmp_path)


@pytest.fixture
def store(conf):
    connection = storage.get_connection(conf)
    yield connection
    connection.close()


@pytest.fixture
def launcher(conf):
    return FakeLauncher(conf)
