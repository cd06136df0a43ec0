"""The scan's catalog client: next links of each API, paging to the end,
failures as ServiceError."""

import json
import os
import threading
import wsgiref.simple_server

import pytest
from keystoneauth1 import session as ks_session
from keystoneauth1 import token_endpoint

from calipso_agent.scan import client, collectors
from tests.helpers import openstack_cloud


def sample(path):
    with open(os.path.join(openstack_cloud.API_FIXTURES, path)) as handle:
        return json.load(handle)


def test_next_link_of_nova_samples():
    body = sample('nova/servers_servers-details-resp.json')
    assert client.next_link(body, 'servers') == {
        'limit': '1', 'marker': 'f5dc173b-6804-445a-a6d8-c705dad5b5eb'}
    body = sample('nova/os-hypervisors_v2.88_hypervisors-detail-resp.json')
    assert client.next_link(body, 'hypervisors')['marker'] == (
        'f6d28711-9c10-470e-8b31-c03f498b0032')


def test_next_link_of_glance_and_neutron():
    assert client.next_link({'images': [], 'next': '/v2/images?marker=i-9'},
                            'images') == {'marker': 'i-9'}
    only_previous = {'ports': [], 'ports_links': [
        {'rel': 'previous', 'href': 'http://n/v2.0/ports?marker=a'}]}
    assert client.next_link(only_previous, 'ports') is None
    assert client.next_link({'ports': []}, 'ports') is None


def session_for(url):
    direct = ks_session.Session(auth=token_endpoint.Token(url, 'token'))
    direct.session.trust_env = False
    return direct


@pytest.fixture
def cloud_server():
    cloud = openstack_cloud.Cloud.build(projects=('p-1', 'p-2', 'p-3'),
                                        hosts=2, servers_per_network=3,
                                        max_limit=4)
    with openstack_cloud.CloudServer(cloud) as server:
        yield server


@pytest.mark.parametrize('page_size', [1, 2, 5, 1000])
def test_list_follows_pages_to_the_end(cloud_server, page_size):
    cloud = cloud_server.cloud
    catalog = client.CatalogClient(session_for(cloud_server.url),
                                   page_size=page_size)
    servers = catalog.list('compute', cloud_server.endpoints['compute']
                           + '/servers/detail', 'servers',
                           {'all_tenants': 1})
    assert [s['id'] for s in servers] == list(cloud.servers)
    ports = catalog.list('network', cloud_server.endpoints['network']
                         + '/v2.0/ports', 'ports')
    assert [p['id'] for p in ports] == list(cloud.ports)
    # The first request's parameters go on with every page.
    assert all(query.get('all_tenants') == '1'
               for _, _, path, query in cloud.requests
               if path.endswith('/servers/detail'))


def test_collectors_read_a_whole_cloud(cloud_server):
    cloud = cloud_server.cloud
    catalog = client.CatalogClient(session_for(cloud_server.url),
                                   page_size=3)
    catalog.endpoint = lambda service, service_type: (
        cloud_server.endpoints[service_type])
    compute = collectors.compute(catalog)
    assert set(compute['interfaces']) == set(cloud.servers)
    assert len(compute['hypervisors']) == 2
    network = collectors.network(catalog)
    assert len(network['ports']) == len(cloud.ports)
    assert network['l3_routers'] == cloud.l3_routers
    assert network['dhcp_networks'] == cloud.dhcp_networks
    assert len(collectors.volume(catalog)['volumes']) == len(cloud.volumes)


def test_an_error_status_is_a_service_error(cloud_server):
    cloud_server.cloud.fail('network', 502)
    catalog = client.CatalogClient(session_for(cloud_server.url))
    with pytest.raises(client.ServiceError) as caught:
        catalog.list('network', cloud_server.endpoints['network']
                     + '/v2.0/ports', 'ports')
    assert caught.value.service == 'network'
    assert '502' in caught.value.reason


def test_an_unreachable_service_is_a_service_error():
    from tests.helpers import basics
    url = f'http://127.0.0.1:{basics.free_port()}'
    catalog = client.CatalogClient(session_for(url))
    with pytest.raises(client.ServiceError):
        catalog.get('volume', url + '/volumes/detail')


def serve(app):
    server = wsgiref.simple_server.make_server('127.0.0.1', 0, app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, f'http://127.0.0.1:{server.server_port}'


def json_app(body):
    def app(environ, start_response):
        start_response('200 OK', [('Content-Type', 'application/json')])
        return [json.dumps(body).encode()]
    return app


@pytest.mark.parametrize('body', [
    # A next link that names the same marker again: a loop.
    {'ports': [{'id': 'a'}], 'ports_links': [
        {'rel': 'next', 'href': '/v2.0/ports?marker=a'}]},
    # Not the list the API gives.
    {'port': []},
    {'ports': ['a']},
    # keystone's list_limit: a partial list without a next page.
    {'ports': [{'id': 'a'}], 'truncated': True},
])
def test_answers_that_are_not_the_api_are_service_errors(body):
    server, url = serve(json_app(body))
    try:
        catalog = client.CatalogClient(session_for(url))
        with pytest.raises(client.ServiceError):
            catalog.list('network', url + '/v2.0/ports', 'ports')
    finally:
        server.shutdown()
        server.server_close()

