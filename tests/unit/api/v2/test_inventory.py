"""/v2/inventory and /v2/topology over the small cloud of
tests/helpers/inventory.py, as an admin and as tenants."""

import json

import pytest

from calipso_agent import storage
from calipso_agent.api import app
from calipso_agent.inventory_graph import visibility as visibility_mod
from tests.helpers import basics
from tests.helpers import inventory as inv
from tests.unit.api import support

READER = {'X-Roles': 'calipso_reader', 'X-Project-Id': 'service',
          'X-User-Id': 'proxy', 'X-Identity-Status': 'Confirmed'}


def reader(*projects):
    return {**READER, 'X-Calipso-Project-Scope': ','.join(projects)}


@pytest.fixture(scope='module')
def cloud():
    return inv.small_cloud()


@pytest.fixture(scope='module')
def api(tmp_path_factory, cloud):
    conf = support.make_conf(tmp_path_factory.mktemp('inventory'),
                             api__opaque_id_key='test-key')
    connection = storage.get_connection(conf)
    cloud.store(connection)
    samples = [basics.make_sample(0, resource_id='vm-a1',
                                  project_id='project-a'),
               basics.make_sample(1, name='network.incoming.bytes',
                                  resource_id='tap' + 'p0-vm-a1'[:11],
                                  project_id='project-a'),
               basics.make_sample(2, resource_id='vm-b1',
                                  project_id='project-b')]
    assert not connection.record_samples(samples).rejected
    yield app.setup_app(conf=conf, storage=connection)
    connection.close()


@pytest.fixture(scope='module')
def admin(api):
    return support.Client(api)


@pytest.fixture(scope='module')
def tenant_a(api):
    return support.Client(api, support.member('project-a'))


def ids(items):
    return [item['id'] for item in items]


# --- lists ------------------------------------------------------------------

def test_list_as_admin_excludes_tombstones_and_filters(admin, cloud):
    shown = ids(admin.get('/v2/inventory', [('limit', '1000')]).json)
    assert shown == sorted(i for i, o in cloud.objects.items()
                           if o['state'] != 'deleted')
    assert 'vm-a-gone' in ids(admin.get('/v2/inventory', [
        ('deleted', 'true'), ('limit', '1000')]).json)
    assert ids(admin.get('/v2/inventory', [('type', 'instance')]).json) == [
        'vm-a1', 'vm-a2', 'vm-b1']
    assert ids(admin.get('/v2/inventory', [('type', 'instance,host'),
                                           ('host', 'compute-1')]).json) == [
        'compute-1', 'vm-a1', 'vm-b1']
    assert ids(admin.get('/v2/inventory', [
        ('parent_id', 'compute-2')]).json) == ['vedge-compute-2', 'vm-a2']
    assert ids(admin.get('/v2/inventory', [('state', 'DOWN')]).json) == [
        'compute-2']
    assert ids(admin.get('/v2/inventory', [('name', 'north')]).json) == [
        'region-north']
    assert ids(admin.get('/v2/inventory', [
        ('project_id', 'project-b'), ('type', 'instance')]).json) == ['vm-b1']


def test_list_pages_with_marker(admin):
    everything = ids(admin.get('/v2/inventory', [('limit', '1000')]).json)
    seen, marker = [], None
    while True:
        params = [('limit', '3')] + ([('marker', marker)] if marker else [])
        page = ids(admin.get('/v2/inventory', params).json)
        if not page:
            break
        seen += page
        marker = page[-1]
    assert seen == everything


def test_tenant_lists_its_projects_only(tenant_a, cloud):
    shown = tenant_a.get('/v2/inventory', [('limit', '1000')]).json
    assert ids(shown) == sorted(
        i for i in cloud.of_project({'project-a'})
        if cloud.objects[i]['state'] != 'deleted')
    for item in shown:
        assert item['host'] is None
        assert 'OS-EXT-SRV-ATTR:host' not in item['attributes']


@pytest.mark.parametrize('params', [
    [('project_id', 'project-b')], [('project_id', 'project-a,project-b')],
    [('host', 'compute-1')]])
def test_tenant_filter_outside_its_projects_is_403(tenant_a, params):
    assert support.fault(tenant_a.get('/v2/inventory', params))[0] == 403


def test_tenant_parent_filter_tells_nothing_of_infrastructure(tenant_a):
    assert tenant_a.get('/v2/inventory', [
        ('parent_id', 'compute-1')]).json == []
    assert tenant_a.get('/v2/inventory', [
        ('parent_id', 'no-such-host')]).json == []
    assert ids(tenant_a.get('/v2/inventory', [
        ('parent_id', 'net-a'), ('type', 'subnet')]).json) == ['sub-a']


# --- one object and its links ----------------------------------------------

def test_object_with_its_meters(admin):
    shown = admin.get('/v2/inventory/vnic-missing')
    assert support.fault(shown)[0] == 404
    vm = admin.get('/v2/inventory/vm-a1').json
    assert vm['host'] == 'compute-1'
    assert [m['resource_id'] for m in vm['meters']] == ['vm-a1']
    vnic = admin.get('/v2/inventory/' + inv.vnic_id('vm-a1', 'p0-vm-a1'))
    assert [(m['name'], m['resource_id']) for m in vnic.json['meters']] == [
        ('network.incoming.bytes', 'tapp0-vm-a1')]


@pytest.mark.parametrize('object_id', ['vm-b1', 'compute-1', 'ext-net',
                                       'region-north', 'nope'])
def test_tenant_reads_no_foreign_or_infrastructure_object(tenant_a,
                                                          object_id):
    for suffix in ('', '/links', '/clique', '/impact', '/path'):
        response = tenant_a.get(f'/v2/inventory/{object_id}{suffix}')
        assert support.fault(response)[0] == 404, suffix


def test_links_of_an_object(admin, tenant_a):
    assert [(lk['source_id'], lk['target_id']) for lk in admin.get(
        '/v2/inventory/compute-1/links').json] == [
        ('compute-1', 'az-zone-east'), ('vedge-compute-1', 'compute-1'),
        ('vm-a1', 'compute-1'), ('vm-b1', 'compute-1')]
    assert len(admin.get('/v2/inventory/compute-1/links',
                         [('deleted', 'true')]).json) == 5
    shown = tenant_a.get('/v2/inventory/vm-a1/links').json
    host_links = [lk for lk in shown if lk['link_type'] == 'instance-host']
    (host_link,) = host_links
    assert host_link['target_id'].startswith('opaque-')
    assert set(host_link) == set(visibility_mod.BARE_LINK_FIELDS)


# --- clique, impact, path, topology ------------------------------------------

def test_clique_of_an_instance(admin, tenant_a):
    clique = admin.get('/v2/inventory/vm-a1/clique').json
    assert clique['clique_type'] == 'instance'
    assert set(ids(clique['nodes'])) == {
        'vm-a1', 'vm-a1-tapp0-vm-a1', 'vm-a1-tapp1-vm-a1', 'p0-vm-a1',
        'p1-vm-a1', 'net-a', 'sub-a', 'rtr-a', 'net-ext', 'compute-1'}
    assert len(clique['edges']) == 10
    tenant = tenant_a.get('/v2/inventory/vm-a1/clique').json
    nodes = {n['id']: n for n in tenant['nodes']}
    # The admin's external network is another project's: not shown.
    assert 'net-ext' not in nodes
    (host,) = [n for n in nodes.values() if n['type'] == 'host']
    assert host == {'id': host['id'], 'type': 'host', 'state': 'ACTIVE',
                    'opaque': True}
    for edge in tenant['edges']:
        assert edge['source_id'] in nodes and edge['target_id'] in nodes


def test_clique_type_parameter(admin):
    assert admin.get('/v2/inventory/compute-1/clique', [
        ('clique_type', 'host')]).json['clique_type'] == 'host'
    for name in ('instance', 'no-such-type'):
        response = admin.get('/v2/inventory/compute-1/clique',
                             [('clique_type', name)])
        assert support.fault(response)[0] == 400


def test_impact_of_a_host(admin):
    impact = admin.get('/v2/inventory/compute-1/impact').json
    by_id = {d['id']: d for d in impact['dependents']}
    for dependent in ('vm-a1', 'vm-b1', 'vedge-compute-1',
                      'vm-a1-tapp0-vm-a1', 'p1-vm-a1', 'p0-vm-b1'):
        assert dependent in by_id
    assert 'vm-a2' not in by_id and 'net-a' not in by_id
    assert by_id['vm-a1']['depth'] == 1
    assert [lk['link_type'] for lk in by_id['p0-vm-a1']['path']] == [
        'instance-host', 'instance-vnic', 'vnic-port']
    shallow = admin.get('/v2/inventory/compute-1/impact',
                        [('depth', '1')]).json
    assert {d['depth'] for d in shallow['dependents']} == {1}
    for bad in ('0', '65', 'x'):
        assert support.fault(admin.get('/v2/inventory/compute-1/impact', [
            ('depth', bad)]))[0] == 400


def test_impact_of_a_network_reaches_attached_instances(tenant_a):
    impact = tenant_a.get('/v2/inventory/net-a/impact').json
    shown = set(ids(impact['dependents']))
    assert {'sub-a', 'p0-vm-a1', 'p0-vm-a2', 'vm-a1', 'vm-a2'} <= shown
    assert not shown & {'vm-b1', 'net-b'}


def test_path_marks_the_first_failure(admin, tenant_a):
    path = admin.get('/v2/inventory/vm-a2/path').json
    chain = {step['id']: step for step in path['chain']}
    assert path['first_failure'] == 'compute-2'
    assert chain['compute-2']['first_failure'] is True
    assert {'vm-a2', 'p0-vm-a2', 'net-a', 'sub-a', 'rtr-a', 'net-ext',
            'compute-2', 'vedge-compute-2',
            'qdhcp-net-a@network-1'} <= set(chain)
    assert chain['net-ext']['via']['link_type'] == 'router-network'
    tenant = tenant_a.get('/v2/inventory/vm-a2/path').json
    (failure,) = [s for s in tenant['chain'] if s['first_failure']]
    assert failure['opaque'] and failure['type'] == 'host'
    assert failure['state'] == 'DOWN'
    assert tenant['first_failure'] == failure['id']
    assert 'net-ext' not in ids(tenant['chain'])


def test_topology(admin, tenant_a):
    assert support.fault(admin.get('/v2/topology'))[0] == 400
    graph = admin.get('/v2/topology', [('project_id', 'project-b')]).json
    assert set(ids(graph['nodes'])) == {
        'project-b', 'net-b', 'sub-b', 'vm-b1', 'vm-b1-tapp0-vm-b1',
        'p0-vm-b1', 'compute-1'}
    tenant = tenant_a.get('/v2/topology').json
    assert tenant['project_ids'] == ['project-a']
    kinds = {n['type'] for n in tenant['nodes'] if n.get('opaque')}
    assert kinds == {'host', 'vservice'}
    assert support.fault(tenant_a.get('/v2/topology', [
        ('project_id', 'project-b')]))[0] == 403


def test_opaque_tokens_are_stable_and_per_scope(api):
    def host_token(headers):
        client = support.Client(api, headers)
        (host,) = [n for n in client.get(
            '/v2/inventory/vm-a1/clique').json['nodes']
            if n['type'] == 'host']
        return host['id']
    first = host_token(support.member('project-a'))
    assert first == host_token(support.member('project-a'))
    assert first != host_token(reader('project-a', 'project-b'))


def test_reader_sees_its_declared_projects(api, cloud):
    client = support.Client(api, reader('project-a', 'project-b'))
    shown = ids(client.get('/v2/inventory', [('limit', '1000')]).json)
    assert set(shown) == {i for i in cloud.of_project(
        {'project-a', 'project-b'}) if cloud.objects[i]['state'] !=
        'deleted'}
    assert support.fault(support.Client(api, READER).get(
        '/v2/inventory'))[0] == 403


def test_no_infrastructure_name_reaches_a_tenant(tenant_a, cloud):
    secrets = {text for o in cloud.infrastructure()
               for text in (o['id'], o['name'])}
    for path in ('/v2/inventory?limit=1000', '/v2/inventory/vm-a1',
                 '/v2/inventory/vm-a1/links', '/v2/inventory/vm-a1/clique',
                 '/v2/inventory/vm-a2/path', '/v2/inventory/net-a/impact',
                 '/v2/topology'):
        text = json.dumps(tenant_a.get(path).json)
        for secret in secrets:
            assert secret not in text, (path, secret)


def test_an_unusable_clique_types_file_is_a_503_naming_it(tmp_path, cloud):
    broken = tmp_path / 'broken.yaml'
    broken.write_text('a: [')
    conf = support.make_conf(tmp_path, api__clique_types=str(broken))
    connection = storage.get_connection(conf)
    try:
        cloud.store(connection)
        client = support.Client(app.setup_app(conf=conf,
                                              storage=connection))
        for route in ('clique', 'impact', 'path'):
            response = client.get(f'/v2/inventory/vm-a1/{route}')
            status, faultcode, message = support.fault(response)
            assert (status, faultcode) == (503, 'Server')
            assert str(broken) in message and 'not valid YAML' in message
        # The rest of the API does not need the file.
        assert client.get('/v2/inventory/vm-a1').status_code == 200
    finally:
        connection.close()
