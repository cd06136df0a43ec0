"""Inventory graphs for the tests and benchmarks.

* the inventory changes of the shared notification fixtures, and the
  graph of a store to compare (the endpoint's tests);
* graphs of the contract's shape built directly: objects and links as
  the store keeps them (dicts), consistent ids, parents, paths and link
  types "<source_type>-<target_type>" (the read side's tests and
  bench/inventory_graph.py).
"""

import functools

from calipso_agent import inventory
from calipso_agent.notification import base
from calipso_agent.notification import inventory as endpoint_mod
from tests.helpers import basics, fixtures


@functools.cache
def endpoint():
    return endpoint_mod.InventoryEndpoint(basics.make_conf())


def handled_fixtures():
    """(name, notification) of every fixture the endpoint handles, in
    the order they were sent (their timestamps; name among equals)."""
    found = []
    for name in fixtures.fixture_names():
        envelope = fixtures.load_envelope(name)
        _, notification = base.from_envelope(envelope)
        if not endpoint().handles(notification['event_type']):
            continue
        try:
            at = inventory.timestamp(notification['metadata']['timestamp'])
        except ValueError:
            at = ''
        found.append((at, name, notification))
    return [(name, n) for _, name, n in sorted(found, key=lambda f: f[:2])]


def changes_of(notification):
    """The endpoint's changes of one notification; [] when it refuses it
    (a malformed one)."""
    try:
        return endpoint().inventory_changes(notification)
    except base.NotificationError:
        return []


def split(changes):
    """(objects, links) of a list of changes."""
    objects = [c for c in changes if 'link_type' not in c]
    links = [c for c in changes if 'link_type' in c]
    return objects, links


def graph(connection, created=True):
    """(objects by id, links by triple) as stored; without created_at
    unless ``created`` (without a source's creation time it is the first
    event applied, so it depends on the arrival order)."""
    def kept(item):
        item = dict(item)
        if not created:
            item.pop('created_at', None)
        return item
    return ({o['id']: kept(o) for o in connection.get_inventory()},
            {inventory.link_key(lk): kept(lk)
             for lk in connection.get_links()})


# --- graphs built directly (the read side) ---------------------------------

T_EVENT = '2024-05-01T12:00:00+00:00'
INFRASTRUCTURE_TYPES = ('region', 'availability_zone', 'host', 'vservice',
                        'vedge')


def obj(oid, type, project_id=None, parent=None, name=None,
        state='ACTIVE', host=None, attributes=None, **fields):
    """An inventory object; ``parent``: the parent object (its paths are
    extended)."""
    name = oid if name is None else name
    made = {
        'id': oid, 'type': type, 'name': name, 'project_id': project_id,
        'parent_id': parent['id'] if parent else None,
        'parent_type': parent['type'] if parent else None,
        'id_path': (parent['id_path'] if parent else '') + '/' + oid,
        'name_path': (parent['name_path'] if parent else '') + '/' + name,
        'environment': 'test-cloud', 'host': host, 'state': state,
        'attributes': dict(attributes or {}), 'created_at': T_EVENT,
        'updated_at': T_EVENT, 'deleted_at': None,
        'last_event_at': T_EVENT}
    made.update(fields)
    return made


def link(source, target, project_id=None, state='ACTIVE', **attributes):
    """The link from object ``source`` to object ``target``."""
    return {'source_id': source['id'], 'target_id': target['id'],
            'link_type': f'{source["type"]}-{target["type"]}',
            'source_type': source['type'], 'target_type': target['type'],
            'state': state, 'project_id': project_id,
            'attributes': attributes, 'created_at': T_EVENT,
            'updated_at': T_EVENT, 'deleted_at': None,
            'last_event_at': T_EVENT}


def vnic_id(instance_id, port_id):
    return f'{instance_id}-tap{port_id[:11]}'


class Cloud:
    """Objects by id and links, with what tests ask of them."""

    def __init__(self):
        self.objects = {}
        self.links = []

    def add(self, *objects):
        for item in objects:
            self.objects[item['id']] = item
        return objects[0] if len(objects) == 1 else objects

    def connect(self, source, target, project_id=None, **attributes):
        self.links.append(link(source, target, project_id, **attributes))

    def store(self, connection):
        connection.upsert_inventory(list(self.objects.values()))
        connection.upsert_links(self.links)

    def infrastructure(self):
        return [o for o in self.objects.values()
                if o['type'] in INFRASTRUCTURE_TYPES]

    def of_project(self, projects):
        return {i for i, o in self.objects.items()
                if o['project_id'] in projects}


def instance_on(cloud, project, host, network, subnet, instance_id,
                ports=1, state='ACTIVE'):
    """An instance of ``project`` on ``host`` with ``ports`` vNICs, each
    with its port on ``network`` (and ``subnet``)."""
    pid = project['id']
    instance = cloud.add(obj(
        instance_id, 'instance', pid, host, name=f'vm {instance_id}',
        state=state, host=host['id'],
        attributes={'flavor': 'm1.small', 'OS-EXT-SRV-ATTR:host':
                    host['id'], 'node': host['id'],
                    'availability_zone': host['parent_id']}))
    cloud.connect(instance, host, pid)
    for index in range(ports):
        port = cloud.add(obj(
            f'p{index}-{instance_id}', 'port', pid, network,
            attributes={'device_id': instance_id,
                        'binding:host_id': host['id'],
                        'fixed_ips': [{'subnet_id': subnet['id'],
                                       'ip_address': f'10.0.0.{index}'}]}))
        vnic = cloud.add(obj(
            vnic_id(instance_id, port['id']), 'vnic', pid, instance,
            host=host['id'], resource_ids=[f'tap{port["id"][:11]}']))
        cloud.connect(instance, vnic, pid)
        cloud.connect(vnic, port, pid)
        cloud.connect(port, network, pid)
    return instance


def infrastructure(cloud, hosts=('compute-1',), states=None):
    """A region, a zone, the hosts and their vEdges."""
    states = states or {}
    region = cloud.add(obj('region-north', 'region', name='north'))
    zone = cloud.add(obj('az-zone-east', 'availability_zone', parent=region,
                         name='zone-east'))
    made = []
    for name in hosts:
        host = cloud.add(obj(name, 'host', parent=zone,
                             state=states.get(name, 'ACTIVE'), host=name,
                             attributes={'hypervisor_type': 'QEMU'}))
        cloud.connect(host, zone)
        vedge = cloud.add(obj(f'vedge-{name}', 'vedge', parent=host,
                              host=name, state=states.get(
                                  f'vedge-{name}', 'ACTIVE'),
                              name=f'ovs agent {name}'))
        cloud.connect(vedge, host)
        made.append(host)
    return made


def project_network(cloud, pid, suffix, router=True):
    """A project, its network, subnet and (optionally) router."""
    project = cloud.add(obj(pid, 'project', pid, name=f'project {suffix}'))
    network = cloud.add(obj(f'net-{suffix}', 'network', pid, project))
    subnet = cloud.add(obj(f'sub-{suffix}', 'subnet', pid, network,
                           attributes={'cidr': '10.0.0.0/24'}))
    cloud.connect(subnet, network, pid)
    made = {'project': project, 'network': network, 'subnet': subnet}
    if router:
        made['router'] = cloud.add(obj(f'rtr-{suffix}', 'router', pid,
                                       project))
        cloud.connect(made['router'], subnet, pid)
    return made


def small_cloud():
    """Two tenants sharing a host, an admin's external network, a DHCP
    service, one DOWN host and one deleted instance.

    * project-a: net-a/sub-a/rtr-a (gateway on ext-net), vm-a1 on
      compute-1 (2 vNICs), vm-a2 on compute-2 (DOWN);
    * project-b: net-b/sub-b, vm-b1 on compute-1;
    * project-admin: ext-net/ext-sub;
    * qdhcp-net-a@network-1: net-a's DHCP service on host network-1.
    """
    cloud = Cloud()
    compute_1, compute_2, network_1 = infrastructure(
        cloud, ('compute-1', 'compute-2', 'network-1'),
        {'compute-2': 'DOWN'})
    a = project_network(cloud, 'project-a', 'a')
    b = project_network(cloud, 'project-b', 'b', router=False)
    ext = project_network(cloud, 'project-admin', 'ext', router=False)
    cloud.connect(a['router'], ext['network'], 'project-a')
    instance_on(cloud, a['project'], compute_1, a['network'], a['subnet'],
                'vm-a1', ports=2)
    instance_on(cloud, a['project'], compute_2, a['network'], a['subnet'],
                'vm-a2', state='ACTIVE')
    instance_on(cloud, b['project'], compute_1, b['network'], b['subnet'],
                'vm-b1')
    gone = cloud.add(obj('vm-a-gone', 'instance', 'project-a', compute_1,
                         state='deleted',
                         deleted_at='2024-05-01T13:00:00+00:00'))
    cloud.links.append({**link(gone, compute_1, 'project-a'),
                        'state': 'deleted',
                        'deleted_at': '2024-05-01T13:00:00+00:00'})
    dhcp = cloud.add(obj('qdhcp-net-a@network-1', 'vservice',
                         parent=network_1, host='network-1',
                         name='dhcp of net-a on network-1'))
    cloud.connect(dhcp, a['network'])
    cloud.connect(dhcp, network_1)
    return cloud


def big_host(instances=500, vnics=4, networks=8):
    """One host with ``instances`` instances of one project, ``vnics``
    vNICs (and ports) each, spread over ``networks`` networks."""
    cloud = Cloud()
    (host,) = infrastructure(cloud, ('compute-big',))
    project = cloud.add(obj('project-big', 'project', 'project-big'))
    nets = []
    for index in range(networks):
        network = cloud.add(obj(f'net-{index}', 'network', 'project-big',
                                project))
        subnet = cloud.add(obj(f'sub-{index}', 'subnet', 'project-big',
                               network))
        cloud.connect(subnet, network, 'project-big')
        nets.append((network, subnet))
    for index in range(instances):
        network, subnet = nets[index % networks]
        instance_on(cloud, project, host, network, subnet,
                    f'vm-{index:05d}', ports=vnics)
    return cloud


# --- random clouds of several projects (the isolation property tests) -----

PROJECTS = tuple(f'proj-{n}' for n in range(4))
STATES = ('ACTIVE', 'DOWN', 'ERROR', 'SHUTOFF')


def random_cloud(draw, st):
    """A cloud drawn with hypothesis (``draw``, ``st`` the strategies
    module): hosts with drawn states and names, and per project a
    network, subnet, router (gateway on another project's network
    sometimes) and instances on drawn hosts with 1 or 2 vNICs; some
    instances deleted."""
    cloud = Cloud()
    host_names = [f'hv{n:02d}-{draw(st.sampled_from(["rack", "pod"]))}'
                  for n in range(draw(st.integers(1, 3)))]
    hosts = infrastructure(cloud, host_names, {
        name: draw(st.sampled_from(STATES)) for name in host_names})
    networks = {}
    for pid in PROJECTS:
        made = project_network(cloud, pid, pid)
        networks[pid] = made
        network_1 = hosts[0]
        if draw(st.booleans()):
            dhcp = cloud.add(obj(f'qdhcp-{made["network"]["id"]}@'
                                 f'{network_1["id"]}', 'vservice',
                                 parent=network_1, host=network_1['id']))
            cloud.connect(dhcp, made['network'])
            cloud.connect(dhcp, network_1)
    for pid in PROJECTS:
        other = draw(st.sampled_from(PROJECTS))
        cloud.connect(networks[pid]['router'], networks[other]['network'],
                      pid)
        for n in range(draw(st.integers(0, 3))):
            host = draw(st.sampled_from(hosts))
            made = networks[pid]
            instance = instance_on(
                cloud, made['project'], host, made['network'],
                made['subnet'], f'vm-{pid}-{n:02d}',
                ports=draw(st.integers(1, 2)),
                state=draw(st.sampled_from(STATES)))
            if draw(st.integers(0, 4)) == 0:
                instance.update(state='deleted',
                                deleted_at='2024-05-02T00:00:00+00:00')
    return cloud


def tenant_paths(draw, st, cloud):
    """(path, params) of one tenant request on an inventory route, with
    ids and filters drawn among every project's and the
    infrastructure's."""
    any_id = st.sampled_from(sorted(cloud.objects))
    route = draw(st.sampled_from(['list', 'object', 'links', 'clique',
                                  'impact', 'path', 'topology']))
    if route == 'list':
        params = []
        for name, values in (('type', st.sampled_from(
                ['instance', 'host', 'port', 'network,vservice'])),
                ('project_id', st.sampled_from(PROJECTS)),
                ('parent_id', any_id), ('host', any_id),
                ('state', st.sampled_from(STATES + ('deleted',))),
                ('deleted', st.sampled_from(['true', 'false'])),
                ('marker', any_id)):
            if draw(st.integers(0, 3)) == 0:
                params.append((name, draw(values)))
        return '/v2/inventory', params
    if route == 'topology':
        params = ([('project_id', draw(st.sampled_from(PROJECTS)))]
                  if draw(st.booleans()) else [])
        return '/v2/topology', params
    object_id = draw(any_id)
    suffix = '' if route == 'object' else f'/{route}'
    params = []
    if route == 'impact' and draw(st.booleans()):
        params.append(('depth', str(draw(st.integers(1, 4)))))
    if route in ('links',) and draw(st.booleans()):
        params.append(('deleted', 'true'))
    return f'/v2/inventory/{object_id}{suffix}', params


def leaks(cloud, projects, document):
    """What of ``document`` (a tenant's answer) a tenant of ``projects``
    must not see: ids and names of other projects' objects and of the
    infrastructure, objects or links of other projects, infrastructure
    objects that are not opaque."""
    found = []
    text = json_text(document)
    for item in cloud.objects.values():
        if item['project_id'] in projects:
            continue
        for secret in (item['id'], item['name']):
            if f'"{secret}"' in text or (
                    item['project_id'] is None and secret in text):
                found.append(secret)
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            if 'project_id' in item and item['project_id'] not in projects:
                found.append(item)
            if 'id' in item and 'type' in item and not item.get(
                    'opaque') and item.get('project_id') not in projects:
                found.append(item)
            if item.get('opaque') and item.get(
                    'type') not in INFRASTRUCTURE_TYPES:
                found.append(item)
            if item.get('opaque') and set(item) - {
                    'id', 'type', 'state', 'opaque', 'depth', 'path', 'via',
                    'first_failure'}:
                found.append(item)
            stack.extend(v for k, v in item.items() if k != 'attributes')
    return found


def json_text(document):
    import json
    return json.dumps(document)
