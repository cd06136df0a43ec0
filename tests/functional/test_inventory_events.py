"""The inventory from the bus: the shared nova, neutron and cinder fixtures
sent through the real RabbitMQ with oslo.messaging's Notifier to a real
notification agent, read back from its inventory store (PostgreSQL)."""

import uuid

import pytest
import sqlalchemy as sa

from calipso_agent import inventory
from calipso_agent.notification import base
from calipso_agent.storage.sql import postgresql
from tests.helpers import basics, bus, daemons, fixtures
from tests.helpers import inventory as inventory_helpers

pytestmark = [pytest.mark.functional, pytest.mark.usefixtures('broker')]

POSTGRESQL_URL = 'postgresql://postgres@127.0.0.1:5432/test'
EXCHANGES = {'nova': 'nova', 'neutron': 'neutron', 'cinder': 'cinder'}


@pytest.fixture
def database():
    """A PostgreSQL database of the test's own, dropped afterwards."""
    name = f'calipso_inventory_{uuid.uuid4().hex[:12]}'
    admin = sa.create_engine(
        sa.engine.make_url(POSTGRESQL_URL).set(
            drivername='postgresql+psycopg'),
        isolation_level='AUTOCOMMIT')
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE {name}'))
    except sa.exc.OperationalError as exc:
        pytest.skip(f'no PostgreSQL at {POSTGRESQL_URL}: {exc}')
    yield POSTGRESQL_URL.rsplit('/', 1)[0] + '/' + name
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS {name} WITH (FORCE)'))
    admin.dispose()


def graph_differences(got, expected):
    """What differs between two graphs, field by field."""
    found = []
    for side in (0, 1):
        for key in sorted(set(got[side]) | set(expected[side]), key=str):
            a, b = got[side].get(key) or {}, expected[side].get(key) or {}
            found.extend((key, field, a.get(field), b.get(field))
                         for field in sorted(set(a) | set(b))
                         if a.get(field) != b.get(field))
    return found


def sendable_fixtures():
    """(exchange, envelope) of every fixture the endpoint makes changes
    of, in the order they happened."""
    found = []
    for name, notification in inventory_helpers.handled_fixtures():
        if not inventory_helpers.changes_of(notification):
            continue
        envelope = fixtures.load_envelope(name)
        found.append((EXCHANGES[name.split('_', 1)[0]], envelope))
    return found


def test_fixtures_through_the_bus_make_the_graph(tmp_path, topic, database):
    sendable = sendable_fixtures()
    assert len(sendable) > 40
    expected_store = postgresql.Connection(basics.make_conf(), database)
    for _, envelope in sendable:
        _, notification = base.from_envelope(envelope)
        expected_store.apply_inventory(*inventory_helpers.split(
            inventory_helpers.changes_of(notification)))
    expected = inventory_helpers.graph(expected_store, created=False)
    with expected_store.engine.begin() as conn:
        conn.execute(sa.text('DELETE FROM link'))
        conn.execute(sa.text('DELETE FROM inventory'))
    assert len(expected[0]) > 20

    agent = daemons.AgentProcess(
        tmp_path / 'agent', topic,
        {'sources': [{'name': 'all', 'meters': ['*'], 'sinks': ['file']}],
         'sinks': [{'name': 'file', 'publishers': [
             f'file://{tmp_path}/samples.jsonl']}]},
        exchanges=tuple(EXCHANGES.values()), batch_size=7,
        extra_config=f'[inventory]\nconnection = {database}\n')
    try:
        agent.start()
        for exchange in EXCHANGES.values():
            envelopes = [e for x, e in sendable if x == exchange]
            bus.publish_notifications(topic, envelopes, exchange=exchange,
                                      keep_timestamps=True)

        def arrived():
            return inventory_helpers.graph(expected_store,
                                           created=False) == expected

        if not basics.wait_until(arrived, 60):
            for difference in graph_differences(inventory_helpers.graph(
                    expected_store, created=False), expected):
                print(difference)
            raise AssertionError('the graph differs')
        assert basics.wait_until(
            lambda: bus.queue_counts(f'{topic}.info')[0] == 0, 10)
        # The vNIC of the versioned nova instance, linked to its port.
        objects, links = inventory_helpers.graph(expected_store)
        vm = '178b0921-8f85-4257-88b6-2e743b5a975c'
        assert objects[vm]['type'] == 'instance'
        assert any(key[2] == 'vnic-port' and key[0].startswith(vm)
                   for key in links)
        # Sent again (a redelivery after a crash): nothing changes.
        bus.publish_notifications(topic, [e for x, e in sendable
                                          if x == 'neutron'],
                                  exchange='neutron', keep_timestamps=True)
        assert basics.wait_until(
            lambda: bus.queue_counts(f'{topic}.info')[0] == 0, 30)
        assert inventory_helpers.graph(expected_store,
                                       created=False) == expected
        assert inventory.DELETED in {o['state'] for o in objects.values()}
        agent.stop()
        # Every notification was acknowledged.
        assert bus.queue_counts(f'{topic}.info') == (0, 0)
    finally:
        agent.stop()
        expected_store.close()
