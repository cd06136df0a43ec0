"""The inventory scan against the real Keystone, whose catalog points at a
fake cloud (tests/helpers/openstack_cloud.py), into real stores (SQLite,
PostgreSQL, and MongoDB on mongomock)."""

import collections
import datetime
import os
import subprocess
import sys

import mongomock
import pytest

from calipso_agent import inventory
from calipso_agent.scan import scanner
from tests.helpers import basics, databases

pytestmark = pytest.mark.functional


@pytest.fixture(params=['sqlite', 'postgresql', 'mongodb-mongomock'])
def store(request, tmp_path):
    conf = basics.make_conf()
    if request.param == 'sqlite':
        from calipso_agent.storage.sql import sqlite
        connection = sqlite.Connection(
            conf, f'sqlite:///{tmp_path}/inventory.sqlite')
        connection.upgrade()
        yield connection
        connection.close()
    elif request.param == 'postgresql':
        from calipso_agent.storage.sql import postgresql
        with databases.shared_postgresql_database() as url:
            if url is None:
                pytest.skip('no PostgreSQL at 127.0.0.1:5432')
            connection = postgresql.Connection(conf, url)
            connection.upgrade()
            yield connection
            connection.close()
    else:
        from calipso_agent.storage import impl_mongodb
        connection = impl_mongodb.Connection(
            conf, 'mongodb://localhost/calipso_scan',
            client=mongomock.MongoClient())
        connection.upgrade()
        yield connection
        connection.close()


def scan(deployment, store, **overrides):
    conf = basics.make_conf(
        service_credentials__region_name=deployment.region,
        service_credentials__interface='internal', **overrides)
    return scanner.scan(conf, store, session=deployment.session)


@pytest.fixture
def projects(keystone):
    return (keystone.user_a.project_id, keystone.user_b.project_id)


@pytest.fixture
def deployment(openstack_deployment):
    return openstack_deployment(hosts=3, zones=('az-1', 'az-2'),
                                networks_per_project=2,
                                servers_per_network=2, volumes_per_server=1)


def objects(store, **kwargs):
    return {o['id']: o for o in store.get_inventory(**kwargs)}


def live(store, type):
    return {i for i, o in objects(store, types=[type]).items()
            if not inventory.is_deleted(o)}


def open_links(store, link_type):
    return {(link['source_id'], link['target_id'])
            for link in store.get_links(link_type=link_type)
            if not inventory.is_deleted(link)}


def expected_vnics(cloud):
    return {inventory.vnic_id(port['device_id'], port['id'])
            for port in cloud.ports.values()
            if port['device_owner'].startswith('compute:')}


def test_full_scan(deployment, store, keystone, projects):
    cloud = deployment.cloud
    result = scan(deployment, store)
    assert result.failed == []
    assert result.answered == ['compute', 'identity', 'network', 'volume']
    assert live(store, 'instance') == set(cloud.servers)
    assert live(store, 'network') == set(cloud.networks)
    assert live(store, 'subnet') == set(cloud.subnets)
    assert live(store, 'port') == set(cloud.ports)
    assert live(store, 'router') == set(cloud.routers)
    assert live(store, 'floating_ip') == set(cloud.floatingips)
    assert live(store, 'volume') == set(cloud.volumes)
    assert live(store, 'vnic') == expected_vnics(cloud)
    assert live(store, 'host') == {'compute-1', 'compute-2', 'compute-3',
                                   'network-1'}
    assert live(store, 'availability_zone') == {'az-az-1', 'az-az-2'}
    assert live(store, 'vedge') == {inventory.vedge_id(h) for h in (
        'compute-1', 'compute-2', 'compute-3', 'network-1')}
    assert set(projects) <= live(store, 'project')
    region = objects(store, types=['region'])
    assert list(region) == [inventory.region_id(deployment.region)]

    stored = objects(store)
    for server in cloud.servers.values():
        obj = stored[server['id']]
        host = server['OS-EXT-SRV-ATTR:host']
        assert (obj['parent_id'], obj['host'], obj['state'],
                obj['project_id']) == (host, host, 'ACTIVE',
                                       server['tenant_id'])
        zone = inventory.availability_zone_id(
            server['OS-EXT-AZ:availability_zone'])
        assert obj['id_path'] == (f'/{inventory.region_id(deployment.region)}'
                                  f'/{zone}/{host}/{server["id"]}')
    for host in ('compute-1', 'network-1'):
        assert stored[host]['project_id'] is None

    assert open_links(store, 'instance-host') == {
        (s['id'], s['OS-EXT-SRV-ATTR:host']) for s in cloud.servers.values()}
    assert open_links(store, 'vnic-port') == {
        (inventory.vnic_id(p['device_id'], p['id']), p['id'])
        for p in cloud.ports.values()
        if p['device_owner'].startswith('compute:')}
    assert open_links(store, 'port-network') == {
        (p['id'], p['network_id']) for p in cloud.ports.values()}
    assert open_links(store, 'floating_ip-port') == {
        (f['id'], f['port_id']) for f in cloud.floatingips.values()}
    assert open_links(store, 'volume-instance') == {
        (v['id'], a['server_id']) for v in cloud.volumes.values()
        for a in v['attachments']}
    assert open_links(store, 'router-network') == {
        (r['id'], r['external_gateway_info']['network_id'])
        for r in cloud.routers.values()}
    dhcp_services = {source for source, _ in open_links(
        store, 'vservice-network') if source.startswith('qdhcp-')}
    assert dhcp_services == {
        f'qdhcp-{n["id"]}@network-1' for n in cloud.networks.values()
        if not n['router:external']}


def test_a_second_scan_of_an_unchanged_cloud_changes_nothing_but_times(
        deployment, store):
    scan(deployment, store)
    first = objects(store)
    result = scan(deployment, store)
    assert result.deleted_objects == 0 and result.closed_links == 0
    second = objects(store)
    assert set(first) == set(second)
    for oid, obj in first.items():
        assert second[oid]['state'] == obj['state']
        assert second[oid]['last_event_at'] >= obj['last_event_at']


def test_paging(deployment, store):
    cloud = deployment.cloud
    cloud.max_limit = 3
    result = scan(deployment, store, inventory_scan__page_size=2)
    assert result.failed == []
    assert live(store, 'instance') == set(cloud.servers)
    assert live(store, 'port') == set(cloud.ports)
    assert live(store, 'volume') == set(cloud.volumes)
    assert live(store, 'network') == set(cloud.networks)
    pages = collections.Counter(
        path for _, _, path, query in cloud.requests if 'marker' in query)
    # Every paged list needed further pages.
    for path in ('/compute/v2.1/servers/detail', '/network/v2.0/ports',
                 '/network/v2.0/networks', '/volume/v3/volumes/detail'):
        assert pages[path] >= 2, path
    assert all(query.get('limit') == '2' for _, _, path, query in
               cloud.requests if path.endswith(('/ports', '/servers/detail',
                                                '/volumes/detail')))


def test_a_deletion_between_two_scans(deployment, store):
    cloud = deployment.cloud
    scan(deployment, store)
    server_id = next(s for s, server in cloud.servers.items()
                     if any(a['server_id'] == s for v in
                            cloud.volumes.values()
                            for a in v['attachments']))
    port_id = cloud.server_ports(server_id)[0]['id']
    vnic = inventory.vnic_id(server_id, port_id)
    volumes = {v['id'] for v in cloud.volumes.values()
               if any(a['server_id'] == server_id for a in v['attachments'])}
    cloud.delete_server(server_id)
    router_id, router = next(iter(cloud.routers.items()))
    del cloud.routers[router_id]

    result = scan(deployment, store)
    assert result.failed == []
    stored = objects(store)
    for gone in (server_id, vnic, port_id, router_id):
        assert stored[gone]['state'] == inventory.DELETED, gone
        assert stored[gone]['deleted_at'] == result.started_at
    assert live(store, 'instance') == set(cloud.servers)
    assert live(store, 'port') == set(cloud.ports)
    assert (server_id, stored[server_id]['host']) not in open_links(
        store, 'instance-host')
    assert all(source != server_id for source, _ in open_links(
        store, 'instance-vnic'))
    assert not {(v, server_id) for v in volumes} & open_links(
        store, 'volume-instance')
    for volume_id in volumes:
        assert stored[volume_id]['state'] == 'AVAILABLE'
    assert all(source != router_id for source, _ in open_links(
        store, 'router-network'))
    # What is still there stays live.
    assert live(store, 'vnic') == expected_vnics(cloud)


def test_a_failing_service_keeps_its_objects_and_the_others_complete(
        deployment, store):
    cloud = deployment.cloud
    scan(deployment, store)
    fip_id = next(iter(cloud.floatingips))
    del cloud.floatingips[fip_id]
    network_id = next(n for n, net in cloud.networks.items()
                      if not net['router:external'])
    cloud.networks[network_id]['status'] = 'DOWN'
    server_id = next(iter(cloud.servers))
    cloud.delete_server(server_id)
    cloud.fail('network', 503)

    result = scan(deployment, store)
    assert result.failed == ['network']
    assert '503' in result.services['network']
    stored = objects(store)
    # compute completed: the deleted server is marked deleted ...
    assert stored[server_id]['state'] == inventory.DELETED
    # ... but nothing network owns is touched: not deleted, not updated.
    assert stored[fip_id]['state'] == 'ACTIVE'
    assert stored[network_id]['state'] == 'ACTIVE'
    assert fip_id in {f for f, _ in open_links(store, 'floating_ip-port')}
    assert stored['network-1']['state'] == 'ACTIVE'  # hosts: shared scope
    assert inventory.vedge_id('network-1') in live(store, 'vedge')

    cloud.fail('network', None)
    result = scan(deployment, store)
    assert result.failed == []
    stored = objects(store)
    assert stored[fip_id]['state'] == inventory.DELETED
    assert stored[network_id]['state'] == 'DOWN'


def test_a_newer_event_is_not_undone_by_an_older_scan(deployment, store):
    cloud = deployment.cloud
    scan(deployment, store)
    later = (datetime.datetime.now(datetime.UTC)
             + datetime.timedelta(hours=1)).isoformat()
    server_id = next(iter(cloud.servers))
    server = cloud.servers[server_id]
    stored_server = objects(store, ids=[server_id])[server_id]
    # Events newer than the next scan: the server stopped, a new port
    # was created (the cloud's listing predates both).
    event_port = 'f0000000-0000-4000-8000-000000000001'
    network_id = next(iter(cloud.networks))
    store.apply_inventory([
        inventory.make_object(
            'instance', server_id, later, name=server['name'],
            project_id=server['tenant_id'],
            parent_id=stored_server['parent_id'], host=stored_server['host'],
            state='SHUTOFF'),
        inventory.make_object(
            'port', event_port, later, project_id=server['tenant_id'],
            parent_id=network_id, state='ACTIVE'),
    ])
    # And a deletion newer than the scan of something the cloud still lists.
    volume_id = next(iter(cloud.volumes))
    store.apply_inventory([inventory.tombstone(
        'volume', volume_id, later,
        project_id=cloud.volumes[volume_id]['os-vol-tenant-attr:tenant_id'])])

    result = scan(deployment, store)
    assert result.failed == []
    stored = objects(store)
    assert stored[server_id]['state'] == 'SHUTOFF'
    assert stored[event_port]['state'] == 'ACTIVE'
    assert stored[volume_id]['state'] == inventory.DELETED
    assert stored[server_id]['last_event_at'] == inventory.timestamp(later)


def test_an_update_in_the_cloud_replaces_an_older_event(deployment, store):
    cloud = deployment.cloud
    scan(deployment, store)
    server_id = next(iter(cloud.servers))
    cloud.update('servers', server_id, status='PAUSED')
    scan(deployment, store)
    assert objects(store, ids=[server_id])[server_id]['state'] == 'PAUSED'


def write_config(path, keystone, deployment, database_url):
    user = keystone.service_user
    path.write_text(f'''\
[DEFAULT]
use_stderr = true

[database]
connection = sqlite:///{path.parent}/samples.sqlite

[inventory]
connection = {database_url}

[service_credentials]
auth_type = password
auth_url = {keystone.url}
username = {user.name}
password = {user.password}
project_name = {user.project_name}
user_domain_id = default
project_domain_id = default
region_name = {deployment.region}
interface = internal
''')


def test_console_command(deployment, keystone, tmp_path):
    from calipso_agent.storage.sql import sqlite
    database = f'sqlite:///{tmp_path}/scan.sqlite'
    config = tmp_path / 'calipso.conf'
    write_config(config, keystone, deployment, database)
    command = [os.path.join(os.path.dirname(sys.executable),
                            'calipso-inventory-scan'),
               '--config-file', str(config)]
    env = {k: v for k, v in os.environ.items()
           if 'proxy' not in k.lower()}
    first = subprocess.run(command, capture_output=True, text=True,
                           timeout=120, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    for service in ('compute', 'identity', 'network', 'volume'):
        assert f'{service}: scanned' in first.stdout

    deployment.cloud.fail('volumev3', 500)
    second = subprocess.run(command, capture_output=True, text=True,
                            timeout=120, env=env)
    assert second.returncode == 2, second.stderr[-3000:]
    assert 'volume: FAILED' in second.stdout
    assert 'volume not scanned' in second.stderr
    # Written to [inventory] connection, not to the sample store.
    assert not (tmp_path / 'samples.sqlite').exists()
    store = sqlite.Connection(basics.make_conf(), database)
    try:
        assert live(store, 'instance') == set(deployment.cloud.servers)
        assert live(store, 'volume') == set(deployment.cloud.volumes)
    finally:
        store.close()
