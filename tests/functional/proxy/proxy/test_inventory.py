"""The inventory routes through a channel's proxy with real parts: the
real Keystone, calipso-api validating tokens with keystonemiddleware,
calipso-proxy calling it with the reader service user. The channel
authorizes project-a (and project-z, unknown to Keystone); the store
holds the small cloud of tests/helpers/inventory.py whose project-a is
Keystone's project-a, project-b Keystone's project-b, with shared
hosts, an admin's external network and an agent.

Every object's routes are read through the proxy: nothing of project-b,
of the admin's project or of the infrastructure (other than opaque
nodes) comes back; their ids are 404, a filter on project-b 403.
"""

import contextlib
import json

import pytest

from calipso_agent import storage
from tests.functional.proxy.proxy.test_keystone import service_credentials
from tests.helpers import basics, daemons
from tests.helpers import inventory as inv

pytestmark = pytest.mark.functional

SUFFIXES = ('', '/links', '/clique', '/impact', '/path')


def cloud_of(keystone):
    """The small cloud with Keystone's project ids."""
    text = json.dumps({'objects': inv.small_cloud().objects,
                       'links': inv.small_cloud().links})
    for name in ('project-a', 'project-b'):
        text = text.replace(f'"{name}"', f'"{keystone.projects[name]}"')
        text = text.replace(f'/{name}/', f'/{keystone.projects[name]}/')
    document = json.loads(text)
    cloud = inv.Cloud()
    cloud.objects = document['objects']
    cloud.links = document['links']
    return cloud


@contextlib.contextmanager
def inventory_stack(workdir, keystone, cloud):
    database = f'sqlite:///{workdir}/calipso.sqlite'
    store = storage.get_connection(basics.make_conf(
        database__connection=database))
    cloud.store(store)
    store.close()
    extra = daemons.keystone_authtoken_config(keystone) + (
        '[api]\nopaque_id_key = functional-test-key\n')
    api = daemons.APIServer(workdir / 'api', database,
                            auth_strategy='keystone', extra_config=extra)
    api.start()
    proxy = daemons.ProxyServer(
        workdir / 'proxy', [keystone.projects['project-a'], 'project-z'],
        api.url, service_credentials(keystone))
    try:
        proxy.start()
        yield proxy
    finally:
        proxy.stop()
        api.stop()


@pytest.fixture(scope='module')
def deployed(keystone, tmp_path_factory):
    cloud = cloud_of(keystone)
    with inventory_stack(tmp_path_factory.mktemp('proxy-inventory'),
                         keystone, cloud) as proxy:
        yield cloud, proxy


def test_the_channel_reads_its_graph_and_nothing_else(keystone, deployed):
    cloud, proxy = deployed
    channel = {keystone.projects['project-a'], 'project-z'}
    own = sorted(cloud.of_project(channel))
    answer = proxy.get('/v2/inventory', params={'limit': 1000,
                                                'deleted': 'true'})
    assert answer.status_code == 200, answer.text
    assert sorted(item['id'] for item in answer.json()) == own
    paths = ['/v2/topology'] + [f'/v2/inventory/{oid}{suffix}'
                                for oid in own for suffix in SUFFIXES]
    for path in paths:
        answer = proxy.get(path)
        if path.endswith('/clique') and answer.status_code == 404:
            continue  # a type without a clique type (project)
        assert answer.status_code == 200, (path, answer.text)
        assert inv.leaks(cloud, channel, answer.json()) == [], path
    path = proxy.get('/v2/inventory/vm-a2/path').json()
    (failure,) = [s for s in path['chain'] if s['first_failure']]
    assert (failure['type'], failure['state'], failure['opaque']) == (
        'host', 'DOWN', True)


def test_foreign_and_infrastructure_ids_are_404(deployed):
    cloud, proxy = deployed
    for oid in ('vm-b1', 'net-ext', 'compute-1', 'vedge-compute-1',
                'qdhcp-net-a@network-1', 'no-such-object'):
        for suffix in SUFFIXES:
            answer = proxy.get(f'/v2/inventory/{oid}{suffix}')
            assert answer.status_code == 404, (oid, suffix, answer.text)
            assert oid not in json.dumps(answer.json()).replace(
                f'Inventory object {oid} Not Found', '')


def test_a_filter_on_another_project_is_403(keystone, deployed):
    _, proxy = deployed
    project_b = keystone.projects['project-b']
    for path in ('/v2/inventory', '/v2/topology'):
        answer = proxy.get(path, params={'project_id': project_b})
        assert answer.status_code == 403, answer.text
    answer = proxy.get('/v2/inventory', params={'host': 'compute-1'})
    assert answer.status_code == 403, answer.text


def test_a_tenant_token_of_the_channel_reads_through_the_proxy(keystone,
                                                               deployed):
    _, proxy = deployed
    answer = proxy.get('/v2/inventory/vm-a1/clique',
                       token=keystone.token(keystone.user_a))
    assert answer.status_code == 200, answer.text
    assert answer.json()['focal_point']['id'] == 'vm-a1'
