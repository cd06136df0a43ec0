"""What the store has and the cloud no longer has, inside the scanned scope.

A service owns object types and link types (``SCOPES``); hosts are made
by both compute (hypervisors) and network (agents' hosts), so they are in
scope only when both answered. What a service that failed owns is never
touched. Inside the scope, a stored object the scan did not find becomes
a tombstone and a stored open link the scan did not find is closed, both
at the scan's start: the store keeps anything newer (an event that
created it while the scan ran), so a scan never undoes a newer event.
"""

import dataclasses

from calipso_agent import inventory
from calipso_agent.scan import mapping


@dataclasses.dataclass(frozen=True)
class Scope:
    types: tuple
    link_types: tuple


SCOPES = {
    'identity': Scope(('project',), ()),
    'compute': Scope(('availability_zone', 'instance', 'vnic'),
                     ('instance-host', 'instance-vnic', 'vnic-port',
                      'host-availability_zone')),
    'network': Scope(('network', 'subnet', 'port', 'router', 'floating_ip',
                      'vservice', 'vedge'),
                     ('port-network', 'subnet-network', 'router-subnet',
                      'router-port', 'router-network', 'floating_ip-port',
                      'vservice-network', 'vservice-host', 'vedge-host')),
    'volume': Scope(('volume',), ('volume-instance',)),
}
#: Types more than one service makes: in scope when all of them answered.
SHARED_TYPES = {'host': ('compute', 'network')}


def scope(answered):
    """(object types, link types) of the services that answered."""
    types, link_types = set(), set()
    for service in answered:
        types.update(SCOPES[service].types)
        link_types.update(SCOPES[service].link_types)
    for type_, services in SHARED_TYPES.items():
        if all(service in answered for service in services):
            types.add(type_)
    return sorted(types), sorted(link_types)


def _kept_fields(obj):
    return {field: obj.get(field) for field in (
        'name', 'project_id', 'parent_id', 'parent_type', 'host',
        'environment', 'attributes')}


def _newer(item, stamp):
    """Whether a stored item changed after the scan began."""
    try:
        return (inventory.timestamp(item.get('last_event_at')) or '') > stamp
    except ValueError:
        return False


def deletions(store, found, types, link_types, stamp, unread=()):
    """Tombstones of the stored objects of ``types`` that ``found`` (a
    ``mapping.Mapped``) lacks, and the closed links of ``link_types`` it
    lacks. ``unread``: ids whose children could not be read (a server
    gone between the list and its interfaces): their children and the
    links from them stay as they are."""
    stamp = inventory.timestamp(stamp)
    unread = set(unread)
    found_ids = {obj['id'] for obj in found.objects}
    result = mapping.Mapped()
    for obj in store.get_inventory(types=types):
        if (obj['id'] in found_ids or inventory.is_deleted(obj)
                or _newer(obj, stamp)):
            continue
        if obj.get('parent_id') in unread:
            unread.add(obj['id'])
            continue
        result.objects.append(inventory.tombstone(
            obj['type'], obj['id'], stamp, **_kept_fields(obj)))
    found_links = {inventory.link_key(link) for link in found.links}
    for link_type in link_types:
        for link in store.get_links(link_type=link_type):
            if (inventory.link_key(link) in found_links
                    or inventory.is_deleted(link)
                    or _newer(link, stamp)
                    or link['source_id'] in unread):
                continue
            result.links.append(inventory.closed_link(
                link['source_type'], link['source_id'], link['target_type'],
                link['target_id'], stamp, project_id=link.get('project_id'),
                attributes=link.get('attributes')))
    return result
