"""CORD vSG (virtual subscriber gateway) notifications become samples.

The worked example of a code endpoint. CORD's vSG stats notifier publishes
on the ``vcpeservice`` exchange: ``vcpe`` (one per running vSG),
``vcpe.compute.stats`` (CPU, memory, per-interface traffic) and
``vcpe.dns.*`` (dnsmasq counters). The meters, units and resource ids are
those of CORD's own Ceilometer plugin, so CORD dashboards keep working;
``vcpe.dns.total_inserted_entries``, as the notifier spells it, is accepted
beside the plugin's ``total_instered_entries``.
"""

from calipso_agent import envelope
from calipso_agent import sample as sample_mod
from calipso_agent.notification import base

GAUGE = sample_mod.TYPE_GAUGE
CUMULATIVE = sample_mod.TYPE_CUMULATIVE

# payload key -> (meter, type, unit) of vcpe.compute.stats
COMPUTE_STATS = (
    ('cpu_util', 'cpu_util', GAUGE, '%'),
    ('memory', 'memory', GAUGE, 'MB'),
    ('memory_usage', 'memory.usage', GAUGE, 'MB'),
)
# interface key -> (meter, unit), all cumulative counters
INTERFACE_STATS = (
    ('rx_bytes', 'network.incoming.bytes', 'B'),
    ('tx_bytes', 'network.outgoing.bytes', 'B'),
    ('rx_packets', 'network.incoming.packets', 'packet'),
    ('tx_packets', 'network.outgoing.packets', 'packet'),
)
# event type -> (payload key, meter, type, unit, per upstream server)
DNS_EVENTS = {
    'vcpe.dns.cache.size': (
        'cache_size', 'vsg.dns.cache.size', GAUGE, 'entries', False),
    'vcpe.dns.total_instered_entries': (
        'total_instered_entries', 'vsg.dns.total_instered_entries',
        CUMULATIVE, 'entries', False),
    'vcpe.dns.total_inserted_entries': (
        'total_inserted_entries', 'vsg.dns.total_instered_entries',
        CUMULATIVE, 'entries', False),
    'vcpe.dns.replaced_unexpired_entries': (
        'replaced_unexpired_entries', 'vsg.dns.replaced_unexpired_entries',
        CUMULATIVE, 'entries', False),
    'vcpe.dns.queries_forwarded': (
        'queries_forwarded', 'vsg.dns.queries_forwarded', CUMULATIVE,
        'queries', False),
    'vcpe.dns.queries_answered_locally': (
        'queries_answered_locally', 'vsg.dns.queries_answered_locally',
        CUMULATIVE, 'queries', False),
    'vcpe.dns.server.queries_sent': (
        'queries_sent', 'vsg.dns.server.queries_sent', CUMULATIVE,
        'queries', True),
    'vcpe.dns.server.queries_failed': (
        'queries_failed', 'vsg.dns.server.queries_failed', CUMULATIVE,
        'queries', True),
}


def _required(payload, key):
    value = payload.get(key)
    if value is None or value == '':
        raise base.NotificationError(f'payload has no {key}')
    return value


def _number(value, key):
    try:
        return float(value)
    except (TypeError, ValueError):
        raise base.NotificationError(f'{key}={value!r} is not a number')


class VsgEndpoint(base.NotificationEndpoint):
    """Samples of the CORD vSG service."""

    event_types = ('vcpe', 'vcpe.compute.stats', 'vcpe.dns.*')

    def process_notification(self, notification):
        payload = notification.get('payload')
        if not isinstance(payload, dict):
            raise base.NotificationError('payload is not an object')
        event_type = notification['event_type']
        if event_type == 'vcpe':
            return [self._sample(notification, 'vsg', GAUGE, 'vsg', 1.0,
                                 _required(payload, 'vcpe_id'))]
        if event_type == 'vcpe.compute.stats':
            return self._compute_stats(notification, payload)
        try:
            key, name, sample_type, unit, per_server = DNS_EVENTS[event_type]
        except KeyError:
            raise base.NotificationError(
                f'no vSG meter for event type {event_type}')
        resource_id = _required(payload, 'vcpe_id')
        if per_server:
            server = _required(payload, 'upstream_server')
            resource_id = f'{resource_id}-{server}'
        return [self._sample(notification, name, sample_type, unit,
                             _number(_required(payload, key), key),
                             resource_id)]

    def _compute_stats(self, notification, payload):
        vcpe_id = _required(payload, 'vcpe_id')
        samples = [
            self._sample(notification, name, sample_type, unit,
                         _number(payload[key], key), vcpe_id)
            for key, name, sample_type, unit in COMPUTE_STATS
            if payload.get(key) is not None]
        interfaces = payload.get('network_stats') or []
        if not isinstance(interfaces, list):
            raise base.NotificationError('network_stats is not a list')
        for interface in interfaces:
            if not isinstance(interface, dict):
                raise base.NotificationError(
                    f'network_stats entry {interface!r} is not an object')
            resource_id = f'{vcpe_id}-{_required(interface, "intf")}'
            samples.extend(
                self._sample(notification, name, CUMULATIVE, unit,
                             _number(interface[key], key), resource_id)
                for key, name, unit in INTERFACE_STATS
                if interface.get(key) is not None)
        return samples

    def _sample(self, notification, name, sample_type, unit, volume,
                resource_id):
        payload = notification['payload']
        metadata = dict(payload)
        metadata['event_type'] = notification['event_type']
        metadata['host'] = notification.get('publisher_id')
        message_id = envelope.message_id(notification)
        timestamp = envelope.timestamp(notification)
        try:
            timestamp = sample_mod.normalize_timestamp(timestamp)
        except (TypeError, ValueError):
            raise base.NotificationError(
                f'timestamp {timestamp!r} is not ISO 8601')
        return sample_mod.Sample(
            name=name, type=sample_type, unit=unit, volume=volume,
            user_id=payload.get('user_id'),
            project_id=payload.get('tenant_id'), resource_id=resource_id,
            timestamp=timestamp, resource_metadata=metadata,
            source=self.conf.sample_source, message_id=message_id,
            id=sample_mod.sample_id(base.message_key(notification), name,
                                    resource_id))
