"""The APIs' bodies made into inventory objects and links (the contract of
``calipso_agent.inventory``; doc/inventory-scan.md has the table).

Every builder takes the scan's start (``stamp``): an object's
``last_event_at`` is the later of it and the body's ``updated`` /
``updated_at`` (the state read is at least that recent), a link's is the
stamp. The store then keeps whichever of an event and the scan is newer.
Infrastructure (region, zones, hosts, agents' services) has no project;
a link between a tenant's object and infrastructure carries the tenant's
project.
"""

import dataclasses

from calipso_agent import inventory

#: neutron agent types whose agent is a host's virtual switch (vedge).
L2_AGENT_TYPES = ('Open vSwitch agent', 'Linux bridge agent',
                  'OVN Controller agent', 'OVN Controller Gateway agent',
                  'Macvtap agent', 'NIC Switch agent')
DHCP_AGENT = 'DHCP agent'
L3_AGENT = 'L3 agent'
#: device_owner of the ports a router has.
ROUTER_PORT_OWNERS = ('network:router_interface',
                      'network:router_interface_distributed',
                      'network:ha_router_replicated_interface',
                      'network:router_gateway')
INTERNAL_ZONE = 'internal'


@dataclasses.dataclass
class Mapped:
    """Objects and links made from one service's bodies."""

    objects: list = dataclasses.field(default_factory=list)
    links: list = dataclasses.field(default_factory=list)

    def extend(self, other):
        self.objects.extend(other.objects)
        self.links.extend(other.links)


def last_event_at(stamp, *updated):
    """The later of the scan's start and the body's update times."""
    times = [inventory.timestamp(stamp)]
    for value in updated:
        try:
            times.append(inventory.timestamp(value))
        except (TypeError, ValueError):
            continue
    return max(t for t in times if t)


def _created(value):
    try:
        return inventory.timestamp(value)
    except (TypeError, ValueError):
        return None


def vservice_id(namespace, resource_id, host):
    """A DHCP or L3 agent's service on a host: its namespace (``qdhcp-``
    and the network id, ``qrouter-`` and the router id) at the host."""
    return f'{namespace}-{resource_id}@{host}'


def agent_state(agent):
    if not agent.get('admin_state_up', True):
        return 'DISABLED'
    return 'ACTIVE' if agent.get('alive') else 'DOWN'


def region(name, stamp):
    """The region scanned (``[service_credentials] region_name``)."""
    return inventory.make_object(
        'region', inventory.region_id(name), stamp, name=name,
        state='ACTIVE', attributes={'name': name})


# --- compute ----------------------------------------------------------------

def hypervisor_host(hypervisor):
    """The host of a hypervisor: its compute service's host name (what
    servers' ``OS-EXT-SRV-ATTR:host``, nova's notifications and neutron's
    agents call it)."""
    service = hypervisor.get('service') or {}
    return service.get('host') or hypervisor.get('hypervisor_hostname')


def hypervisor_state(hypervisor):
    if hypervisor.get('status') == 'disabled':
        return 'DISABLED'
    return 'ACTIVE' if hypervisor.get('state', 'up') == 'up' else 'DOWN'


def compute(bodies, stamp, region_name):
    """Availability zones, hosts (hypervisors), instances (servers of
    every project) and their vNICs (os-interface)."""
    mapped = Mapped()
    region_id = inventory.region_id(region_name)
    host_zone = {}
    for zone in bodies['zones']:
        name = zone.get('zoneName')
        if not name or name == INTERNAL_ZONE:
            continue
        zone_id = inventory.availability_zone_id(name)
        available = (zone.get('zoneState') or {}).get('available', True)
        mapped.objects.append(inventory.make_object(
            'availability_zone', zone_id, stamp, name=name,
            parent_id=region_id, parent_type='region',
            state='ACTIVE' if available else 'DOWN',
            attributes={'zoneName': name, 'zoneState': zone.get('zoneState'),
                        'hosts': sorted(zone.get('hosts') or {})}))
        for host, services in (zone.get('hosts') or {}).items():
            if 'nova-compute' in (services or {}):
                host_zone[host] = zone_id
    for hypervisor in bodies['hypervisors']:
        host = hypervisor_host(hypervisor)
        if not host:
            continue
        zone_id = host_zone.get(host)
        mapped.objects.append(inventory.make_object(
            'host', host, stamp, name=host,
            parent_id=zone_id or region_id,
            parent_type='availability_zone' if zone_id else 'region',
            host=host, state=hypervisor_state(hypervisor),
            attributes=hypervisor))
        if zone_id:
            mapped.links.append(inventory.make_link(
                'host', host, 'availability_zone', zone_id, stamp))
    for server in bodies['servers']:
        mapped.extend(instance(server, bodies['interfaces'].get(
            server['id']), stamp))
    return mapped


def instance(server, interfaces, stamp):
    """An instance, its host link, and its vNICs with their port links."""
    mapped = Mapped()
    server_id = server['id']
    project = server.get('tenant_id')
    host = server.get('OS-EXT-SRV-ATTR:host')
    attributes = {k: v for k, v in server.items() if k != 'links'}
    mapped.objects.append(inventory.make_object(
        'instance', server_id, last_event_at(stamp, server.get('updated')),
        name=server.get('name'), project_id=project,
        parent_id=host, parent_type='host' if host else None, host=host,
        state=server.get('status'), attributes=attributes,
        created_at=_created(server.get('created'))))
    if host:
        mapped.links.append(inventory.make_link(
            'instance', server_id, 'host', host, stamp, project_id=project))
    instance_name = server.get('OS-EXT-SRV-ATTR:instance_name')
    for interface in interfaces or ():
        port_id = interface.get('port_id')
        if not port_id:
            continue
        vnic = inventory.vnic_id(server_id, port_id)
        tap = inventory.tap_name(port_id)
        mapped.objects.append(inventory.make_object(
            'vnic', vnic, stamp, name=tap, project_id=project,
            parent_id=server_id, parent_type='instance', host=host,
            state=interface.get('port_state'),
            attributes=dict(interface, mac_address=interface.get(
                'mac_addr')),
            # Ceilometer's vNIC meters: <instance name>-<id>-<tap>.
            resource_ids=[f'{instance_name}-{server_id}-{tap}']
            if instance_name else None))
        mapped.links.append(inventory.make_link(
            'instance', server_id, 'vnic', vnic, stamp, project_id=project))
        mapped.links.append(inventory.make_link(
            'vnic', vnic, 'port', port_id, stamp, project_id=project,
            attributes={'mac_address': interface.get('mac_addr')}))
    return mapped


# --- network ----------------------------------------------------------------

def _project(body):
    return body.get('project_id') or body.get('tenant_id') or None


def _neutron_object(type, body, stamp, parent_type, parent_id, name=None,
                    state=None):
    return inventory.make_object(
        type, body['id'], last_event_at(stamp, body.get('updated_at')),
        name=name if name is not None else body.get('name'),
        project_id=_project(body), parent_id=parent_id,
        parent_type=parent_type if parent_id else None,
        state=state if state is not None else body.get('status'),
        attributes=body, created_at=_created(body.get('created_at')))


def network(bodies, stamp, region_name, compute_hosts=None):
    """Networks, subnets, ports, routers, floating IPs and the agents'
    vservices and vedges. ``compute_hosts``: the hosts the compute scan
    found (None when it did not answer): hosts known only from agents
    (network nodes) are made when it is known which they are."""
    mapped = Mapped()
    networks = {n['id']: n for n in bodies['networks']}
    routers = {r['id']: r for r in bodies['routers']}
    for net in bodies['networks']:
        mapped.objects.append(_neutron_object(
            'network', net, stamp, 'project', _project(net)))
    for subnet in bodies['subnets']:
        project = _project(subnet)
        mapped.objects.append(_neutron_object(
            'subnet', subnet, stamp, 'network', subnet.get('network_id'),
            state='ACTIVE'))
        if subnet.get('network_id'):
            mapped.links.append(inventory.make_link(
                'subnet', subnet['id'], 'network', subnet['network_id'],
                stamp, project_id=project))
    router_networks = {}
    for router in bodies['routers']:
        project = _project(router)
        mapped.objects.append(_neutron_object(
            'router', router, stamp, 'project', project))
        gateway = (router.get('external_gateway_info') or {}).get(
            'network_id')
        if gateway:
            router_networks.setdefault(router['id'], set()).add(gateway)
            mapped.links.append(inventory.make_link(
                'router', router['id'], 'network', gateway, stamp,
                project_id=project))
    for port in bodies['ports']:
        mapped.extend(_port(port, stamp, routers, router_networks))
    for fip in bodies['floatingips']:
        project = _project(fip)
        mapped.objects.append(_neutron_object(
            'floating_ip', fip, stamp, 'project', project,
            name=fip.get('floating_ip_address') or fip['id']))
        if fip.get('port_id'):
            mapped.links.append(inventory.make_link(
                'floating_ip', fip['id'], 'port', fip['port_id'], stamp,
                project_id=project,
                attributes={'fixed_ip_address': fip.get(
                    'fixed_ip_address')}))
    mapped.extend(_agents(bodies, stamp, region_name, compute_hosts,
                          networks, router_networks))
    return mapped


def _port(port, stamp, routers, router_networks):
    mapped = Mapped()
    project = _project(port)
    network_id = port.get('network_id')
    mapped.objects.append(_neutron_object(
        'port', port, stamp, 'network', network_id,
        name=port.get('name') or port['id']))
    if network_id:
        mapped.links.append(inventory.make_link(
            'port', port['id'], 'network', network_id, stamp,
            project_id=project))
    router_id = port.get('device_id')
    if port.get('device_owner') in ROUTER_PORT_OWNERS and (
            router_id in routers):
        router_project = _project(routers[router_id])
        mapped.links.append(inventory.make_link(
            'router', router_id, 'port', port['id'], stamp,
            project_id=router_project,
            attributes={'device_owner': port['device_owner']}))
        if port['device_owner'] != 'network:router_gateway':
            router_networks.setdefault(router_id, set()).add(network_id)
            for fixed_ip in port.get('fixed_ips') or ():
                if fixed_ip.get('subnet_id'):
                    mapped.links.append(inventory.make_link(
                        'router', router_id, 'subnet', fixed_ip['subnet_id'],
                        stamp, project_id=router_project, attributes={
                            'ip_address': fixed_ip.get('ip_address')}))
    return mapped


def _agents(bodies, stamp, region_name, compute_hosts, networks,
            router_networks):
    mapped = Mapped()
    agent_hosts = {}
    for agent in bodies['agents']:
        host = agent.get('host')
        if not host:
            continue
        agent_hosts.setdefault(host, []).append(agent.get('agent_type'))
        state = agent_state(agent)
        if agent.get('agent_type') in L2_AGENT_TYPES:
            vedge = inventory.vedge_id(host)
            mapped.objects.append(inventory.make_object(
                'vedge', vedge, stamp, name=f'{agent["agent_type"]} '
                f'on {host}', parent_id=host, parent_type='host', host=host,
                state=state, attributes=agent))
            mapped.links.append(inventory.make_link(
                'vedge', vedge, 'host', host, stamp))
        served = []
        if agent.get('agent_type') == DHCP_AGENT:
            served = [('qdhcp', network_id, {network_id})
                      for network_id in bodies['dhcp_networks'].get(
                          agent['id'], ())]
        elif agent.get('agent_type') == L3_AGENT:
            served = [('qrouter', router_id,
                       router_networks.get(router_id, set()))
                      for router_id in bodies['l3_routers'].get(
                          agent['id'], ())]
        for namespace, resource_id, network_ids in served:
            vservice = vservice_id(namespace, resource_id, host)
            mapped.objects.append(inventory.make_object(
                'vservice', vservice, stamp, name=f'{namespace}-'
                f'{resource_id}', parent_id=host, parent_type='host',
                host=host, state=state, attributes={
                    'agent_id': agent['id'],
                    'agent_type': agent['agent_type'],
                    'service_type': namespace,
                    'resource_id': resource_id}))
            mapped.links.append(inventory.make_link(
                'vservice', vservice, 'host', host, stamp))
            for network_id in sorted(network_ids):
                mapped.links.append(inventory.make_link(
                    'vservice', vservice, 'network', network_id, stamp,
                    project_id=_project(networks.get(network_id, {}))))
    if compute_hosts is not None:
        region_id = inventory.region_id(region_name)
        for host, agent_types in sorted(agent_hosts.items()):
            if host not in compute_hosts:
                mapped.objects.append(inventory.make_object(
                    'host', host, stamp, name=host, parent_id=region_id,
                    parent_type='region', host=host, state='ACTIVE',
                    attributes={'agent_types': sorted(agent_types)}))
    return mapped


# --- volume and identity ---------------------------------------------------

def volume(bodies, stamp):
    """Volumes (every project) and their attachments to instances."""
    mapped = Mapped()
    for body in bodies['volumes']:
        project = body.get('os-vol-tenant-attr:tenant_id')
        mapped.objects.append(inventory.make_object(
            'volume', body['id'], last_event_at(stamp,
                                                body.get('updated_at')),
            name=body.get('name') or body['id'], project_id=project,
            parent_id=project, parent_type='project' if project else None,
            state=body.get('status'),
            attributes={k: v for k, v in body.items() if k != 'links'},
            created_at=_created(body.get('created_at'))))
        for attachment in body.get('attachments') or ():
            if attachment.get('server_id'):
                mapped.links.append(inventory.make_link(
                    'volume', body['id'], 'instance',
                    attachment['server_id'], stamp, project_id=project,
                    attributes={
                        'device': attachment.get('device'),
                        'attachment_id': attachment.get('attachment_id')}))
    return mapped


def identity(bodies, stamp):
    """Projects."""
    mapped = Mapped()
    for project in bodies['projects']:
        mapped.objects.append(inventory.make_object(
            'project', project['id'], stamp, name=project.get('name'),
            project_id=project['id'],
            state='ACTIVE' if project.get('enabled', True) else 'DISABLED',
            attributes={k: v for k, v in project.items() if k != 'links'}))
    return mapped


def compute_hosts(mapped):
    """The host ids a compute scan found."""
    return {o['id'] for o in mapped.objects if o['type'] == 'host'}
