"""How the SQL driver's writes fail on the real PostgreSQL server: what the
store refuses for good is a StorageDataError, a server away is
StorageUnavailableError (the writers bisect the first, requeue the second)."""

import secrets

import pytest

from calipso_agent.storage import base
from calipso_agent.storage.sql import postgresql
from tests.helpers import basics, databases
from tests.helpers.basics import make_sample

pytestmark = pytest.mark.functional


@pytest.fixture(scope='module')
def store():
    with databases.shared_postgresql_database() as url:
        if url is None:
            pytest.skip('the shared PostgreSQL server does not answer')
        connection = postgresql.Connection(basics.make_conf(), url)
        yield connection
        connection.close()


@pytest.mark.parametrize('field,index,first', [
    ('resource_id', 'ix_sample_resource_ts', 100),
    ('project_id', 'ix_sample_project_name_ts', 200),
])
def test_an_index_row_too_big_is_a_data_error(store, field, index, first):
    poisoned = make_sample(first + 1, **{field: secrets.token_urlsafe(3000)})
    with pytest.raises(base.StorageDataError, match=index) as raised:
        store.record_samples([make_sample(first), poisoned])
    assert 'ProgramLimitExceeded' in str(raised.value)
    assert '\n' not in str(raised.value)
    # Nothing of the batch was written: the writer retries the others.
    assert store.record_samples([make_sample(first)]).stored == 1


def test_metadata_nested_past_the_stack_is_a_rejected_sample(store):
    deep = {}
    for _ in range(5000):
        deep = {'a': deep}
    bad = make_sample(11, resource_metadata={'deep': deep})
    result = store.record_samples([make_sample(10), bad])
    assert result.stored == 1
    assert [(s.id, r) for s, r in result.rejected] == [
        (bad.id, 'resource_metadata is not JSON: nested too deeply to '
                 'encode')]


def test_a_server_away_is_unavailable_and_ping_says_so():
    with databases.PrivatePostgres() as pg:
        pg.start()
        store = postgresql.Connection(basics.make_conf(), pg.url)
        try:
            store.ping()
            pg.stop()
            with pytest.raises(base.StorageUnavailableError):
                store.record_samples([make_sample(0)])
            with pytest.raises(base.StorageUnavailableError):
                store.ping()
            pg.start()
            store.ping()
            assert store.record_samples([make_sample(0)]).stored == 1
        finally:
            store.close()
