"""Compute pollsters: the instances of this hypervisor, read from libvirt
as Ceilometer's compute agent reads them.

The ``local_instances`` discovery lists the libvirt domains of
``[compute] libvirt_uri`` that nova made (those with nova's
``<metadata><nova:instance>`` element; other domains are not instances)
as dicts::

    {'id': <instance uuid: the domain's uuid>, 'name': <libvirt name,
     e.g. instance-0000002a>, 'display_name', 'project_id', 'user_id',
     'flavor': {'name', 'vcpus', 'ram', 'disk', 'ephemeral', 'swap'},
     'image_ref', 'host', 'disks': [target devices], 'vnics':
     [{'name': tap device, 'mac'}]}

and the pollsters read each one's counters from libvirt once per cycle
(kept in the cycle's cache, so ``disk.device.read.bytes`` and
``disk.device.write.bytes`` cost one ``blockStats`` per disk):

=========================  ==========  =====  ===============================
meter                      type        unit   resource id
=========================  ==========  =====  ===============================
cpu                        cumulative  ns     instance id
memory.usage               gauge       MB     instance id
disk.device.read.bytes     cumulative  B      ``<instance id>-<device>``
disk.device.write.bytes    cumulative  B      ``<instance id>-<device>``
network.incoming.bytes     cumulative  B      ``<name>-<instance id>-<tap>``
network.outgoing.bytes     cumulative  B      ``<name>-<instance id>-<tap>``
=========================  ==========  =====  ===============================

``memory.usage`` is what the guest uses (``available - unused`` of the
balloon driver's statistics); without those statistics (no balloon
driver, libvirt's test driver), the memory the domain holds now. An
instance that is not running has no counters: it is skipped.
"""

import abc
import logging
import threading
import xml.etree.ElementTree as ET

from calipso_agent import sample as sample_mod
from calipso_agent.pollsters import base

try:
    import libvirt
except ImportError:  # the ``compute`` extra is not installed
    libvirt = None

LOG = logging.getLogger(__name__)

NOVA_NS = 'http://openstack.org/xmlns/libvirt/nova/1.1'
_NOVA = f'{{{NOVA_NS}}}'

_CACHE_KEY = 'compute.libvirt'


class _Connections:
    """One libvirt connection per URI for the process, opened on first
    use and again after it broke."""

    def __init__(self):
        self._lock = threading.Lock()
        self._open = {}

    def get(self, uri):
        if libvirt is None:
            raise base.PollsterError('libvirt-python is not installed (the '
                                     'compute extra)')
        with self._lock:
            connection = self._open.get(uri)
            if connection is not None:
                try:
                    if connection.isAlive():
                        return connection
                except libvirt.libvirtError:
                    pass
                self._open.pop(uri, None)
            try:
                connection = libvirt.openReadOnly(uri)
            except libvirt.libvirtError as exc:
                raise base.PollsterError(f'cannot connect to libvirt at '
                                         f'{uri}: {exc}')
            self._open[uri] = connection
            return connection


CONNECTIONS = _Connections()


def _text(element, path):
    found = element.find(path) if element is not None else None
    return found.text.strip() if found is not None and found.text else None


def _number(text):
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def instance_of(xml_desc, host):
    """The instance dict of a domain's XML, or None when nova did not
    make the domain (no nova metadata)."""
    root = ET.fromstring(xml_desc)
    nova = root.find(f'metadata/{_NOVA}instance')
    if nova is None:
        return None
    flavor = nova.find(f'{_NOVA}flavor')
    owner = nova.find(f'{_NOVA}owner')
    user = owner.find(f'{_NOVA}user') if owner is not None else None
    project = owner.find(f'{_NOVA}project') if owner is not None else None
    image = nova.find(f'{_NOVA}root')
    disks = [target.get('dev') for target in root.findall(
        'devices/disk/target') if target.get('dev')]
    vnics = []
    for interface in root.findall('devices/interface'):
        target = interface.find('target')
        if target is None or not target.get('dev'):
            continue
        mac = interface.find('mac')
        vnics.append({'name': target.get('dev'),
                      'mac': mac.get('address') if mac is not None
                      else None})
    return {
        'id': _text(root, 'uuid'),
        'name': _text(root, 'name'),
        'display_name': _text(nova, f'{_NOVA}name'),
        'project_id': project.get('uuid') if project is not None else None,
        'user_id': user.get('uuid') if user is not None else None,
        'flavor': {
            'name': flavor.get('name') if flavor is not None else None,
            **{field: _number(_text(flavor, f'{_NOVA}{tag}'))
               for field, tag in (('vcpus', 'vcpus'), ('ram', 'memory'),
                                  ('disk', 'disk'),
                                  ('ephemeral', 'ephemeral'),
                                  ('swap', 'swap'))}},
        'image_ref': image.get('uuid') if image is not None else None,
        'host': host,
        'disks': disks,
        'vnics': vnics,
    }


class LocalInstances(base.Discovery):
    """The nova instances among the libvirt domains of this host."""

    def discover(self, context, param=None):
        connection = CONNECTIONS.get(self.conf.compute.libvirt_uri)
        instances = []
        try:
            domains = connection.listAllDomains()
        except libvirt.libvirtError as exc:
            raise base.PollsterError(f'cannot list the libvirt domains: '
                                     f'{exc}')
        for domain in domains:
            try:
                instance = instance_of(domain.XMLDesc(0), context.host)
            except libvirt.libvirtError as exc:
                # Gone between the listing and the read.
                LOG.debug('Domain %s skipped: %s', domain.name(), exc)
                continue
            if instance is not None:
                instances.append(instance)
        return sorted(instances, key=lambda i: i['id'])


class _Counters:
    """The counters of one running instance, read once per cycle."""

    def __init__(self, domain):
        self.domain = domain
        self._info = None
        self._memory = None
        self._blocks = {}
        self._interfaces = {}

    def info(self):
        if self._info is None:
            self._info = self.domain.info()
        return self._info

    def memory_mb(self):
        if self._memory is None:
            try:
                stats = self.domain.memoryStats()
            except libvirt.libvirtError:
                stats = {}
            if 'available' in stats and 'unused' in stats:
                kib = stats['available'] - stats['unused']
            else:
                kib = self.info()[2]
            self._memory = kib / 1024
        return self._memory

    def block(self, device):
        if device not in self._blocks:
            self._blocks[device] = self.domain.blockStats(device)
        return self._blocks[device]

    def interface(self, tap):
        if tap not in self._interfaces:
            self._interfaces[tap] = self.domain.interfaceStats(tap)
        return self._interfaces[tap]


def _counters(conf, cache, instance):
    """The instance's _Counters of this cycle, None when it is not
    running (or gone)."""
    known = cache.setdefault(_CACHE_KEY, {})
    if instance['id'] not in known:
        connection = CONNECTIONS.get(conf.compute.libvirt_uri)
        try:
            domain = connection.lookupByUUIDString(instance['id'])
            counters = _Counters(domain) if domain.isActive() else None
        except libvirt.libvirtError as exc:
            LOG.debug('Instance %s skipped: %s', instance['id'], exc)
            counters = None
        known[instance['id']] = counters
    return known[instance['id']]


def instance_metadata(instance):
    """Resource metadata of an instance's samples (Ceilometer's keys)."""
    flavor = instance.get('flavor') or {}
    return {'display_name': instance.get('display_name'),
            'name': instance.get('name'),
            'instance_id': instance['id'],
            'instance_type': flavor.get('name'),
            'flavor': dict(flavor),
            'vcpus': flavor.get('vcpus'),
            'memory_mb': flavor.get('ram'),
            'disk_gb': flavor.get('disk'),
            'image_ref': instance.get('image_ref'),
            'host': instance.get('host')}


class _InstancePollster(base.Pollster):
    default_discovery = 'local_instances'

    def get_samples(self, context, cache, resources):
        for instance in resources:
            if not isinstance(instance, dict) or 'id' not in instance:
                LOG.warning('%s: resource %r is not an instance of the '
                            'local_instances discovery', self.meter,
                            instance)
                continue
            counters = _counters(self.conf, cache, instance)
            if counters is None:
                continue
            try:
                yield from self.instance_samples(context, instance,
                                                 counters)
            except libvirt.libvirtError as exc:
                LOG.warning('%s of instance %s not read: %s', self.meter,
                            instance['id'], exc)

    def _sample(self, context, instance, resource_id, volume, extra=None):
        metadata = instance_metadata(instance)
        metadata.update(extra or {})
        return self.make_sample(context, resource_id, volume,
                                user_id=instance.get('user_id'),
                                project_id=instance.get('project_id'),
                                metadata=metadata)

    @abc.abstractmethod
    def instance_samples(self, context, instance, counters):
        """The samples of one running instance."""


class CPUPollster(_InstancePollster):
    meter_type = sample_mod.TYPE_CUMULATIVE
    unit = 'ns'

    def instance_samples(self, context, instance, counters):
        info = counters.info()
        yield self._sample(context, instance, instance['id'], info[4],
                           {'cpu_number': info[3]})


class MemoryUsagePollster(_InstancePollster):
    unit = 'MB'

    def instance_samples(self, context, instance, counters):
        yield self._sample(context, instance, instance['id'],
                           counters.memory_mb())


class _DiskPollster(_InstancePollster):
    meter_type = sample_mod.TYPE_CUMULATIVE
    unit = 'B'
    # Index in blockStats: (rd_req, rd_bytes, wr_req, wr_bytes, errs).
    position = None

    def instance_samples(self, context, instance, counters):
        for device in instance.get('disks') or ():
            volume = counters.block(device)[self.position]
            yield self._sample(context, instance,
                               f'{instance["id"]}-{device}', volume,
                               {'disk_name': device})


class DiskReadBytesPollster(_DiskPollster):
    position = 1


class DiskWriteBytesPollster(_DiskPollster):
    position = 3


def vnic_resource_id(instance, tap):
    """Ceilometer's resource id of a vNIC."""
    return f'{instance["name"]}-{instance["id"]}-{tap}'


class _NetworkPollster(_InstancePollster):
    meter_type = sample_mod.TYPE_CUMULATIVE
    unit = 'B'
    # Index in interfaceStats: (rx_bytes, rx_packets, rx_errs, rx_drop,
    # tx_bytes, tx_packets, tx_errs, tx_drop).
    position = None

    def instance_samples(self, context, instance, counters):
        for vnic in instance.get('vnics') or ():
            volume = counters.interface(vnic['name'])[self.position]
            yield self._sample(
                context, instance, vnic_resource_id(instance, vnic['name']),
                volume, {'vnic_name': vnic['name'], 'mac': vnic.get('mac'),
                         'instance_type': (instance.get('flavor') or {}
                                           ).get('name')})


class IncomingBytesPollster(_NetworkPollster):
    position = 0


class OutgoingBytesPollster(_NetworkPollster):
    position = 4
