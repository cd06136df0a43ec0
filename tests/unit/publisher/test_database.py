"""database://: samples into the configured store, failures requeue."""

import urllib.parse

import pytest

from calipso_agent import pipeline as pipeline_mod
from calipso_agent import storage
from calipso_agent.publisher import base, database
from calipso_agent.storage import base as storage_base
from tests.helpers import basics
from tests.helpers.basics import make_sample


@pytest.fixture
def db_url(tmp_path):
    return f'sqlite:///{tmp_path}/store.sqlite'


@pytest.fixture
def conf(db_url):
    conf = basics.make_conf(database__connection=db_url)
    store = storage.get_connection(conf)
    store.upgrade()
    store.close()
    return conf


@pytest.fixture
def store(conf):
    store = storage.get_connection(conf)
    yield store
    store.close()


def make(conf, url='database://'):
    return database.DatabasePublisher(conf, urllib.parse.urlparse(url))


class FailingStore:
    def __init__(self, error):
        self.error = error
        self.closed = False

    def record_samples(self, samples):
        raise self.error

    def close(self):
        self.closed = True


def stored_ids(store):
    return sorted(s.id for s in store.get_samples())


def test_entry_point(conf):
    pub = basics.load_publisher(conf, 'database://')
    assert isinstance(pub, database.DatabasePublisher)
    pub.close()


def test_samples_are_stored_once(conf, store):
    samples = [make_sample(i) for i in range(5)]
    pub = make(conf)
    try:
        pub.publish_samples(samples)
        # The agent retries a whole batch after another publisher failed.
        pub.publish_samples(samples[2:] + [make_sample(5)])
        pub.publish_samples([])
    finally:
        pub.close()
    assert stored_ids(store) == sorted(make_sample(i).id for i in range(6))
    got = {s.id: s for s in store.get_samples()}[samples[3].id]
    assert (got.name, got.volume, got.resource_id) == ('cpu', 3.0, 'vm-3')


def test_samples_the_store_rejects_raise_a_data_error_naming_them(
        conf, store):
    bad = make_sample(1, volume='abc')
    pub = make(conf)
    with pytest.raises(base.PublisherDataError,
                       match='1 of 3 samples rejected') as raised:
        pub.publish_samples([make_sample(0), bad, make_sample(2)])
    pub.close()
    # The others are stored: the agent dead-letters only the notification
    # of the refused sample.
    assert stored_ids(store) == sorted([make_sample(0).id,
                                        make_sample(2).id])
    assert [s for s, _ in raised.value.refused] == [bad]


def test_a_redelivery_is_counted_and_returned(conf, store):
    pub = make(conf)
    assert pub.publish_samples([make_sample(0), make_sample(1)]) == 0
    assert pub.publish_samples(
        [make_sample(0), make_sample(1), make_sample(2)]) == 2
    pub.close()
    assert pub.already_stored == 2


def test_probe_answers_whether_the_store_does(conf):
    pub = make(conf)
    assert pub.probe() is True
    pub.close()


@pytest.mark.parametrize('url', ['database://localhost',
                                 'database:///var/db.sqlite',
                                 'database://?connection=sqlite://'])
def test_url_takes_no_host_path_or_option(conf, url):
    with pytest.raises(base.PublisherConfigError,
                       match='database:// takes no host, path or option'):
        make(conf, url)


def test_database_without_driver_is_a_config_error():
    conf = basics.make_conf(database__connection='nosuch://host/db')
    with pytest.raises(base.PublisherConfigError,
                       match="no storage driver for 'nosuch'"):
        make(conf)


def test_pipeline_keeps_a_database_sink(conf, store):
    pipeline = pipeline_mod.Pipeline.from_dict(conf, {
        'sources': [{'name': 'all', 'meters': ['*'], 'sinks': ['db']}],
        'sinks': [{'name': 'db', 'publishers': ['database://']}]})
    try:
        pipeline.publish_samples([make_sample(7)])
    finally:
        pipeline.close()
    assert stored_ids(store) == [make_sample(7).id]


def test_store_failure_is_a_publisher_error(conf, monkeypatch):
    failing = FailingStore(storage_base.StorageError('disk I/O error'))
    monkeypatch.setattr(storage, 'get_connection', lambda conf: failing)
    pub = make(conf)
    with pytest.raises(base.PublisherError,
                       match='cannot store 2 samples: disk I/O error'):
        pub.publish_samples([make_sample(1), make_sample(2)])
    pub.close()
    assert failing.closed


def test_store_unreachable_at_start_is_retried_on_publish(conf, store,
                                                          monkeypatch):
    real = storage.get_connection
    up = []

    def get_connection(conf):
        if not up:
            raise storage_base.StorageError('connection refused')
        return real(conf)

    monkeypatch.setattr(storage, 'get_connection', get_connection)
    pub = make(conf)
    with pytest.raises(base.PublisherError, match='connection refused'):
        pub.publish_samples([make_sample(1)])
    up.append(True)
    pub.publish_samples([make_sample(1)])
    pub.close()
    assert stored_ids(store) == [make_sample(1).id]


def test_unreachable_postgresql_fails_the_batch():
    port = basics.free_port()
    conf = basics.make_conf(
        database__connection=f'postgresql+psycopg://calipso:pw@127.0.0.1:'
                             f'{port}/calipso?connect_timeout=2')
    pub = make(conf)
    try:
        with pytest.raises(base.PublisherError) as error:
            pub.publish_samples([make_sample(1)])
    finally:
        pub.close()
    assert 'pw@' not in str(error.value)
