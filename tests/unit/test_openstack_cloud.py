"""The fake OpenStack cloud of tests/helpers/openstack_cloud.py: consistent
ids, the fixtures' exact shapes, each API's paging, the failure switch."""

import json
import os

import pytest
import requests

from tests.helpers import openstack_cloud as oc

FIXTURE_FILES = {
    'hypervisors': ('nova/os-hypervisors_hypervisors-detail-resp.json',
                    'hypervisors'),
    'servers': ('nova/servers_servers-details-resp.json', 'servers'),
    'networks': ('neutron/networks-list-response.json', 'networks'),
    'subnets': ('neutron/subnets-list-response.json', 'subnets'),
    'ports': ('neutron/ports-list-response.json', 'ports'),
    'routers': ('neutron/routers-list-response.json', 'routers'),
    'floatingips': ('neutron/floating-ips-list-response.json',
                    'floatingips'),
    'agents': ('neutron/agents-list-response.json', 'agents'),
}


def fixture_keys(collection):
    path, key = FIXTURE_FILES[collection]
    with open(os.path.join(oc.API_FIXTURES, path)) as handle:
        return set(json.load(handle)[key][0])


@pytest.fixture
def cloud():
    return oc.Cloud.build(projects=('p-1', 'p-2', 'p-3'), hosts=3,
                          zones=('az-a', 'az-b'), networks_per_project=2,
                          servers_per_network=3, volumes_per_server=2)


def test_sizes_follow_the_description(cloud):
    assert len(cloud.hypervisors) == 3
    assert len(cloud.servers) == 3 * 2 * 3
    assert len(cloud.networks) == 3 * 2 + 1
    assert len(cloud.routers) == 3
    assert len(cloud.volumes) == 3 * 2 * 3 * 2
    assert len(cloud.floatingips) == 3
    assert {z['zoneName'] for z in cloud.zones} == {'internal', 'az-a',
                                                    'az-b'}


@pytest.mark.parametrize('collection', sorted(FIXTURE_FILES))
def test_bodies_have_exactly_the_fixture_keys(cloud, collection):
    expected = fixture_keys(collection)
    for body in getattr(cloud, collection).values():
        assert set(body) == expected


def test_ids_refer_to_each_other(cloud):
    for port in cloud.ports.values():
        assert port['network_id'] in cloud.networks
        for ip in port['fixed_ips']:
            assert cloud.subnets[ip['subnet_id']]['network_id'] == \
                port['network_id']
        if port['device_owner'].startswith('compute:'):
            assert port['device_id'] in cloud.servers
        if port['device_owner'].startswith('network:router'):
            assert port['device_id'] in cloud.routers
    for fip in cloud.floatingips.values():
        assert fip['port_id'] in cloud.ports
        assert fip['router_id'] in cloud.routers
    for volume in cloud.volumes.values():
        for attachment in volume['attachments']:
            server = cloud.servers[attachment['server_id']]
            assert {'id': volume['id']} in server[
                'os-extended-volumes:volumes_attached']
    hosts = {h['hypervisor_hostname'] for h in cloud.hypervisors.values()}
    for server in cloud.servers.values():
        assert server['OS-EXT-SRV-ATTR:host'] in hosts
        assert len(cloud.interfaces(server['id'])) == 1


def test_delete_server_takes_its_ports_and_attachments(cloud):
    server_id = next(iter(cloud.servers))
    port_id = cloud.server_ports(server_id)[0]['id']
    cloud.delete_server(server_id)
    assert server_id not in cloud.servers
    assert port_id not in cloud.ports
    assert all(a['server_id'] != server_id
               for v in cloud.volumes.values() for a in v['attachments'])
    assert all(f['port_id'] != port_id for f in cloud.floatingips.values())


def test_unknown_keys_are_refused():
    with pytest.raises(KeyError):
        oc.make('port', binding_host='x')


@pytest.fixture
def server(cloud):
    cloud.max_limit = 4
    with oc.CloudServer(cloud) as running:
        yield running


def get(url, **params):
    return requests.get(url, params=params, headers={'X-Auth-Token': 't'})


def follow(first_url, key, next_of, **params):
    """Every item and the number of requests, following next links."""
    items, url, requests_made = [], first_url, 0
    body = get(url, **params).json()
    requests_made += 1
    while True:
        items.extend(body[key])
        url = next_of(body)
        if url is None:
            return items, requests_made
        body = get(url).json()
        requests_made += 1


def links_next(key):
    def next_of(body):
        return next((link['href'] for link in body.get(f'{key}_links', ())
                     if link['rel'] == 'next'), None)
    return next_of


def test_nova_pages_with_servers_links(cloud, server):
    items, made = follow(server.endpoints['compute'] + '/servers/detail',
                         'servers', links_next('servers'), all_tenants=1,
                         limit=3)
    assert [s['id'] for s in items] == list(cloud.servers)
    # 18 servers in pages of 3: six full pages, then an empty one.
    assert made == 7


def test_nova_caps_the_limit_at_max_limit(cloud, server):
    body = get(server.endpoints['compute'] + '/servers/detail',
               all_tenants=1).json()
    assert len(body['servers']) == 4
    assert 'marker=' in body['servers_links'][0]['href']


def test_nova_without_all_tenants_lists_one_project(cloud, server):
    body = get(server.endpoints['compute'] + '/servers/detail',
               project_id='p-2', limit=100).json()
    assert {s['tenant_id'] for s in body['servers']} == {'p-2'}


def test_neutron_pages_with_next_only_when_more(cloud, server):
    items, made = follow(server.endpoints['network'] + '/v2.0/ports',
                         'ports', links_next('ports'), limit=3)
    assert [p['id'] for p in items] == list(cloud.ports)
    assert made == -(-len(cloud.ports) // 3)


def test_cinder_pages_with_volumes_links(cloud, server):
    items, _ = follow(server.endpoints['volumev3'] + '/volumes/detail',
                      'volumes', links_next('volumes'), all_tenants=1)
    assert [v['id'] for v in items] == list(cloud.volumes)


def test_glance_pages_with_next(cloud, server):
    cloud.images.update({oc.uid('image', i): oc.make(
        'image', id=oc.uid('image', i), name=f'i{i}')
        for i in range(10)})
    base = server.url + '/image'
    items, _ = follow(base + '/v2/images', 'images',
                      lambda b: base + b['next'] if 'next' in b else None)
    assert [i['id'] for i in items] == list(cloud.images)


def test_agent_scheduling_lists(cloud, server):
    dhcp = next(a for a in cloud.agents.values()
                if a['agent_type'] == 'DHCP agent')
    body = get(server.endpoints['network']
               + f'/v2.0/agents/{dhcp["id"]}/dhcp-networks').json()
    assert {n['id'] for n in body['networks']} == {
        n['id'] for n in cloud.networks.values()
        if not n['router:external']}


def test_a_failing_service_answers_5xx_and_the_others_do_not(cloud, server):
    cloud.fail('network', 502)
    assert get(server.endpoints['network'] + '/v2.0/networks'
               ).status_code == 502
    assert get(server.endpoints['compute'] + '/os-hypervisors/detail'
               ).status_code == 200
    cloud.fail('network', None)
    assert get(server.endpoints['network'] + '/v2.0/networks'
               ).status_code == 200


def test_a_request_without_token_is_refused(server):
    resp = requests.get(server.endpoints['compute'] + '/servers/detail')
    assert resp.status_code == 401
