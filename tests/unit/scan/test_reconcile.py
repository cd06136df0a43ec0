"""The scan's deletions: only inside the scope of what answered, never over
a newer change."""

import pytest

from calipso_agent import inventory
from calipso_agent.scan import mapping, reconcile
from tests.helpers import basics

BEFORE = '2026-02-01T00:00:00Z'
STAMP = '2026-02-01T01:00:00Z'
AFTER = '2026-02-01T02:00:00Z'


@pytest.fixture
def store(tmp_path):
    from calipso_agent.storage.sql import sqlite
    connection = sqlite.Connection(basics.make_conf(),
                                   f'sqlite:///{tmp_path}/s.sqlite')
    connection.upgrade()
    yield connection
    connection.close()


def test_scope_of_the_services_that_answered():
    types, link_types = reconcile.scope(['compute', 'volume'])
    assert 'instance' in types and 'volume' in types
    assert 'port' not in types and 'host' not in types
    assert 'volume-instance' in link_types
    assert 'port-network' not in link_types
    types, _ = reconcile.scope(['compute', 'network'])
    assert 'host' in types
    assert reconcile.scope([]) == ([], [])


def test_every_type_and_link_type_has_an_owner():
    types, link_types = reconcile.scope(list(reconcile.SCOPES))
    assert set(types) | {'region'} == set(inventory.TYPES)
    assert set(link_types) == set(inventory.LINK_TYPES)


def instance(oid, at=BEFORE, **fields):
    return inventory.make_object('instance', oid, at, project_id='p-1',
                                 parent_id='h-1', host='h-1',
                                 state='ACTIVE', **fields)


def test_what_the_cloud_lacks_is_tombstoned_in_scope_only(store):
    store.apply_inventory(
        [instance('kept'), instance('gone'), instance('newer', at=AFTER),
         inventory.make_object('port', 'port-1', BEFORE, project_id='p-1',
                               parent_id='n-1', state='ACTIVE'),
         inventory.tombstone('instance', 'dead', BEFORE)],
        [inventory.make_link('instance', 'gone', 'host', 'h-1', BEFORE),
         inventory.make_link('instance', 'kept', 'host', 'h-1', BEFORE),
         inventory.make_link('port', 'port-1', 'network', 'n-1', BEFORE)])
    found = mapping.Mapped(
        objects=[instance('kept', at=STAMP)],
        links=[inventory.make_link('instance', 'kept', 'host', 'h-1',
                                   STAMP)])
    types, link_types = reconcile.scope(['compute'])
    gone = reconcile.deletions(store, found, types, link_types, STAMP)
    assert [(o['id'], o['state'], o['deleted_at']) for o in gone.objects] \
        == [('gone', inventory.DELETED, inventory.timestamp(STAMP))]
    assert gone.objects[0]['project_id'] == 'p-1'
    assert [(link['source_id'], link['state']) for link in gone.links] == [
        ('gone', inventory.DELETED)]
    store.apply_inventory(gone.objects, gone.links)
    stored = {o['id']: o for o in store.get_inventory()}
    assert stored['gone']['state'] == inventory.DELETED
    assert stored['newer']['state'] == 'ACTIVE'
    assert stored['port-1']['state'] == 'ACTIVE'   # network did not answer
    assert stored['kept']['state'] == 'ACTIVE'
    assert [link['state'] for link in store.get_links(
        link_type='port-network')] == ['ACTIVE']


def test_children_of_unread_parents_are_left_alone(store):
    vnic = inventory.make_object('vnic', 'vm-1-tapabc', BEFORE,
                                 parent_id='vm-1', state='ACTIVE')
    store.apply_inventory(
        [instance('vm-1'), vnic],
        [inventory.make_link('instance', 'vm-1', 'vnic', vnic['id'],
                             BEFORE),
         inventory.make_link('vnic', vnic['id'], 'port', 'p', BEFORE)])
    found = mapping.Mapped(objects=[instance('vm-1', at=STAMP)])
    types, link_types = reconcile.scope(['compute'])
    gone = reconcile.deletions(store, found, types, link_types, STAMP,
                               unread=['vm-1'])
    assert gone.objects == [] and gone.links == []
    gone = reconcile.deletions(store, found, types, link_types, STAMP)
    assert [o['id'] for o in gone.objects] == [vnic['id']]
    assert {link['link_type'] for link in gone.links} == {
        'instance-vnic', 'vnic-port'}
