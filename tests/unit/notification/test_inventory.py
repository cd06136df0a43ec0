"""The inventory endpoint on the real notifications of the shared fixtures,
and the dispatcher writing its changes: one write per batch, ack after it,
requeue on failure, a malformed notification dropped alone."""

import copy
import gc
import logging

import oslo_messaging
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calipso_agent import inventory
from calipso_agent.notification import base, manager, meters
from calipso_agent.storage import base as storage_base
from calipso_agent.storage.sql import sqlite
from tests.helpers import basics, fixtures
from tests.helpers import inventory as inventory_helpers

HANDLED = oslo_messaging.NotificationResult.HANDLED
REQUEUE = oslo_messaging.NotificationResult.REQUEUE

VM = '178b0921-8f85-4257-88b6-2e743b5a975c'
PORT = 'ce531f90-199f-48c0-816c-13e38010b442'


def notification(name, timestamp=None, message_id=None):
    _, result = base.from_envelope(fixtures.load_envelope(name))
    if timestamp is not None:
        result['metadata']['timestamp'] = timestamp
    if message_id is not None:
        result['metadata']['message_id'] = message_id
    return result


def changes(name, **kwargs):
    return inventory_helpers.endpoint().inventory_changes(
        notification(name, **kwargs))


def objects_of(found):
    return {c['id']: c for c in inventory_helpers.split(found)[0]}


def links_of(found):
    return {inventory.link_key(c): c
            for c in inventory_helpers.split(found)[1]}


def test_nova_legacy_instance():
    found = changes('nova_legacy__calipso__instance_add')
    vm = objects_of(found)['27a87908-bc1b-45cc-9238-09ad1ae686a7']
    assert (vm['type'], vm['name'], vm['state']) == ('instance', 'test8',
                                                     'ACTIVE')
    assert (vm['parent_id'], vm['parent_type'], vm['host']) == (
        'node-252.cisco.com', 'host', 'node-252.cisco.com')
    assert vm['project_id'] == '75c0eb79ff4a42b0ae4973c8375ddf40'
    assert vm['last_event_at'] == '2016-09-08T22:01:43.189907+00:00'
    assert vm['attributes']['instance_type'] == 'm1.micro'
    assert 'audit_period_ending' not in vm['attributes']
    assert set(links_of(found)) == {(vm['id'], 'node-252.cisco.com',
                                     'instance-host')}



def test_versioned_instance_attributes_are_its_fields_but_the_noise():
    sent = notification('nova_versioned__nova-doc__instance-create-end')
    fields = sent['payload']['nova_object.data']
    fields['nova_object.version'] = '1.0'
    given = dict(fields)
    vm = objects_of(inventory_helpers.endpoint().inventory_changes(sent))[VM]
    assert vm['attributes']['image_uuid'] == fields['image_uuid']
    assert vm['attributes']['flavor'] == fields['flavor']
    for noise in ('ip_addresses', 'request_id', 'nova_object.version'):
        assert noise not in vm['attributes']
    assert fields == given

def test_nova_update_to_deleted_is_a_tombstone():
    (vm,) = changes('nova_legacy__calipso__instance_delete')
    assert (vm['state'], vm['deleted_at']) == ('deleted', vm['last_event_at'])


def test_nova_versioned_instance_and_its_vnics():
    found = changes('nova_versioned__nova-doc__instance-create-end')
    objects = objects_of(found)
    vnic_id = f'{VM}-tap{PORT[:11]}'
    assert set(objects) == {VM, vnic_id}
    vnic = objects[vnic_id]
    assert (vnic['name'], vnic['parent_id'], vnic['host']) == (
        'tapce531f90-19', VM, 'compute')
    assert vnic['attributes']['mac_address'] == 'fa:16:3e:4c:2c:30'
    assert objects[VM]['link_targets'] == {'instance-vnic': [vnic_id]}
    assert set(links_of(found)) == {(VM, 'compute', 'instance-host'),
                                    (VM, vnic_id, 'instance-vnic'),
                                    (vnic_id, PORT, 'vnic-port')}


def test_neutron_port_of_an_instance_makes_its_vnic():
    found = changes('neutron__calipso__port_instance_add')
    port_id = '1233445-75b6-4c05-9480-4bc648845c6f'
    vm_id = '27a87908-bc1b-45cc-9238-09ad1ae686a7'
    vnic_id = inventory.vnic_id(vm_id, port_id)
    objects = objects_of(found)
    assert objects[port_id]['parent_id'] == (
        '55550a69-24eb-47f5-a458-3aa086cc71c2')
    assert objects[port_id]['state'] == 'DOWN'
    assert objects[vnic_id]['host'] == 'node-223.cisco.com'
    assert set(links_of(found)) == {
        (port_id, '55550a69-24eb-47f5-a458-3aa086cc71c2', 'port-network'),
        (vm_id, vnic_id, 'instance-vnic'), (vnic_id, port_id, 'vnic-port')}


def test_router_interfaces_open_and_close_links():
    opened = links_of(changes('neutron__calipso__interface_add'))
    closed = links_of(changes('neutron__calipso__interface_delete'))
    assert set(opened) == set(closed) == {
        ('c57216ca-c1c4-430d-a045-32851ca879e3',
         '6f6ef3b5-76c9-4f70-81e5-f3cc196db025', 'router-subnet'),
        ('c57216ca-c1c4-430d-a045-32851ca879e3',
         '1233445-75b6-4c05-9480-4bc648845c6f', 'router-port')}
    assert {lk['state'] for lk in opened.values()} == {'ACTIVE'}
    assert {lk['state'] for lk in closed.values()} == {'deleted'}


def test_router_gateway_set_and_removed():
    router_id = 'bde87a5a-7968-4f3b-952c-e87681a96078'
    found = changes('neutron__calipso__router_set_gateway')
    assert set(links_of(found)) == {
        (router_id, 'a55ff1e8-3821-4e5f-bcfd-07df93720a4f',
         'router-network')}
    (router,) = changes('neutron__calipso__router_del_gateway')
    assert router['link_targets'] == {'router-network': []}


def test_floating_ip_and_volume_attachments():
    found = changes('neutron__searchlight__floatingip-associate-end')
    fip = objects_of(found)['1a124625-4c71-4d20-a65b-3cf34465dab2']
    assert (fip['type'], fip['name']) == ('floating_ip', '172.25.0.20')
    assert set(links_of(found)) == {
        (fip['id'], '163da95e-740d-4fe0-a8ee-91b77bb5ae33',
         'floating_ip-port')}
    attached = changes('cinder__searchlight__volume-attach-end')
    volume_id = 'f54b1d2f-4514-4688-8da7-4bc66767b6be'
    assert set(links_of(attached)) == {
        (volume_id, 'ae81266c-a292-4e48-bf81-a3894bd62f4a',
         'volume-instance')}
    (volume,) = changes('cinder__searchlight__volume-detach-end')
    assert volume['link_targets'] == {'volume-instance': []}


def test_deletes_name_only_the_id():
    (network,) = changes('neutron__calipso__network_delete')
    assert (network['id'], network['type'], network['state']) == (
        '0bb0ba6c-6863-4121-ac89-93f81a9da2b0', 'network', 'deleted')


def test_events_not_handled():
    handles = inventory_helpers.endpoint().handles
    for event_type in ('port.delete.start', 'instance.delete.start',
                       'compute.instance.exists', 'image.update'):
        assert not handles(event_type), event_type
    for event_type in ('port.delete.end', 'router.interface.create',
                       'floatingip.update', 'instance.update',
                       'compute.instance.live_migration.post.dest.end'):
        assert handles(event_type), event_type


def test_malformed_notification_is_refused_precisely():
    with pytest.raises(base.NotificationError, match='timestamp'):
        changes('neutron__ceilometer-tests__bulk_network_create')
    broken = notification('neutron__calipso__port_instance_add')
    del broken['payload']['port']['network_id']
    with pytest.raises(base.NotificationError, match='network_id'):
        inventory_helpers.endpoint().inventory_changes(broken)


# --- the dispatcher ---------------------------------------------------------

class RecordingPipeline:
    def __init__(self):
        self.published = []

    def publish_samples(self, samples):
        self.published.extend(samples)


class FlakyStore:
    """A store whose apply_inventory fails ``failures`` times first."""

    def __init__(self, store, failures=0):
        self.store = store
        self.failures = failures
        self.writes = 0

    def apply_inventory(self, objects, links):
        if self.failures:
            self.failures -= 1
            raise storage_base.StorageUnavailableError('connection refused')
        self.writes += 1
        return self.store.apply_inventory(objects, links)

    def ping(self):
        pass


@pytest.fixture
def store(tmp_path):
    connection = sqlite.Connection(basics.make_conf(),
                                   f'sqlite:///{tmp_path}/inventory.sqlite')
    yield connection
    connection.close()


def dispatcher(endpoints, store, pipeline=None):
    d = manager.SampleDispatcher(endpoints, pipeline or RecordingPipeline(),
                                 (0.5, 4), inventory_store=store)
    d.outage.wait = lambda delay: None
    return d


def story():
    return [notification(name, message_id=f'm-{name}') for name in (
        'neutron__calipso__network_add', 'neutron__calipso__subnet_add',
        'neutron__calipso__port_instance_add',
        'nova_legacy__calipso__instance_add',
        'neutron__calipso__interface_add')]


def test_batch_changes_are_one_write_before_the_ack(store):
    flaky = FlakyStore(store)
    d = dispatcher([inventory_helpers.endpoint()], flaky)
    assert d.info(story()) == HANDLED
    assert flaky.writes == 1
    objects, links = inventory_helpers.graph(store)
    assert '27a87908-bc1b-45cc-9238-09ad1ae686a7' in objects
    assert ('c57216ca-c1c4-430d-a045-32851ca879e3',
            '6f6ef3b5-76c9-4f70-81e5-f3cc196db025', 'router-subnet') in links


def test_a_delivered_batch_leaves_no_reference_cycle(store):
    """What a batch made (items, planned notifications, changes) is freed
    with it, not left to the garbage collector: on a busy bus the
    collector's passes over every batch cost more than the rules."""
    d = dispatcher([inventory_helpers.endpoint()], store)
    assert d.info(story()) == HANDLED  # the store's first use: its caches
    batch = story() + list(port_story())
    gc.collect()
    gc.disable()
    try:
        assert d.info(batch) == HANDLED
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_store_failure_requeues_and_nothing_is_lost(store):
    flaky = FlakyStore(store, failures=2)
    d = dispatcher([inventory_helpers.endpoint()], flaky)
    assert [d.info(story()) for _ in range(3)] == [REQUEUE, REQUEUE, HANDLED]
    once = inventory_helpers.graph(store)
    assert once[0]
    # The redelivery of an acknowledged batch changes nothing.
    assert d.info(story()) == HANDLED
    assert inventory_helpers.graph(store) == once


def test_malformed_notification_is_dropped_alone(store, caplog):
    meter = meters.MeterEndpoint(basics.make_conf(),
                                 meters.MeterDefinitions.from_files(
                                     [fixtures.CEILOMETER_METERS]))
    pipeline = RecordingPipeline()
    d = dispatcher([meter, inventory_helpers.endpoint()], store, pipeline)
    bad = notification('nova_legacy__ceilometer-tests__test_notice',
                       message_id='bad-one')
    bad['payload']['host'] = ['not', 'a', 'host name']
    with caplog.at_level(logging.ERROR):
        assert d.info([bad] + story()) == HANDLED
    assert ('Notification bad-one (compute.instance.create.end): no '
            'inventory change can be made of it, dropped') in caplog.text
    assert 'host' in caplog.text
    objects = inventory_helpers.graph(store)[0]
    assert {'1233445-75b6-4c05-9480-4bc648845c6f',
            '27a87908-bc1b-45cc-9238-09ad1ae686a7'} <= set(objects)
    assert d.inventory_dropped == 1
    # Its samples still went.
    assert {s.message_id for s in pipeline.published} >= {'bad-one'}


def test_live_migration_from_the_bus_moves_instance_and_vnic(store):
    d = dispatcher([inventory_helpers.endpoint()], store)
    d.info([notification('nova_versioned__nova-doc__instance-create-end',
                         timestamp='2024-05-01T10:00:00')])
    d.info([notification(
        'nova_versioned__nova-doc__instance-live_migration_post_dest-end',
        timestamp='2024-05-01T11:00:00')])
    objects, links = inventory_helpers.graph(store)
    vnic = objects[f'{VM}-tap{PORT[:11]}']
    assert (objects[VM]['host'], vnic['host']) == ('host2', 'host2')
    assert vnic['id_path'] == f'/host2/{VM}/{vnic["id"]}'
    assert links[(VM, 'compute', 'instance-host')]['state'] == 'deleted'
    assert links[(VM, 'host2', 'instance-host')]['state'] == 'ACTIVE'


def test_service_opens_the_configured_inventory_store(tmp_path):
    url = f'sqlite:///{tmp_path}/elsewhere.sqlite'
    conf = basics.make_conf(inventory__connection=url)
    store = manager.open_inventory_store(conf, [inventory_helpers.endpoint()])
    try:
        assert store.connection().engine.url.database.endswith(
            'elsewhere.sqlite')
    finally:
        store.close()
    assert manager.open_inventory_store(conf, []) is None


def test_unreachable_inventory_store_requeues_until_it_answers(store):
    url = f'postgresql://postgres@127.0.0.1:{basics.free_port()}/x'
    conf = basics.make_conf(inventory__connection=url)
    lazy = manager.InventoryStore(conf)
    d = dispatcher([inventory_helpers.endpoint()], lazy)
    assert d.info(story()) == REQUEUE
    lazy.url = store.engine.url.render_as_string(hide_password=False)
    assert d.info(story()) == HANDLED
    assert '27a87908-bc1b-45cc-9238-09ad1ae686a7' in (
        inventory_helpers.graph(store)[0])


# --- a batch's notifications of one subject ---------------------------------

def keys_of(changes):
    return sorted((c['id'],) if 'link_type' not in c
                  else inventory.link_key(c) for c in changes)


def variants():
    """Every handled fixture, and each again later with its statuses and
    names changed (what an update says), as (subject, its change keys)."""
    found = []
    for _, sent in inventory_helpers.handled_fixtures():
        later = copy.deepcopy(sent)
        later['metadata']['timestamp'] = '2030-01-01 00:00:00.000000'
        for item in _items(later['payload']):
            for field in ('status', 'name', 'display_name'):
                if field in item:
                    item[field] = f'{item[field]}-changed'
        for n in (sent, later):
            subject = inventory_helpers.endpoint().inventory_subject(n)
            found.append((subject, keys_of(inventory_helpers.changes_of(n))))
    return found


def _items(payload):
    yield payload
    for value in payload.values():
        if isinstance(value, dict):
            yield from _items(value)


def test_notifications_of_one_subject_change_the_same_keys():
    by_subject = {}
    subjects = 0
    for subject, keys in variants():
        if subject is None:
            continue
        subjects += 1
        assert by_subject.setdefault(subject[0], keys) == keys, subject
    # Nova's (legacy and versioned) and neutron's creates and updates.
    assert subjects > 40
    families = {subject[0] for subject in by_subject}
    assert {'compute', 'instance', 'network', 'subnet', 'port', 'router',
            'floatingip'} <= families


@pytest.mark.parametrize('name, change', [
    ('neutron__calipso__port_instance_add',
     lambda n: n['payload']['port'].update(device_id='another-vm')),
    ('neutron__calipso__port_instance_add',
     lambda n: n['payload']['port'].update(network_id='another-net')),
    ('nova_versioned__nova-doc__instance-create-end',
     lambda n: n['payload']['nova_object.data'].update(host='elsewhere')),
    ('nova_versioned__nova-doc__instance-create-end',
     lambda n: n['payload']['nova_object.data'].update(ip_addresses=[])),
])
def test_a_key_field_changed_is_another_subject(name, change):
    sent = notification(name)
    other = copy.deepcopy(sent)
    change(other)
    endpoint = inventory_helpers.endpoint()
    assert endpoint.inventory_subject(sent)[0] != (
        endpoint.inventory_subject(other)[0])


@pytest.mark.parametrize('name, change', [
    ('neutron__calipso__port_instance_add',
     lambda n: n['payload']['port'].update(device_id=['a', 'list'])),
    ('nova_versioned__nova-doc__instance-create-end',
     lambda n: n['payload']['nova_object.data'].update(host={'a': 'dict'})),
    ('nova_versioned__nova-doc__instance-create-end',
     lambda n: n['payload']['nova_object.data']['ip_addresses'][0][
         'nova_object.data'].update(port_uuid=7)),
])
def test_a_key_field_of_the_wrong_type_is_no_subject_and_dropped_alone(
        name, change, store, caplog):
    broken = notification(name, message_id='m-broken')
    change(broken)
    assert inventory_helpers.endpoint().inventory_subject(broken) is None
    d = dispatcher([inventory_helpers.endpoint()], store)
    with caplog.at_level(logging.ERROR):
        assert d.info(story() + [broken]) == HANDLED
    assert 'Notification m-broken' in caplog.text
    assert d.inventory_dropped == 1
    assert '27a87908-bc1b-45cc-9238-09ad1ae686a7' in (
        inventory_helpers.graph(store)[0])


@pytest.mark.parametrize('name', [
    'nova_legacy__calipso__instance_delete',
    'neutron__calipso__interface_add',
])
def test_deletions_and_interfaces_have_no_subject(name):
    assert inventory_helpers.endpoint().inventory_subject(
        notification(name)) is None


def port_story():
    """A port created (DOWN) then updated (ACTIVE), one batch."""
    created = notification('neutron__calipso__port_instance_add',
                           timestamp='2024-05-01T10:00:00',
                           message_id='m-create')
    updated = copy.deepcopy(created)
    updated['event_type'] = 'port.update.end'
    updated['metadata'].update(timestamp='2024-05-01T10:00:05',
                               message_id='m-update')
    updated['payload']['port']['status'] = 'ACTIVE'
    created['payload']['port']['status'] = 'DOWN'
    return created, updated


class CountingEndpoint(type(inventory_helpers.endpoint())):
    made = 0

    def inventory_changes(self, notification):
        self.made += 1
        return super().inventory_changes(notification)


def test_of_one_subject_in_a_batch_the_newest_alone_is_made(store):
    created, updated = port_story()
    endpoint = CountingEndpoint(basics.make_conf())
    d = dispatcher([endpoint], store)
    assert d.info([updated, created]) == HANDLED
    assert endpoint.made == 1
    # The graph of the two written one after the other.
    apart = sqlite.Connection(basics.make_conf(), 'sqlite://')
    try:
        one_by_one = dispatcher([inventory_helpers.endpoint()], apart)
        for n in (created, updated):
            assert one_by_one.info([n]) == HANDLED
        # (Without a creation time in the events, an object's is the
        # first instant applied.)
        assert inventory_helpers.graph(
            apart, created=False) == inventory_helpers.graph(
                store, created=False)
    finally:
        apart.close()
    port = inventory_helpers.graph(store)[0][created['payload']['port']['id']]
    assert port['state'] == 'ACTIVE'


class RefusingStore(FlakyStore):
    """Refuses a write holding an ACTIVE port (a poison change)."""

    def apply_inventory(self, objects, links):
        if any(o['type'] == 'port' and o['state'] == 'ACTIVE'
               for o in objects):
            raise storage_base.StorageDataError('value out of range')
        return super().apply_inventory(objects, links)


def test_the_older_goes_when_the_newer_of_its_subject_is_refused(store):
    """The store refuses the newer port update: the batch is split, the
    older one is made and written alone, the newer dead-lettered."""
    created, updated = port_story()
    d = dispatcher([inventory_helpers.endpoint()], RefusingStore(store))
    assert d.info([created, updated]) == HANDLED
    objects = inventory_helpers.graph(store)[0]
    assert objects[created['payload']['port']['id']]['state'] == 'DOWN'
    assert d.delivery.dead_lettered == 1


def test_a_planned_notification_that_cannot_be_made_is_dropped_alone(
        store, caplog):
    created, updated = port_story()
    updated['payload']['port']['device_owner'] = 'compute:nova'
    updated['payload']['port']['name'] = ['not', 'a', 'name']
    d = dispatcher([inventory_helpers.endpoint()], store)
    with caplog.at_level(logging.ERROR):
        assert d.info(list(story()) + [updated]) == HANDLED
    assert ('Notification m-update (port.update.end): no inventory change '
            'can be made of it, dropped') in caplog.text
    assert d.inventory_dropped == 1
    assert '27a87908-bc1b-45cc-9238-09ad1ae686a7' in (
        inventory_helpers.graph(store)[0])


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(data=st.data())
def test_property_batches_through_the_dispatcher_are_their_changes(
        tmp_path_factory, data):
    """Fixtures, each sent again at a few instants (ties, reorderings)
    with its statuses changed, in batches: the dispatcher's graph is the
    graph of every change of each batch applied."""
    handled = [n for _, n in inventory_helpers.handled_fixtures()]
    sent = []
    for index in data.draw(st.lists(st.integers(0, len(handled) - 1),
                                    min_size=1, max_size=30), label='sent'):
        n = copy.deepcopy(handled[index])
        second = data.draw(st.integers(0, 3), label='second')
        n['metadata']['timestamp'] = f'2031-01-01 00:00:0{second}'
        for item in _items(n['payload']):
            if 'status' in item:
                item['status'] = data.draw(st.sampled_from(
                    ['ACTIVE', 'DOWN', 'BUILD']), label='status')
        sent.append(n)
    batch = data.draw(st.integers(1, 12), label='batch')
    ours = sqlite.Connection(basics.make_conf(), 'sqlite://')
    every = sqlite.Connection(basics.make_conf(), 'sqlite://')
    try:
        d = dispatcher([inventory_helpers.endpoint()], ours)
        for start in range(0, len(sent), batch):
            part = sent[start:start + batch]
            assert d.info(part) == HANDLED
            changes = [c for n in part
                       for c in inventory_helpers.changes_of(n)]
            if changes:
                every.apply_inventory(*inventory_helpers.split(changes))
        assert inventory_helpers.graph(ours) == inventory_helpers.graph(
            every)
    finally:
        ours.close()
        every.close()
