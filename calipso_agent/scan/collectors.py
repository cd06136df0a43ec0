"""What each scanned service lists, as its API's bodies (dicts by name).

A collector either returns everything its service lists or raises
``calipso_agent.scan.client.ServiceError``: a service is scanned whole or
not at all, so the reconcile step never takes a partial list for the
cloud's content.
The nova calls use no microversion (2.1: hypervisors carry
``service.host``, servers ``OS-EXT-SRV-ATTR:host``).
"""

L3_AGENT = 'L3 agent'
DHCP_AGENT = 'DHCP agent'


def compute(client, service_type='compute'):
    base = client.endpoint('compute', service_type)
    servers = client.list('compute', base + '/servers/detail', 'servers',
                          {'all_tenants': 1})
    interfaces = {}
    for server in servers:
        body = client.get('compute',
                          f'{base}/servers/{server["id"]}/os-interface',
                          missing_ok=True)
        # None: the server went away during the scan.
        interfaces[server['id']] = (
            None if body is None else client.items(
                'compute', body, 'interfaceAttachments', 'os-interface'))
    zones = client.get('compute', base + '/os-availability-zone/detail')
    return {
        'hypervisors': client.list('compute',
                                   base + '/os-hypervisors/detail',
                                   'hypervisors', send_limit=False),
        'zones': client.items('compute', zones, 'availabilityZoneInfo',
                              'os-availability-zone/detail'),
        'servers': servers,
        'interfaces': interfaces,
    }


def network(client, service_type='network'):
    base = client.endpoint('network', service_type) + '/v2.0'
    bodies = {name: client.list('network', f'{base}/{name}', name)
              for name in ('networks', 'subnets', 'ports', 'routers',
                           'floatingips')}
    agents = client.list('network', base + '/agents', 'agents',
                         send_limit=False)
    bodies['agents'] = agents
    bodies['dhcp_networks'] = {}
    bodies['l3_routers'] = {}
    for agent in agents:
        if agent.get('agent_type') == DHCP_AGENT:
            body = client.get('network',
                              f'{base}/agents/{agent["id"]}/dhcp-networks')
            bodies['dhcp_networks'][agent['id']] = [
                n['id'] for n in client.items('network', body, 'networks',
                                              'dhcp-networks')]
        elif agent.get('agent_type') == L3_AGENT:
            body = client.get('network',
                              f'{base}/agents/{agent["id"]}/l3-routers')
            bodies['l3_routers'][agent['id']] = [
                r['id'] for r in client.items('network', body, 'routers',
                                              'l3-routers')]
    return bodies


def volume(client, service_type='volumev3'):
    base = client.endpoint('volume', service_type)
    return {'volumes': client.list('volume', base + '/volumes/detail',
                                   'volumes', {'all_tenants': 1})}


def identity(client, service_type='identity'):
    base = client.endpoint('identity', service_type)
    if not base.endswith('/v3'):
        base += '/v3'
    return {'projects': client.list('identity', base + '/projects',
                                    'projects', send_limit=False)}


COLLECTORS = {
    'identity': identity,
    'compute': compute,
    'network': network,
    'volume': volume,
}
