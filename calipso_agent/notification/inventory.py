"""The ``inventory`` endpoint: nova, neutron and cinder notifications made
inventory changes (objects and links, ``calipso_agent.inventory``).

It yields no samples. The agent gathers the changes of a batch and applies
them to the inventory store in one write before the batch is acknowledged
(``notification/manager.py``). The time of a change is the notification's
timestamp: the store keeps the newest, so redeliveries and late arrivals
change nothing. doc/inventory.md lists the events and what each makes.
"""

from calipso_agent import inventory
from calipso_agent.notification import base

#: Nova's legacy instance events and their versioned equivalents.
NOVA_LEGACY = ('compute.instance.create.end', 'compute.instance.rebuild.end',
               'compute.instance.update', 'compute.instance.delete.end',
               'compute.instance.power_on.end',
               'compute.instance.power_off.end',
               'compute.instance.resize.confirm.end',
               'compute.instance.live_migration.post.dest.end')
NOVA_VERSIONED = ('instance.create.end', 'instance.rebuild.end',
                  'instance.update', 'instance.delete.end',
                  'instance.power_on.end', 'instance.power_off.end',
                  'instance.resize_confirm.end',
                  'instance.live_migration_post_dest.end',
                  'instance.interface_attach.end',
                  'instance.interface_detach.end')
NEUTRON_KINDS = ('network', 'subnet', 'port', 'router', 'floatingip')
CINDER = ('volume.attach.end', 'volume.detach.end', 'volume.delete.end')

#: Nova's vm_state as the compute API shows it (the state of an object).
NOVA_STATES = {'active': 'ACTIVE', 'building': 'BUILD', 'stopped': 'SHUTOFF',
               'paused': 'PAUSED', 'suspended': 'SUSPENDED',
               'error': 'ERROR', 'rescued': 'RESCUE',
               'resized': 'VERIFY_RESIZE', 'soft-delete': 'SOFT_DELETED',
               'shelved': 'SHELVED',
               'shelved_offloaded': 'SHELVED_OFFLOADED'}
#: The fields of a serialized nova object around its data: never
#: attributes.
_NOVA_OBJECT_FIELDS = frozenset((
    'nova_object.name', 'nova_object.namespace', 'nova_object.version',
    'nova_object.data', 'nova_object.changes'))
#: Payload fields of nova that change at every event without saying
#: anything about the instance.
_NOVA_NOISE = _NOVA_OBJECT_FIELDS | frozenset((
    'audit_period_beginning', 'audit_period_ending', 'bandwidth',
    'progress', 'ip_addresses', 'block_devices', 'keypairs', 'request_id',
    'action_initiator_user', 'action_initiator_project'))
_NEUTRON_TYPES = {'network': 'network', 'subnet': 'subnet', 'port': 'port',
                  'router': 'router', 'floatingip': 'floating_ip'}


class InventoryEndpoint(base.NotificationEndpoint):
    """Inventory changes of nova, neutron and cinder notifications."""

    makes_inventory = True

    event_types = (NOVA_LEGACY + NOVA_VERSIONED + CINDER
                   + tuple(f'{kind}.*' for kind in NEUTRON_KINDS)
                   + ('!*.start',))

    def process_notification(self, notification):
        return []

    def inventory_changes(self, notification):
        """The objects and links ``notification`` says exist, changed or
        went away (a list of dicts); NotificationError when it cannot
        say."""
        event_type = notification.get('event_type')
        payload = notification.get('payload')
        if not isinstance(payload, dict):
            raise base.NotificationError('the payload is not a mapping')
        metadata = notification.get('metadata') or {}
        try:
            at = inventory.timestamp(metadata.get('timestamp'))
        except ValueError as exc:
            raise base.NotificationError(f'timestamp: {exc}')
        if at is None:
            raise base.NotificationError('the notification has no '
                                         'timestamp')
        try:
            if event_type.startswith('compute.instance.'):
                return _nova_legacy(event_type, payload, at)
            if event_type.startswith('instance.'):
                return _nova_versioned(event_type, payload, at)
            if event_type.startswith('volume.'):
                return _cinder(event_type, payload, at)
            return _neutron(event_type, payload, at)
        except (KeyError, TypeError, AttributeError) as exc:
            raise base.NotificationError(
                f'{event_type}: the payload lacks {exc!r}')
        except ValueError as exc:
            raise base.NotificationError(f'{event_type}: {exc}')

    def inventory_subject(self, notification):
        """(what the changes of ``notification`` are about, their
        instant) when it is a nova instance's or a neutron resource's
        create or update: the subject is the ids its changes are keyed by
        (``_nova_subject``, ``_SUBJECTS``). None for the others
        (deletions, lists, interfaces, cinder) and whenever a field is
        not as expected: those are made at once."""
        event_type = notification.get('event_type')
        payload = notification.get('payload')
        if event_type.__class__ is not str or payload.__class__ is not dict:
            return None
        family, _, action = event_type.partition('.')
        if family == 'compute' or family == 'instance':
            subject = _nova_subject(event_type, payload)
        else:
            subject_of = _SUBJECTS.get(family)
            if subject_of is None or action.removesuffix('.end') not in (
                    'create', 'update'):
                return None
            item = payload.get(family)
            subject = subject_of(item) if item.__class__ is dict else None
        if subject is None:
            return None
        try:
            # A key of the batch's plan: a field of another type than a
            # string is another subject; an unhashable one, no subject.
            hash(subject)
        except TypeError:
            return None
        try:
            at = inventory.timestamp(
                (notification.get('metadata') or {}).get('timestamp'))
        except (ValueError, AttributeError):
            return None
        return ((family,) + subject, at) if at else None


def _required(mapping, field):
    value = mapping.get(field)
    if not isinstance(value, str) or not value:
        raise ValueError(f'{field} {value!r} is not a non-empty string')
    return value


def _attributes(payload, skip=_NOVA_OBJECT_FIELDS):
    """The fields of a payload worth keeping as attributes: all but
    ``skip`` (a copy less a few fields: a nova payload has some forty)."""
    kept = payload.copy()
    for field in skip:
        kept.pop(field, None)
    return kept


# --- nova -------------------------------------------------------------------

def _instance_changes(instance_id, fields, at, deleted, link_targets=None):
    """The instance and its link to its host."""
    host = fields.get('host') or None
    project_id = fields.get('tenant_id') or fields.get('project_id')
    vm_state = fields.get('state')
    state = NOVA_STATES.get(vm_state, inventory.state_of(vm_state))
    if deleted or vm_state == 'deleted':
        state = inventory.DELETED
    changes = [inventory.make_object(
        'instance', instance_id, at, name=fields.get('display_name'),
        project_id=project_id, parent_id=host, host=host, state=state,
        created_at=_time(fields.get('created_at')),
        attributes=_attributes(fields, _NOVA_NOISE),
        link_targets=link_targets)]
    if host and state != inventory.DELETED:
        changes.append(inventory.make_link(
            'instance', instance_id, 'host', host, at,
            project_id=project_id))
    return changes


def _time(value):
    try:
        return inventory.timestamp(value or None)
    except ValueError:
        return None


def _nova_legacy(event_type, payload, at):
    instance_id = _required(payload, 'instance_id')
    return _instance_changes(instance_id, payload, at,
                             event_type == 'compute.instance.delete.end')


def _nova_versioned(event_type, payload, at):
    fields = payload.get('nova_object.data')
    if not isinstance(fields, dict):
        raise ValueError('the payload has no nova_object.data')
    instance_id = _required(fields, 'uuid')
    if event_type == 'instance.delete.end':
        return _instance_changes(instance_id, fields, at, True)
    addresses = _addresses(fields)
    vnics = [inventory.vnic_id(instance_id, a.get('port_uuid'))
             for a in addresses if a.get('port_uuid')]
    changes = _instance_changes(instance_id, fields, at, False,
                                {'instance-vnic': vnics})
    host = fields.get('host') or None
    project_id = fields.get('tenant_id')
    interfaces = {}
    for data in addresses:
        port_id = data.get('port_uuid')
        if port_id:
            interfaces.setdefault(port_id, []).append(data)
    for port_id, addresses in sorted(interfaces.items()):
        vnic = inventory.vnic_id(instance_id, port_id)
        first = addresses[0]
        changes.append(inventory.make_object(
            'vnic', vnic, at, name=first.get('device_name')
            or inventory.tap_name(port_id), project_id=project_id,
            parent_id=instance_id, host=host, state=inventory.ACTIVE,
            attributes={'mac_address': first.get('mac'),
                        'port_id': port_id, 'network': first.get('label'),
                        'addresses': sorted(a.get('address') or ''
                                            for a in addresses)}))
        changes.append(inventory.make_link('instance', instance_id, 'vnic',
                                           vnic, at, project_id=project_id))
        changes.append(inventory.make_link('vnic', vnic, 'port', port_id,
                                           at, project_id=project_id))
    return changes


def _addresses(fields):
    return [address.get('nova_object.data', address)
            for address in fields.get('ip_addresses') or ()]


def _nova_subject(event_type, payload):
    """(instance, host, its ports ...) of a nova event but a deletion."""
    if event_type in ('compute.instance.delete.end', 'instance.delete.end'):
        return None
    if event_type.startswith('compute.instance.'):
        fields, ports = payload, ()
        instance_id = fields.get('instance_id')
    else:
        fields = payload.get('nova_object.data')
        if fields.__class__ is not dict:
            return None
        instance_id = fields.get('uuid')
        try:
            ports = {a.get('port_uuid') for a in _addresses(fields)}
        except (AttributeError, TypeError):
            return None
        ports.discard(None)
        ports.discard('')
        if not _named(*ports):
            return None
        ports = tuple(sorted(ports))
    if fields.get('state') == 'deleted' or not _named(instance_id):
        return None
    return (instance_id, fields.get('host') or None) + ports


def _named(*ids):
    """Whether each of ``ids`` is a non-empty string."""
    for i in ids:
        if i.__class__ is not str or not i:
            return False
    return True


# --- neutron ----------------------------------------------------------------

def _neutron(event_type, payload, at):
    kind, _, action = event_type.partition('.')
    action = action.removesuffix('.end')
    if kind == 'router' and action.startswith('interface.'):
        return _router_interface(action, payload['router_interface'], at)
    obj_type = _NEUTRON_TYPES.get(kind)
    if obj_type is None:
        return []
    if action == 'delete':
        return [inventory.tombstone(obj_type, _required(
            payload, f'{kind}_id'), at)]
    if action not in ('create', 'update'):
        return []
    if kind in payload:
        items = [payload[kind]]
    elif f'{kind}s' in payload:
        items = payload[f'{kind}s']
    else:
        raise ValueError(f'the payload has neither {kind} nor {kind}s')
    changes = []
    for item in items:
        changes.extend(_NEUTRON_BUILDERS[kind](item, at))
    return changes


def _project(item):
    return item.get('project_id') or item.get('tenant_id') or None


def _neutron_object(obj_type, item, at, parent_id=None, name=None,
                    **fields):
    project_id = _project(item)
    return inventory.make_object(
        obj_type, _required(item, 'id'), at, name=name or item.get('name'),
        project_id=project_id,
        parent_id=parent_id if parent_id is not None else project_id,
        state=item.get('status'), created_at=_time(item.get('created_at')),
        attributes=item, **fields)


def _network(item, at):
    return [_neutron_object('network', item, at)]


def _subnet(item, at):
    network_id = _required(item, 'network_id')
    subnet = _neutron_object('subnet', item, at, parent_id=network_id)
    return [subnet, inventory.make_link(
        'subnet', subnet['id'], 'network', network_id, at,
        project_id=subnet['project_id'])]


def _port(item, at):
    network_id = _required(item, 'network_id')
    host = item.get('binding:host_id') or None
    port = _neutron_object('port', item, at, parent_id=network_id, host=host)
    project_id = port['project_id']
    changes = [port, inventory.make_link('port', port['id'], 'network',
                                         network_id, at,
                                         project_id=project_id)]
    owner = item.get('device_owner') or ''
    device = item.get('device_id') or None
    if device and owner.startswith('compute:'):
        vnic = inventory.vnic_id(device, port['id'])
        changes.append(inventory.make_object(
            'vnic', vnic, at, name=inventory.tap_name(port['id']),
            project_id=project_id, parent_id=device, host=host,
            state=item.get('status'),
            attributes={'mac_address': item.get('mac_address'),
                        'port_id': port['id'],
                        'fixed_ips': item.get('fixed_ips')}))
        changes.append(inventory.make_link('instance', device, 'vnic', vnic,
                                           at, project_id=project_id))
        changes.append(inventory.make_link('vnic', vnic, 'port', port['id'],
                                           at, project_id=project_id))
    elif device and owner.startswith('network:router_'):
        changes.append(inventory.make_link('router', device, 'port',
                                           port['id'], at,
                                           project_id=project_id))
    return changes


def _router(item, at):
    gateway = item.get('external_gateway_info') or {}
    targets = None
    if 'external_gateway_info' in item:
        targets = {'router-network': [gateway['network_id']]
                   if gateway.get('network_id') else []}
    router = _neutron_object('router', item, at, link_targets=targets)
    changes = [router]
    if gateway.get('network_id'):
        changes.append(inventory.make_link(
            'router', router['id'], 'network', gateway['network_id'], at,
            project_id=router['project_id'],
            attributes={'external_fixed_ips':
                        gateway.get('external_fixed_ips')}))
    return changes


def _floating_ip(item, at):
    targets = None
    if 'port_id' in item:
        targets = {'floating_ip-port': [item['port_id']]
                   if item['port_id'] else []}
    fip = _neutron_object('floating_ip', item, at,
                          name=item.get('floating_ip_address'),
                          link_targets=targets)
    changes = [fip]
    if item.get('port_id'):
        changes.append(inventory.make_link(
            'floating_ip', fip['id'], 'port', item['port_id'], at,
            project_id=fip['project_id']))
    return changes


def _router_interface(action, interface, at):
    router_id = _required(interface, 'id')
    project_id = _project(interface)
    make = (inventory.make_link if action == 'interface.create'
            else inventory.closed_link)
    subnets = interface.get('subnet_ids') or [interface.get('subnet_id')]
    changes = [make('router', router_id, 'subnet', subnet_id, at,
                    project_id=project_id)
               for subnet_id in sorted(set(subnets)) if subnet_id]
    if interface.get('port_id'):
        changes.append(make('router', router_id, 'port',
                            interface['port_id'], at, project_id=project_id))
    return changes


def _port_subject(item):
    owner = item.get('device_owner') or ''
    device = item.get('device_id') or None
    if owner.__class__ is not str:
        return None
    kind = ('compute' if owner.startswith('compute:') else 'router'
            if owner.startswith('network:router_') else '')
    return ((item.get('id'), item.get('network_id'),
             device if kind else None, kind if device else '')
            if _named(item.get('id'), item.get('network_id')) else None)


def _router_subject(item):
    gateway = item.get('external_gateway_info') or {}
    if gateway.__class__ is not dict or not _named(item.get('id')):
        return None
    return item['id'], gateway.get('network_id') or None


#: What the changes of a neutron resource's create or update are keyed by:
#: its id and the ids its links lead to (the builders below make one
#: change of each, whatever the other fields say).
_SUBJECTS = {
    'network': lambda item: ((item['id'],) if _named(item.get('id'))
                             else None),
    'subnet': lambda item: ((item['id'], item['network_id'])
                            if _named(item.get('id'), item.get('network_id'))
                            else None),
    'port': _port_subject,
    'router': _router_subject,
    'floatingip': lambda item: ((item['id'], item.get('port_id') or None)
                                if _named(item.get('id')) else None),
}

_NEUTRON_BUILDERS = {'network': _network, 'subnet': _subnet, 'port': _port,
                     'router': _router, 'floatingip': _floating_ip}


# --- cinder -----------------------------------------------------------------

def _cinder(event_type, payload, at):
    volume_id = _required(payload, 'volume_id')
    project_id = payload.get('tenant_id') or None
    if event_type == 'volume.delete.end':
        return [inventory.tombstone('volume', volume_id, at,
                                    name=payload.get('display_name'),
                                    project_id=project_id,
                                    parent_id=project_id)]
    attached = {a.get('instance_uuid') for a in
                payload.get('volume_attachment') or ()
                if isinstance(a, dict)}
    attached.add(payload.get('instance_uuid'))
    attached.discard(None)
    # What it is attached to now: the attachments listed (newer cinder),
    # or none when it is available again.
    targets = None
    if 'volume_attachment' in payload or payload.get('status') in (
            'available', 'error'):
        targets = {'volume-instance': sorted(attached)}
    changes = [inventory.make_object(
        'volume', volume_id, at, name=payload.get('display_name'),
        project_id=project_id, parent_id=project_id,
        state=payload.get('status'),
        created_at=_time(payload.get('created_at')),
        attributes=_attributes(payload), link_targets=targets)]
    if event_type == 'volume.attach.end':
        changes.extend(inventory.make_link('volume', volume_id, 'instance',
                                           instance_id, at,
                                           project_id=project_id)
                       for instance_id in sorted(attached))
    return changes
