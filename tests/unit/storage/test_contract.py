"""The storage contract (tests/storage_contract.py) on the hermetic
drivers: SQLite in a temporary file, MongoDB on mongomock."""

import itertools

import mongomock
import pytest

from tests.helpers import basics

pytest.register_assert_rewrite('tests.storage_contract')

from tests.storage_contract import *  # noqa: E402,F401,F403


class Stores:
    """Fresh, upgraded, empty stores of one driver, one per call; the
    previous one is closed."""

    def __init__(self, kind, tmp_path_factory):
        self.kind = kind
        self.conf = basics.make_conf()
        self.tmp = tmp_path_factory.mktemp(f'contract-{kind}')
        self.numbers = itertools.count()
        self.current = None
        # mongomock takes seconds per thousand samples.
        self.large_batch = 5000 if kind == 'sqlite' else 500

    def __call__(self):
        self.close()
        number = next(self.numbers)
        if self.kind == 'sqlite':
            from calipso_agent.storage.sql import sqlite
            url = f'sqlite:///{self.tmp}/store-{number}.sqlite'
            self.current = sqlite.Connection(self.conf, url)
        else:
            from calipso_agent.storage import impl_mongodb
            self.current = impl_mongodb.Connection(
                self.conf, f'mongodb://localhost/calipso_contract_{number}',
                client=mongomock.MongoClient())
        self.current.upgrade()
        return self.current

    def broken(self):
        if self.kind == 'sqlite':
            from calipso_agent.storage.sql import sqlite
            # A file that is not an SQLite database.
            garbage = self.tmp / f'garbage-{next(self.numbers)}.sqlite'
            garbage.write_bytes(b'not an SQLite database\n' * 512)
            return sqlite.Connection(self.conf,
                                     f'sqlite:///{garbage}')
        from calipso_agent.storage import impl_mongodb
        return impl_mongodb.Connection(
            self.conf, f'mongodb://127.0.0.1:{basics.free_port()}/x'
            '?serverSelectionTimeoutMS=300&connectTimeoutMS=300')

    def close(self):
        if self.current is not None:
            self.current.close()
            self.current = None


@pytest.fixture(scope='module', params=['sqlite', 'mongodb-mongomock'])
def connection_factory(request, tmp_path_factory):
    stores = Stores(request.param.split('-')[0], tmp_path_factory)
    yield stores
    stores.close()


@pytest.fixture
def connection(connection_factory):
    return connection_factory()
