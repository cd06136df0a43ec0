"""API bodies (the OpenStack API references' samples) → inventory objects and
links."""

import json
import os

import pytest

from calipso_agent import inventory
from calipso_agent.scan import mapping
from tests.helpers import openstack_cloud

STAMP = '2026-02-01T00:00:00Z'
CANONICAL_STAMP = inventory.timestamp(STAMP)


def sample(path, key):
    with open(os.path.join(openstack_cloud.API_FIXTURES, path)) as handle:
        return json.load(handle)[key]


def by_id(mapped):
    return {o['id']: o for o in mapped.objects}


def link_set(mapped, link_type=None):
    return {(link['source_id'], link['target_id'], link['link_type'])
            for link in mapped.links
            if link_type is None or link['link_type'] == link_type}


def network_bodies(**overrides):
    bodies = {
        'networks': sample('neutron/networks-list-response.json',
                           'networks'),
        'subnets': sample('neutron/subnets-list-response.json', 'subnets'),
        'ports': sample('neutron/ports-list-response.json', 'ports'),
        'routers': sample('neutron/routers-list-response.json', 'routers'),
        'floatingips': sample('neutron/floating-ips-list-response.json',
                              'floatingips'),
        'agents': sample('neutron/agents-list-response.json', 'agents'),
        'dhcp_networks': {}, 'l3_routers': {},
    }
    bodies.update(overrides)
    return bodies


def test_server_sample_makes_an_instance_on_its_host():
    server = sample('nova/servers_servers-details-resp.json', 'servers')[0]
    interfaces = sample(
        'nova/os-attach-interfaces_attach-interfaces-list-resp.json',
        'interfaceAttachments')
    mapped = mapping.instance(server, interfaces, STAMP)
    objects = by_id(mapped)
    obj = objects[server['id']]
    host = server['OS-EXT-SRV-ATTR:host']
    assert (obj['type'], obj['name'], obj['project_id'], obj['parent_id'],
            obj['parent_type'], obj['host'], obj['state']) == (
        'instance', 'new-server-test', server['tenant_id'], host, 'host',
        host, 'ACTIVE')
    assert obj['created_at'] == inventory.timestamp(server['created'])
    assert obj['attributes']['OS-EXT-STS:vm_state'] == 'active'
    assert 'links' not in obj['attributes']
    # updated (2013) is older than the scan: the scan's start stamps it.
    assert obj['last_event_at'] == CANONICAL_STAMP

    port_id = interfaces[0]['port_id']
    vnic_id = f'{server["id"]}-tap{port_id[:11]}'
    vnic = objects[vnic_id]
    assert (vnic['type'], vnic['name'], vnic['parent_id'], vnic['host'],
            vnic['project_id'], vnic['state']) == (
        'vnic', 'tap' + port_id[:11], server['id'], host,
        server['tenant_id'], 'ACTIVE')
    assert vnic['resource_ids'] == [
        f'instance-00000001-{server["id"]}-tap{port_id[:11]}']
    assert link_set(mapped) == {
        (server['id'], host, 'instance-host'),
        (server['id'], vnic_id, 'instance-vnic'),
        (vnic_id, port_id, 'vnic-port')}
    for link in mapped.links:
        assert link['project_id'] == server['tenant_id']
        assert link['state'] == 'ACTIVE'


def test_an_unscheduled_server_has_no_host():
    server = dict(sample('nova/servers_servers-details-resp.json',
                         'servers')[0], status='BUILD')
    server['OS-EXT-SRV-ATTR:host'] = None
    mapped = mapping.instance(server, [], STAMP)
    obj = by_id(mapped)[server['id']]
    assert (obj['parent_id'], obj['host'], obj['state']) == (None, None,
                                                            'BUILD')
    assert mapped.links == []


def test_a_later_update_time_is_the_objects_last_event():
    server = dict(sample('nova/servers_servers-details-resp.json',
                         'servers')[0], updated='2026-02-01T00:00:05Z')
    obj = by_id(mapping.instance(server, [], STAMP))[server['id']]
    assert obj['last_event_at'] == inventory.timestamp(
        '2026-02-01T00:00:05Z')


def test_hypervisors_and_zones():
    hypervisors = sample('nova/os-hypervisors_hypervisors-detail-resp.json',
                         'hypervisors')
    zones = sample('nova/os-availability-zone_availability-zone-detail-'
                   'resp.json', 'availabilityZoneInfo')
    host = hypervisors[0]['service']['host']
    # The sample's zone lists a host "compute"; put the hypervisor there.
    zones[1]['hosts'] = {host: zones[1]['hosts']['compute']}
    mapped = mapping.compute({'hypervisors': hypervisors, 'zones': zones,
                              'servers': [], 'interfaces': {}}, STAMP,
                             'RegionOne')
    objects = by_id(mapped)
    assert set(objects) == {host, 'az-nova'}  # no "internal" zone
    assert objects['az-nova']['parent_id'] == 'region-RegionOne'
    assert objects['az-nova']['state'] == 'ACTIVE'
    assert (objects[host]['type'], objects[host]['parent_id'],
            objects[host]['project_id'], objects[host]['state']) == (
        'host', 'az-nova', None, 'ACTIVE')
    assert objects[host]['attributes']['hypervisor_hostname'] == 'fake-mini'
    assert link_set(mapped) == {(host, 'az-nova', 'host-availability_zone')}


def test_a_host_in_no_zone_hangs_under_the_region():
    hypervisors = sample(
        'nova/os-hypervisors_v2.88_hypervisors-detail-resp.json',
        'hypervisors')
    hypervisors[0]['status'] = 'disabled'
    mapped = mapping.compute({'hypervisors': hypervisors, 'zones': [],
                              'servers': [], 'interfaces': {}}, STAMP, 'r')
    host = by_id(mapped)['host2']
    assert (host['parent_id'], host['parent_type'], host['state']) == (
        'region-r', 'region', 'DISABLED')


def test_neutron_samples():
    bodies = network_bodies()
    mapped = mapping.network(bodies, STAMP, 'RegionOne')
    objects = by_id(mapped)
    for body, type_ in ((bodies['networks'][0], 'network'),
                        (bodies['subnets'][0], 'subnet'),
                        (bodies['ports'][1], 'port'),
                        (bodies['routers'][0], 'router'),
                        (bodies['floatingips'][0], 'floating_ip')):
        obj = objects[body['id']]
        assert obj['type'] == type_
        assert obj['project_id'] == (body['project_id'] or None)
        assert obj['attributes'] == body
    net = objects[bodies['networks'][0]['id']]
    assert (net['parent_id'], net['parent_type'], net['state']) == (
        bodies['networks'][0]['project_id'], 'project', 'ACTIVE')
    subnet = bodies['subnets'][0]
    assert objects[subnet['id']]['parent_id'] == subnet['network_id']
    assert (subnet['id'], subnet['network_id'], 'subnet-network') in \
        link_set(mapped)
    fip = objects[bodies['floatingips'][0]['id']]
    assert fip['name'] == '172.24.4.228'
    assert link_set(mapped, 'floating_ip-port') == {
        (bodies['floatingips'][0]['id'], bodies['floatingips'][0]['port_id'],
         'floating_ip-port')}  # the other two have no port
    assert link_set(mapped, 'router-network') == {
        (r['id'], r['external_gateway_info']['network_id'],
         'router-network') for r in bodies['routers']}
    # The samples' router ports name a router the router sample lacks.
    assert link_set(mapped, 'router-port') == set()
    assert link_set(mapped, 'port-network') == {
        (p['id'], p['network_id'], 'port-network') for p in bodies['ports']}


def test_router_interface_ports_link_router_port_and_subnet():
    bodies = network_bodies()
    router = bodies['routers'][0]
    interface, gateway = bodies['ports'][1], bodies['ports'][0]
    interface['device_id'] = gateway['device_id'] = router['id']
    mapped = mapping.network(bodies, STAMP, 'RegionOne')
    assert link_set(mapped, 'router-port') == {
        (router['id'], interface['id'], 'router-port'),
        (router['id'], gateway['id'], 'router-port')}
    assert link_set(mapped, 'router-subnet') == {
        (router['id'], interface['fixed_ips'][0]['subnet_id'],
         'router-subnet')}
    for link in mapped.links:
        if link['source_id'] == router['id']:
            assert link['project_id'] == router['project_id']


def test_agents_make_vedges_and_vservices():
    bodies = network_bodies()
    agents = {a['agent_type']: a for a in bodies['agents']}
    net_id = bodies['networks'][0]['id']
    router = bodies['routers'][0]
    bodies['dhcp_networks'] = {agents['DHCP agent']['id']: [net_id]}
    bodies['l3_routers'] = {agents['L3 agent']['id']: [router['id']]}
    agents['L3 agent']['alive'] = False
    mapped = mapping.network(bodies, STAMP, 'RegionOne')
    objects = by_id(mapped)
    vedge = objects['vedge-agenthost1']
    assert (vedge['type'], vedge['parent_id'], vedge['project_id'],
            vedge['state']) == ('vedge', 'agenthost1', None, 'ACTIVE')
    dhcp = objects[f'qdhcp-{net_id}@agenthost1']
    assert (dhcp['type'], dhcp['parent_id'], dhcp['state'],
            dhcp['attributes']['agent_id']) == (
        'vservice', 'agenthost1', 'ACTIVE', agents['DHCP agent']['id'])
    l3 = objects[f'qrouter-{router["id"]}@agenthost1']
    assert l3['state'] == 'DOWN'
    assert link_set(mapped, 'vservice-network') == {
        (dhcp['id'], net_id, 'vservice-network'),
        (l3['id'], router['external_gateway_info']['network_id'],
         'vservice-network')}
    assert link_set(mapped, 'vservice-host') == {
        (dhcp['id'], 'agenthost1', 'vservice-host'),
        (l3['id'], 'agenthost1', 'vservice-host')}
    assert link_set(mapped, 'vedge-host') == {
        ('vedge-agenthost1', 'agenthost1', 'vedge-host')}
    # Not knowing the hypervisors, the agents' hosts are not made.
    assert 'agenthost1' not in objects


@pytest.mark.parametrize('compute_hosts,made', [
    (set(), True), ({'agenthost1'}, False)])
def test_agent_hosts_are_made_when_they_are_not_hypervisors(compute_hosts,
                                                            made):
    mapped = mapping.network(network_bodies(), STAMP, 'RegionOne',
                             compute_hosts=compute_hosts)
    objects = by_id(mapped)
    assert ('agenthost1' in objects) is made
    if made:
        assert objects['agenthost1']['parent_id'] == 'region-RegionOne'
        assert objects['agenthost1']['attributes']['agent_types'] == sorted(
            a['agent_type'] for a in network_bodies()['agents'])


def test_volumes_and_attachments():
    cloud = openstack_cloud.Cloud.build(projects=('p-1',), hosts=1,
                                        servers_per_network=1)
    volume = next(iter(cloud.volumes.values()))
    mapped = mapping.volume({'volumes': [volume]}, STAMP)
    obj = by_id(mapped)[volume['id']]
    assert (obj['type'], obj['project_id'], obj['parent_id'],
            obj['state']) == ('volume', 'p-1', 'p-1', 'IN-USE')
    server_id = volume['attachments'][0]['server_id']
    assert link_set(mapped) == {(volume['id'], server_id,
                                 'volume-instance')}
    assert mapped.links[0]['attributes']['device'] == '/dev/vdb'


def test_projects():
    mapped = mapping.identity({'projects': [
        {'id': 'p-1', 'name': 'one', 'enabled': True, 'links': {}},
        {'id': 'p-2', 'name': 'two', 'enabled': False}]}, STAMP)
    objects = by_id(mapped)
    assert (objects['p-1']['name'], objects['p-1']['project_id'],
            objects['p-1']['state']) == ('one', 'p-1', 'ACTIVE')
    assert objects['p-2']['state'] == 'DISABLED'


def test_a_whole_fake_cloud_maps_to_one_object_per_resource():
    cloud = openstack_cloud.Cloud.build(projects=('p-1', 'p-2'), hosts=2)
    compute = mapping.compute({
        'hypervisors': list(cloud.hypervisors.values()),
        'zones': cloud.zones, 'servers': list(cloud.servers.values()),
        'interfaces': {s: cloud.interfaces(s) for s in cloud.servers}},
        STAMP, 'RegionOne')
    network = mapping.network({
        'networks': list(cloud.networks.values()),
        'subnets': list(cloud.subnets.values()),
        'ports': list(cloud.ports.values()),
        'routers': list(cloud.routers.values()),
        'floatingips': list(cloud.floatingips.values()),
        'agents': list(cloud.agents.values()),
        'dhcp_networks': cloud.dhcp_networks,
        'l3_routers': cloud.l3_routers}, STAMP, 'RegionOne',
        mapping.compute_hosts(compute))
    ids = [o['id'] for o in compute.objects + network.objects]
    assert len(ids) == len(set(ids))
    counts = {}
    for obj in compute.objects + network.objects:
        counts[obj['type']] = counts.get(obj['type'], 0) + 1
    assert counts['instance'] == counts['vnic'] == len(cloud.servers)
    assert counts['port'] == len(cloud.ports)
    assert counts['host'] == 3  # two hypervisors and the network node
    # Every link is valid for the store.
    for link in compute.links + network.links:
        inventory.validate_link(dict(link))
