"""A fake OpenStack cloud on a loopback port, for the inventory scan and the
OpenStack API pollsters.

``Cloud.build(...)`` makes a consistent cloud from a small declarative
description (projects, compute hosts, networks per project, servers per
network, volumes per server): every id refers to something that exists
(a port's ``device_id`` is a server, a floating IP's ``port_id`` is a port,
a volume's attachment names its server ...). Every resource is a copy of the
first item of the matching answer in ``../shared/fixtures/openstack-api/``
(the OpenStack API references' bodies) with its values replaced, never with
keys added or dropped; cinder's and glance's bodies, which have no fixture
there, follow their API references (``VOLUME_TEMPLATE``, ``IMAGE_TEMPLATE``).

``CloudServer(cloud)`` serves it (``with CloudServer(cloud) as server:``) on
one port, each service under its own path (``server.endpoints`` maps a
service type to its catalog URL):

* compute ``/compute/v2.1``: ``os-hypervisors/detail``,
  ``os-availability-zone/detail``, ``servers/detail`` (``all_tenants``,
  paged by ``limit``/``marker`` with ``servers_links``) and
  ``servers/{id}/os-interface``;
* network ``/network``: ``/v2.0/networks``, ``subnets``, ``ports``,
  ``routers``, ``floatingips``, ``agents`` (paged with ``<name>_links``,
  ``next`` and ``previous``), ``agents/{id}/dhcp-networks`` and
  ``agents/{id}/l3-routers``;
* volumev3 ``/volume/v3``: ``volumes/detail`` (``all_tenants``,
  ``volumes_links``);
* image ``/image``: ``/v2/images`` (``next``/``first``).

Like the real services, a collection longer than ``cloud.max_limit`` is
cut to pages even when the client sends no ``limit``. A nova or cinder
page that is full carries a ``next`` link even when nothing follows (the
next page is then empty); neutron and glance link a next page only when
there is one. ``cloud.fail('network', 503)`` makes one service answer
with that status until ``cloud.fail('network', None)``.
``register_in_keystone(keystone, server)`` puts the services and their
endpoints in a real Keystone's catalog, in a region of their own;
``Deployment(keystone, cloud)`` does both (the ``openstack_deployment``
fixture of tests/conftest.py makes them).
"""

import copy
import dataclasses
import datetime
import json
import os
import re
import socketserver
import threading
import urllib.parse
import uuid
import wsgiref.simple_server

from tests.helpers.fixtures import FIXTURES

API_FIXTURES = os.path.join(FIXTURES, 'openstack-api')
ID_NAMESPACE = uuid.UUID('6b7d1c52-3a55-4c1e-9a57-51b6f7e0c0de')
TIMESTAMP = '2026-01-01T00:00:00Z'


def _fixture_item(path, key):
    with open(os.path.join(API_FIXTURES, path)) as handle:
        return json.load(handle)[key][0]


# cinder's GET /v3/{project_id}/volumes/detail item (Block Storage API v3
# reference, "List accessible volumes with details").
VOLUME_TEMPLATE = {
    'migration_status': None,
    'attachments': [],
    'links': [],
    'availability_zone': 'nova',
    'os-vol-host-attr:host': 'block-1@lvmdriver-1#lvmdriver-1',
    'encrypted': False,
    'updated_at': TIMESTAMP,
    'replication_status': None,
    'snapshot_id': None,
    'id': '',
    'size': 1,
    'user_id': '',
    'os-vol-tenant-attr:tenant_id': '',
    'os-vol-mig-status-attr:migstat': None,
    'metadata': {},
    'status': 'available',
    'description': None,
    'multiattach': False,
    'source_volid': None,
    'consistencygroup_id': None,
    'os-vol-mig-status-attr:name_id': None,
    'name': '',
    'bootable': 'false',
    'created_at': TIMESTAMP,
    'volume_type': 'lvmdriver-1',
    'group_id': None,
    'provider_id': None,
    'service_uuid': '',
    'shared_targets': True,
    'cluster_name': None,
    'volume_type_id': '5fed9d7c-401d-46e2-8e80-f30c70cb7e1d',
    'consumes_quota': True,
}

# One item of cinder's ``attachments`` list.
VOLUME_ATTACHMENT_TEMPLATE = {
    'server_id': '',
    'attachment_id': '',
    'attached_at': TIMESTAMP,
    'host_name': None,
    'volume_id': '',
    'device': '/dev/vdb',
    'id': '',
}

# glance's GET /v2/images item (Image API v2 reference, "List images").
IMAGE_TEMPLATE = {
    'status': 'active',
    'name': '',
    'tags': [],
    'container_format': 'bare',
    'created_at': TIMESTAMP,
    'disk_format': 'qcow2',
    'updated_at': TIMESTAMP,
    'visibility': 'public',
    'self': '',
    'min_disk': 0,
    'protected': False,
    'id': '',
    'file': '',
    'checksum': 'c4a4d8d2ba5f6b7ab04db1ae8b1e6a2c',
    'os_hash_algo': 'sha512',
    'os_hash_value': '0' * 128,
    'os_hidden': False,
    'owner': '',
    'size': 21430272,
    'min_ram': 0,
    'schema': '/v2/schemas/image',
    'virtual_size': None,
}


def _templates():
    nova = 'nova/'
    neutron = 'neutron/'
    return {
        'hypervisor': _fixture_item(
            nova + 'os-hypervisors_hypervisors-detail-resp.json',
            'hypervisors'),
        'zone': _fixture_item(
            nova + 'os-availability-zone_availability-zone-detail-resp.json',
            'availabilityZoneInfo'),
        'server': _fixture_item(nova + 'servers_servers-details-resp.json',
                                'servers'),
        'interface': _fixture_item(
            nova + 'os-attach-interfaces_attach-interfaces-list-resp.json',
            'interfaceAttachments'),
        'network': _fixture_item(neutron + 'networks-list-response.json',
                                 'networks'),
        'subnet': _fixture_item(neutron + 'subnets-list-response.json',
                                'subnets'),
        'port': _fixture_item(neutron + 'ports-list-response.json', 'ports'),
        'router': _fixture_item(neutron + 'routers-list-response.json',
                                'routers'),
        'floatingip': _fixture_item(
            neutron + 'floating-ips-list-response.json', 'floatingips'),
        'agent': _fixture_item(neutron + 'agents-list-response.json',
                               'agents'),
        'volume': VOLUME_TEMPLATE,
        'volume_attachment': VOLUME_ATTACHMENT_TEMPLATE,
        'image': IMAGE_TEMPLATE,
    }


TEMPLATES = _templates()


def make(kind, **values):
    """A copy of the ``kind`` template with ``values`` replaced; a key the
    template does not have is an error (the shapes stay exact)."""
    body = copy.deepcopy(TEMPLATES[kind])
    unknown = set(values) - set(body)
    if unknown:
        raise KeyError(f'{kind} bodies have no {sorted(unknown)}')
    body.update(values)
    return body


def uid(*parts):
    """A deterministic UUID named by ``parts``."""
    return str(uuid.uuid5(ID_NAMESPACE, '/'.join(map(str, parts))))


def now():
    return datetime.datetime.now(datetime.UTC).strftime(
        '%Y-%m-%dT%H:%M:%SZ')


# Collections the fake serves, by service: name -> (path, body key).
COLLECTIONS = {
    'compute': ('hypervisors', 'servers'),
    'network': ('networks', 'subnets', 'ports', 'routers', 'floatingips',
                'agents'),
    'volumev3': ('volumes',),
    'image': ('images',),
}


@dataclasses.dataclass
class Cloud:
    """The resources of the fake cloud, as the APIs answer them, by
    collection name and id (insertion ordered). ``zones`` holds nova's
    availability zone bodies; ``dhcp_networks`` and ``l3_routers`` map an
    agent id to the network or router ids it serves."""

    hypervisors: dict = dataclasses.field(default_factory=dict)
    zones: list = dataclasses.field(default_factory=list)
    servers: dict = dataclasses.field(default_factory=dict)
    networks: dict = dataclasses.field(default_factory=dict)
    subnets: dict = dataclasses.field(default_factory=dict)
    ports: dict = dataclasses.field(default_factory=dict)
    routers: dict = dataclasses.field(default_factory=dict)
    floatingips: dict = dataclasses.field(default_factory=dict)
    agents: dict = dataclasses.field(default_factory=dict)
    volumes: dict = dataclasses.field(default_factory=dict)
    images: dict = dataclasses.field(default_factory=dict)
    dhcp_networks: dict = dataclasses.field(default_factory=dict)
    l3_routers: dict = dataclasses.field(default_factory=dict)
    max_limit: int = 1000
    failures: dict = dataclasses.field(default_factory=dict)
    requests: list = dataclasses.field(default_factory=list)

    @classmethod
    def build(cls, projects=('project-1', 'project-2'), hosts=2,
              zones=('nova',), networks_per_project=1, servers_per_network=2,
              volumes_per_server=1, images=2, admin_project='admin',
              network_host='network-1', max_limit=1000):
        """A consistent cloud: compute hosts ``compute-1..N`` spread over
        ``zones``, a network node with DHCP, L3, metadata and Open vSwitch
        agents (every compute host has an Open vSwitch agent), an external
        network ``public`` of ``admin_project``; per project a router
        (gateway on ``public``) and ``networks_per_project`` networks, each
        with one subnet on the router, a DHCP port and
        ``servers_per_network`` servers (one port each, round robin over
        the hosts, ``volumes_per_server`` volumes attached); the first
        server of each project has a floating IP."""
        cloud = cls(max_limit=max_limit)
        host_names = [f'compute-{i}' for i in range(1, hosts + 1)]
        host_zone = {name: zones[i % len(zones)]
                     for i, name in enumerate(host_names)}
        for i, name in enumerate(host_names, 1):
            cloud.hypervisors[i] = make(
                'hypervisor', id=i, hypervisor_hostname=name,
                host_ip=f'192.0.2.{i}', service={
                    'host': name, 'id': 100 + i, 'disabled_reason': None},
                running_vms=0)
        internal = copy.deepcopy(TEMPLATES['zone'])
        internal.update(zoneName='internal', hosts={
            'controller-1': {
                service: {'active': True, 'available': True,
                          'updated_at': None}
                for service in ('nova-conductor', 'nova-scheduler')}})
        cloud.zones.append(internal)
        for zone in zones:
            body = copy.deepcopy(TEMPLATES['zone'])
            body.update(zoneName=zone, zoneState={'available': True},
                        hosts={name: {'nova-compute': {
                            'active': True, 'available': True,
                            'updated_at': None}}
                            for name in host_names
                            if host_zone[name] == zone})
            cloud.zones.append(body)
        for name in [network_host, *host_names]:
            cloud.add_agent('Open vSwitch agent', name)
        dhcp = cloud.add_agent('DHCP agent', network_host)
        l3 = cloud.add_agent('L3 agent', network_host)
        cloud.add_agent('Metadata agent', network_host)
        public = cloud.add_network(admin_project, 'public', external=True,
                                   cidr='203.0.113.0/24')
        public_subnet = public['subnets'][0]
        cloud.dhcp_networks[dhcp] = []
        cloud.l3_routers[l3] = []
        server_index = 0
        for p, project in enumerate(projects):
            router = cloud.add_router(project, f'router-{p}', public['id'],
                                      public_subnet)
            cloud.l3_routers[l3].append(router['id'])
            for n in range(networks_per_project):
                network = cloud.add_network(
                    project, f'net-{p}-{n}', cidr=f'10.{p}.{n}.0/24')
                subnet_id = network['subnets'][0]
                cloud.dhcp_networks[dhcp].append(network['id'])
                cloud.add_port(project, network['id'], subnet_id,
                               'network:dhcp', f'dhcp-{network["id"]}')
                cloud.add_port(project, network['id'], subnet_id,
                               'network:router_interface', router['id'])
                for s in range(servers_per_network):
                    host = host_names[server_index % len(host_names)]
                    server_index += 1
                    server = cloud.add_server(
                        project, f'vm-{p}-{n}-{s}', host, host_zone[host],
                        network)
                    for v in range(volumes_per_server):
                        cloud.add_volume(project, f'vol-{p}-{n}-{s}-{v}',
                                         server['id'], host_zone[host])
            first = next((s for s in cloud.servers.values()
                          if s['tenant_id'] == project), None)
            if first is not None:
                port = cloud.server_ports(first['id'])[0]
                cloud.add_floatingip(project, public['id'], router['id'],
                                     port)
        for i in range(images):
            image_id = uid('image', i)
            cloud.images[image_id] = make(
                'image', id=image_id, name=f'image-{i}', owner=admin_project,
                self=f'/v2/images/{image_id}',
                file=f'/v2/images/{image_id}/file')
        return cloud

    # --- builders ---------------------------------------------------------
    def add_agent(self, agent_type, host):
        binary = {'Open vSwitch agent': 'neutron-openvswitch-agent',
                  'DHCP agent': 'neutron-dhcp-agent',
                  'L3 agent': 'neutron-l3-agent',
                  'Metadata agent': 'neutron-metadata-agent'}[agent_type]
        agent_id = uid('agent', agent_type, host)
        self.agents[agent_id] = make(
            'agent', id=agent_id, agent_type=agent_type, host=host,
            binary=binary, topic='N/A', availability_zone=None,
            heartbeat_timestamp='2026-01-01 00:00:00',
            started_at='2026-01-01 00:00:00',
            created_at='2026-01-01 00:00:00')
        return agent_id

    def add_network(self, project, name, external=False,
                    cidr='10.0.0.0/24'):
        network_id = uid('network', project, name)
        subnet_id = uid('subnet', project, name)
        network = make(
            'network', id=network_id, name=name, project_id=project,
            tenant_id=project, subnets=[subnet_id], status='ACTIVE',
            created_at=TIMESTAMP, updated_at=TIMESTAMP, shared=external,
            qos_policy_id=None, **{'router:external': external})
        self.networks[network_id] = network
        prefix = cidr.rsplit('.', 1)[0]
        self.subnets[subnet_id] = make(
            'subnet', id=subnet_id, name=f'{name}-subnet',
            network_id=network_id, project_id=project, tenant_id=project,
            cidr=cidr, gateway_ip=f'{prefix}.1', allocation_pools=[
                {'start': f'{prefix}.2', 'end': f'{prefix}.254'}],
            created_at=TIMESTAMP, updated_at=TIMESTAMP,
            **{'router:external': external})
        return network

    def _next_ip(self, subnet_id):
        prefix = self.subnets[subnet_id]['cidr'].rsplit('.', 1)[0]
        used = sum(1 for port in self.ports.values()
                   for ip in port['fixed_ips']
                   if ip['subnet_id'] == subnet_id)
        return f'{prefix}.{used + 2}'

    def add_port(self, project, network_id, subnet_id, device_owner,
                 device_id, name=''):
        port_id = uid('port', network_id, device_owner, device_id)
        address = self._next_ip(subnet_id)
        self.ports[port_id] = make(
            'port', id=port_id, name=name, network_id=network_id,
            project_id=project, tenant_id=project, device_owner=device_owner,
            device_id=device_id, status='ACTIVE',
            mac_address='fa:16:3e:' + ':'.join(
                port_id.replace('-', '')[i:i + 2] for i in (0, 2, 4)),
            fixed_ips=[{'ip_address': address, 'subnet_id': subnet_id}],
            dns_assignment=[], dns_name='', extra_dhcp_opts=[],
            qos_network_policy_id=None, qos_policy_id=None,
            created_at=TIMESTAMP, updated_at=TIMESTAMP)
        return self.ports[port_id]

    def add_router(self, project, name, external_network_id,
                   external_subnet_id):
        router_id = uid('router', project, name)
        self.routers[router_id] = make(
            'router', id=router_id, name=name, project_id=project,
            tenant_id=project, status='ACTIVE', routes=[],
            created_at=TIMESTAMP, updated_at=TIMESTAMP, flavor_id=None,
            conntrack_helpers=[], external_gateway_info={
                'enable_snat': True,
                'external_fixed_ips': [{
                    'ip_address': self._next_ip(external_subnet_id),
                    'subnet_id': external_subnet_id}],
                'network_id': external_network_id})
        network_project = self.networks[external_network_id]['project_id']
        self.add_port(network_project, external_network_id,
                      external_subnet_id, 'network:router_gateway',
                      router_id)
        return self.routers[router_id]

    def add_server(self, project, name, host, zone, network):
        server_id = uid('server', project, name)
        port = self.add_port(project, network['id'], network['subnets'][0],
                             f'compute:{zone}', server_id)
        self.servers[server_id] = make(
            'server', id=server_id, name=name, tenant_id=project,
            user_id='user-1', status='ACTIVE', created=TIMESTAMP,
            updated=TIMESTAMP, hostId=uid('hostId', project, host).replace(
                '-', ''),
            addresses={network['name']: [{
                'addr': port['fixed_ips'][0]['ip_address'],
                'OS-EXT-IPS-MAC:mac_addr': port['mac_address'],
                'OS-EXT-IPS:type': 'fixed', 'version': 4}]},
            links=[{'href': f'/v2.1/servers/{server_id}', 'rel': 'self'}],
            metadata={},
            **{'OS-EXT-AZ:availability_zone': zone,
               'OS-EXT-SRV-ATTR:host': host,
               'OS-EXT-SRV-ATTR:hypervisor_hostname': host,
               'OS-EXT-SRV-ATTR:instance_name':
                   f'instance-{len(self.servers) + 1:08x}',
               'os-extended-volumes:volumes_attached': []})
        for hypervisor in self.hypervisors.values():
            if hypervisor['hypervisor_hostname'] == host:
                hypervisor['running_vms'] += 1
        return self.servers[server_id]

    def add_volume(self, project, name, server_id=None, zone='nova'):
        volume_id = uid('volume', project, name)
        attachments = []
        if server_id is not None:
            attachments.append(make(
                'volume_attachment', server_id=server_id,
                attachment_id=uid('attachment', volume_id),
                volume_id=volume_id, id=volume_id))
            self.servers[server_id][
                'os-extended-volumes:volumes_attached'].append(
                    {'id': volume_id})
        self.volumes[volume_id] = make(
            'volume', id=volume_id, name=name, user_id='user-1',
            availability_zone=zone, attachments=attachments,
            status='in-use' if attachments else 'available',
            service_uuid=uid('cinder-volume'),
            links=[{'href': f'/v3/volumes/{volume_id}', 'rel': 'self'}],
            **{'os-vol-tenant-attr:tenant_id': project})
        return self.volumes[volume_id]

    def add_floatingip(self, project, network_id, router_id, port):
        fip_id = uid('floatingip', port['id'])
        subnet_id = self.networks[network_id]['subnets'][0]
        self.floatingips[fip_id] = make(
            'floatingip', id=fip_id, project_id=project, tenant_id=project,
            router_id=router_id, floating_network_id=network_id,
            floating_ip_address=self._next_ip(subnet_id),
            fixed_ip_address=port['fixed_ips'][0]['ip_address'],
            port_id=port['id'], status='ACTIVE', created_at=TIMESTAMP,
            updated_at=TIMESTAMP, dns_domain='', dns_name='', tags=[],
            qos_network_policy_id=None, qos_policy_id=None,
            port_details={
                'status': port['status'], 'name': port['name'],
                'admin_state_up': True, 'network_id': port['network_id'],
                'device_owner': port['device_owner'],
                'mac_address': port['mac_address'],
                'device_id': port['device_id']})
        return self.floatingips[fip_id]

    # --- queries and changes ---------------------------------------------
    def server_ports(self, server_id):
        return [port for port in self.ports.values()
                if port['device_id'] == server_id
                and port['device_owner'].startswith('compute:')]

    def interfaces(self, server_id):
        """nova's os-interface answer items of a server."""
        return [make('interface', port_id=port['id'],
                     net_id=port['network_id'],
                     mac_addr=port['mac_address'],
                     port_state=port['status'],
                     fixed_ips=copy.deepcopy(port['fixed_ips']))
                for port in self.server_ports(server_id)]

    def delete_server(self, server_id):
        """Delete a server as nova and neutron do: its ports go, its
        volumes are detached, its floating IPs disassociated."""
        del self.servers[server_id]
        for port in self.server_ports(server_id):
            del self.ports[port['id']]
            for fip in self.floatingips.values():
                if fip['port_id'] == port['id']:
                    fip.update(port_id=None, fixed_ip_address=None,
                               port_details=None, status='DOWN',
                               updated_at=now())
        for volume in self.volumes.values():
            kept = [a for a in volume['attachments']
                    if a['server_id'] != server_id]
            if len(kept) != len(volume['attachments']):
                volume.update(attachments=kept, updated_at=now(),
                              status='in-use' if kept else 'available')

    def update(self, collection, resource_id, **changes):
        """Change a resource and stamp its ``updated``/``updated_at``."""
        resource = getattr(self, collection)[resource_id]
        stamp = 'updated' if collection == 'servers' else 'updated_at'
        if stamp in resource:
            resource[stamp] = now()
        resource.update(changes)
        return resource

    def fail(self, service, status=503):
        """Make ``service`` (a service type) answer ``status``; None
        heals it."""
        if status is None:
            self.failures.pop(service, None)
        else:
            self.failures[service] = status


# --- the WSGI application ---------------------------------------------------

SERVICE_PREFIXES = {
    'compute': '/compute/v2.1',
    'network': '/network',
    'volumev3': '/volume/v3',
    'image': '/image',
}

ERROR_BODIES = {
    'compute': lambda code, msg: {'computeFault': {'code': code,
                                                   'message': msg}},
    'network': lambda code, msg: {'NeutronError': {
        'type': 'HTTPServiceUnavailable', 'message': msg, 'detail': ''}},
    'volumev3': lambda code, msg: {'computeFault': {'code': code,
                                                    'message': msg}},
    'image': lambda code, msg: {'message': msg, 'code': code},
}


class HTTPError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def _page(items, query, max_limit):
    """The slice of ``items`` after ``marker``, at most ``limit`` long;
    returns (page, more-after-it, limit)."""
    ids = [str(item['id']) for item in items]
    start = 0
    marker = query.get('marker')
    if marker is not None:
        if marker not in ids:
            raise HTTPError(400, f'marker {marker} not found')
        start = ids.index(marker) + 1
    try:
        limit = int(query.get('limit', max_limit))
    except ValueError:
        raise HTTPError(400, 'limit must be an integer')
    if limit < 0:
        raise HTTPError(400, 'limit must be >= 0')
    limit = min(limit, max_limit)
    page = items[start:start + limit]
    return page, start + limit < len(items), limit


class CloudApp:
    """WSGI application of a ``Cloud``: routes each service's requests.

    ``token_validator(token)`` (optional) says whether a token is good;
    without it any non-empty X-Auth-Token is accepted."""

    def __init__(self, cloud, token_validator=None):
        self.cloud = cloud
        self.token_validator = token_validator
        self._valid_tokens = set()
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        path = environ.get('PATH_INFO', '')
        query = dict(urllib.parse.parse_qsl(environ.get('QUERY_STRING', '')))
        base = f'http://{environ["HTTP_HOST"]}'
        service = next((name for name, prefix in SERVICE_PREFIXES.items()
                        if path == prefix or path.startswith(prefix + '/')),
                       None)
        with self._lock:
            self.cloud.requests.append((service, environ['REQUEST_METHOD'],
                                        path, query))
        try:
            if service is None:
                raise HTTPError(404, f'no service at {path}')
            self._authenticate(environ)
            status = self.cloud.failures.get(service)
            if status:
                return self._respond(start_response, status, ERROR_BODIES[
                    service](status, f'{service} is failing (test switch)'))
            if environ['REQUEST_METHOD'] != 'GET':
                raise HTTPError(405, 'the fake cloud is read-only')
            rest = path[len(SERVICE_PREFIXES[service]):]
            with self._lock:
                body = getattr(self, f'_{service}')(
                    rest, query, base + SERVICE_PREFIXES[service])
            return self._respond(start_response, 200, body)
        except HTTPError as exc:
            maker = ERROR_BODIES.get(service) or ERROR_BODIES['image']
            return self._respond(start_response, exc.status,
                                 maker(exc.status, exc.message))

    def _authenticate(self, environ):
        token = environ.get('HTTP_X_AUTH_TOKEN')
        if not token:
            raise HTTPError(401, 'authentication required')
        if self.token_validator is None or token in self._valid_tokens:
            return
        if not self.token_validator(token):
            raise HTTPError(401, 'invalid token')
        self._valid_tokens.add(token)

    @staticmethod
    def _respond(start_response, status, body):
        data = json.dumps(body).encode()
        reason = {200: 'OK', 400: 'Bad Request', 401: 'Unauthorized',
                  404: 'Not Found', 405: 'Method Not Allowed'}.get(
                      status, 'Error')
        start_response(f'{status} {reason}', [
            ('Content-Type', 'application/json'),
            ('Content-Length', str(len(data)))])
        return [data]

    # nova: a full page links the next one, even when nothing follows.
    def _compute(self, rest, query, base):
        cloud = self.cloud
        if rest == '/os-hypervisors/detail':
            return {'hypervisors': list(cloud.hypervisors.values())}
        if rest == '/os-availability-zone/detail':
            return {'availabilityZoneInfo': cloud.zones}
        if rest == '/servers/detail':
            servers = list(cloud.servers.values())
            if query.get('all_tenants') not in ('1', 'True', 'true'):
                servers = [s for s in servers
                           if s['tenant_id'] == query.get('project_id')]
            page, _, limit = _page(servers, query, cloud.max_limit)
            body = {'servers': page}
            if page and len(page) == limit:
                body['servers_links'] = [{'href': self._link(
                    base + '/servers/detail', query, page[-1]['id']),
                    'rel': 'next'}]
            return body
        match = re.fullmatch(r'/servers/([^/]+)/os-interface', rest)
        if match:
            if match.group(1) not in cloud.servers:
                raise HTTPError(404, f'server {match.group(1)} not found')
            return {'interfaceAttachments': cloud.interfaces(match.group(1))}
        raise HTTPError(404, f'compute has no {rest}')

    # neutron: next only when more follow; previous after a marker.
    def _network(self, rest, query, base):
        cloud = self.cloud
        match = re.fullmatch(r'/v2\.0/agents/([^/]+)/(dhcp-networks|'
                             r'l3-routers)', rest)
        if match:
            agent_id, kind = match.groups()
            if agent_id not in cloud.agents:
                raise HTTPError(404, f'agent {agent_id} not found')
            if kind == 'dhcp-networks':
                return {'networks': [
                    cloud.networks[n] for n in
                    cloud.dhcp_networks.get(agent_id, ())
                    if n in cloud.networks]}
            return {'routers': [cloud.routers[r] for r in
                                cloud.l3_routers.get(agent_id, ())
                                if r in cloud.routers]}
        match = re.fullmatch(r'/v2\.0/(networks|subnets|ports|routers|'
                             r'floatingips|agents)', rest)
        if not match:
            raise HTTPError(404, f'network has no {rest}')
        name = match.group(1)
        items = list(getattr(cloud, name).values())
        page, more, _ = _page(items, query, cloud.max_limit)
        links = []
        if page and more:
            links.append({'href': self._link(base + rest, query,
                                             page[-1]['id']), 'rel': 'next'})
        if page and 'marker' in query:
            links.append({'href': self._link(base + rest, query,
                                             page[0]['id'], reverse=True),
                          'rel': 'previous'})
        body = {name: page}
        if links:
            body[f'{name}_links'] = links
        return body

    # cinder: like nova.
    def _volumev3(self, rest, query, base):
        cloud = self.cloud
        if rest != '/volumes/detail':
            raise HTTPError(404, f'volume has no {rest}')
        volumes = list(cloud.volumes.values())
        if query.get('all_tenants') not in ('1', 'True', 'true'):
            volumes = [v for v in volumes
                       if v['os-vol-tenant-attr:tenant_id']
                       == query.get('project_id')]
        page, _, limit = _page(volumes, query, cloud.max_limit)
        body = {'volumes': page}
        if page and len(page) == limit:
            body['volumes_links'] = [{'href': self._link(
                base + rest, query, page[-1]['id']), 'rel': 'next'}]
        return body

    # glance: relative ``next`` when more follow, ``first`` always.
    def _image(self, rest, query, base):
        cloud = self.cloud
        if rest != '/v2/images':
            raise HTTPError(404, f'image has no {rest}')
        page, more, limit = _page(list(cloud.images.values()), query,
                                  cloud.max_limit)
        body = {'images': page, 'schema': '/v2/schemas/images',
                'first': '/v2/images' + (f'?limit={query["limit"]}'
                                         if 'limit' in query else '')}
        if page and more:
            next_query = {k: v for k, v in query.items() if k != 'marker'}
            next_query['marker'] = page[-1]['id']
            body['next'] = '/v2/images?' + urllib.parse.urlencode(next_query)
        return body

    @staticmethod
    def _link(url, query, marker, reverse=False):
        params = {k: v for k, v in query.items()
                  if k not in ('marker', 'page_reverse')}
        params['marker'] = marker
        if reverse:
            params['page_reverse'] = 'True'
        return url + '?' + urllib.parse.urlencode(params)


class _ThreadingServer(socketserver.ThreadingMixIn,
                       wsgiref.simple_server.WSGIServer):
    daemon_threads = True


class _QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, *args):
        pass


class CloudServer:
    """Serves a ``Cloud`` on 127.0.0.1 (a random port) from a thread."""

    def __init__(self, cloud, token_validator=None):
        self.cloud = cloud
        self.app = CloudApp(cloud, token_validator)
        self._server = None
        self._thread = None
        self.url = None

    def start(self):
        assert self._server is None, 'already serving'
        self._server = wsgiref.simple_server.make_server(
            '127.0.0.1', 0, self.app, server_class=_ThreadingServer,
            handler_class=_QuietHandler)
        self.url = f'http://127.0.0.1:{self._server.server_port}'
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name='fake-openstack', daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(10)
            self._server = None

    def __enter__(self):
        return self if self._server is not None else self.start()

    def __exit__(self, *exc_info):
        self.stop()

    @property
    def endpoints(self):
        """Catalog URL of each service type."""
        return {service: self.url + prefix
                for service, prefix in SERVICE_PREFIXES.items()}


SERVICE_NAMES = {'compute': 'nova', 'network': 'neutron',
                 'volumev3': 'cinderv3', 'image': 'glance'}


def register_in_keystone(keystone, server, region=None,
                         interfaces=('public', 'internal'), services=None):
    """Add the fake cloud's services (all, or the ``services`` types) and
    their endpoints to ``keystone``'s catalog, and Keystone's own identity
    endpoint (type ``identity``) in the same region, in ``region`` (a new
    region of its own by default, so that tests sharing one Keystone do
    not see each other's clouds). Returns a ``Registration`` whose
    ``remove()`` takes them out again."""
    region = region or f'test-{uuid.uuid4().hex[:8]}'
    catalog = {service: (SERVICE_NAMES[service], url)
               for service, url in server.endpoints.items()
               if services is None or service in services}
    if services is None or 'identity' in services:
        catalog['identity'] = (None, keystone.url)
    return keystone.register_services(region, catalog,
                                      interfaces=interfaces)


class Deployment:
    """A fake cloud served on loopback and registered in a real Keystone
    (``identity.Keystone``), in a region of its own. Keystone validates
    every token the cloud receives. ``session`` is a keystoneauth1
    Session of Keystone's admin service user ``calipso``; ``close()``
    takes the endpoints out of the catalog and stops the server."""

    def __init__(self, keystone, cloud, interfaces=('public', 'internal')):
        self.keystone = keystone
        self.cloud = cloud
        self.server = CloudServer(
            cloud, lambda token: keystone.validate(token) is not None)
        self.server.start()
        try:
            self.registration = register_in_keystone(
                keystone, self.server, interfaces=interfaces)
        except BaseException:
            self.server.stop()
            raise
        self.region = self.registration.region
        self.session = keystone.session(keystone.service_user)

    def close(self):
        self.registration.remove()
        self.server.stop()
