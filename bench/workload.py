"""The benchmark workload: OpenStack notifications on the local RabbitMQ.

Notifications are published with oslo.messaging's ``Notifier`` (driver
``messagingv2``), one transport per exchange because the exchange is the
transport's ``control_exchange``. Queue counts are read with a passive
``queue.declare`` through kombu; only the unacked count needs rabbitmqctl.

Run ``python -m bench.workload --count N`` to publish a workload by hand.
"""

import argparse
import collections
import functools
import json
import re
import shutil
import subprocess
import sys
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

import kombu
import yaml

BROKER = 'guest:guest@127.0.0.1:5672'
DEFAULT_VHOST = '/'
TOPIC = 'notifications'
QUEUE = f'{TOPIC}.info'
PRIORITIES = ('audit', 'debug', 'info', 'warn', 'error', 'critical',
              'sample')
TOPIC_QUEUES = tuple(f'{TOPIC}.{p}' for p in PRIORITIES)
EXCHANGES = ('nova', 'neutron')
CEILOMETER_METERS = Path('/work/shared/fixtures/ceilometer/meters.yaml')

FLAVORS = (
    ('m1.tiny', '1', 512, 1, 1, 0),
    ('m1.small', '2', 2048, 1, 20, 0),
    ('m1.medium', '3', 4096, 2, 40, 10),
    ('m1.large', '4', 8192, 4, 80, 20),
)


def transport_url(vhost=DEFAULT_VHOST):
    """oslo.messaging URL of the local broker."""
    return f'rabbit://{BROKER}/{"" if vhost == "/" else vhost}'


def write_file_pipeline(path, output):
    """Write the pipeline.yaml ``path`` of both agents: one source of every
    meter, one sink publishing to the file ``output``, a sample a line."""
    Path(path).write_text(
        'sources:\n'
        '  - name: meter_source\n'
        '    meters: ["*"]\n'
        '    sinks: [meter_sink]\n'
        'sinks:\n'
        '  - name: meter_sink\n'
        f'    publishers: ["file://{output}"]\n')


def amqp_url(vhost=DEFAULT_VHOST):
    """kombu URL of the local broker."""
    return f'amqp://{BROKER}/{vhost}'


def _uuid(kind, index):
    return str(uuid.UUID(int=(kind << 96) | index))


def _ctxt(index, admin):
    return {
        'auth_token': None,
        'is_admin': admin,
        'project_id': '7c150a59fe714e6f9263774af9688f0e',
        'project_name': 'demo',
        'quota_class': None,
        'read_deleted': 'no',
        'remote_address': '192.0.2.15',
        'request_id': f'req-{_uuid(9, index)}',
        'roles': ['admin', 'member'] if admin else ['member'],
        'timestamp': '2012-05-08T16:03:43.760204',
        'user_id': '1e3ce043029547f1a61c1996d1a531a2',
        'user_name': 'admin' if admin else 'demo',
    }


def _instance_payload(index):
    name, flavor_id, memory_mb, vcpus, root_gb, ephemeral_gb = (
        FLAVORS[index % len(FLAVORS)])
    instance_id = _uuid(1, index)
    image = '0fb4a02c-6ef3-4ea5-9a57-2a0a2b5b0c2e'
    return {
        'tenant_id': '7c150a59fe714e6f9263774af9688f0e',
        'user_id': '1e3ce043029547f1a61c1996d1a531a2',
        'instance_id': instance_id,
        'display_name': f'bench-vm-{index}',
        'host': 'compute-host1',
        'availability_zone': 'nova',
        'instance_type': name,
        'instance_type_id': int(flavor_id),
        'instance_flavor_id': flavor_id,
        'memory_mb': memory_mb,
        'vcpus': vcpus,
        'root_gb': root_gb,
        'ephemeral_gb': ephemeral_gb,
        'disk_gb': root_gb + ephemeral_gb,
        'architecture': 'x86_64',
        'os_type': 'linux',
        'image_ref': image,
        'image_ref_url': f'http://glance.example.com:9292/images/{image}',
        'kernel_id': '',
        'ramdisk_id': '',
        'image_meta': {
            'base_image_ref': image,
            'container_format': 'bare',
            'disk_format': 'qcow2',
            'min_disk': str(root_gb),
            'min_ram': '0',
        },
        'metadata': {
            'metering.stack': _uuid(2, index // 10),
            'metering.server_group': 'bench-group',
            'role': 'webserver',
        },
        'state': 'active',
        'state_description': '',
        'created_at': '2012-05-07 22:16:18+00:00',
        'launched_at': '2012-05-07T23:01:27.000000',
        'deleted_at': '',
        'audit_period_beginning': '2012-05-08 15:00:00',
        'audit_period_ending': '2012-05-08 16:00:00',
        'bandwidth': {},
    }


def _update_payload(index):
    payload = _instance_payload(index)
    payload.update({
        'old_state': 'active',
        'new_task_state': 'rebooting',
        'state_description': 'rebooting',
        'audit_period_beginning': '2012-05-08 16:00:00',
        'audit_period_ending': '2012-05-08 16:05:21',
    })
    return payload


def _port_payload(index):
    port_id = _uuid(3, index)
    return {'port': {
        'id': port_id,
        'name': f'bench-port-{index}',
        'tenant_id': '82ed0c40ebe64d0bb3310027039c8ed2',
        'project_id': '82ed0c40ebe64d0bb3310027039c8ed2',
        'network_id': '7fd4eb2f-a38e-4c25-8490-71ca8800c9be',
        'mac_address': f'fa:16:3e:{index >> 16 & 255:02x}:'
                       f'{index >> 8 & 255:02x}:{index & 255:02x}',
        'admin_state_up': True,
        'status': 'DOWN',
        'device_id': _uuid(1, index),
        'device_owner': 'compute:nova',
        'fixed_ips': [{
            'ip_address': f'192.168.{index // 250 % 250}.{index % 250 + 2}',
            'subnet_id': '1a3a170d-d7ce-4cc9-b1db-621da15a25f5',
        }],
        'allowed_address_pairs': [],
        'extra_dhcp_opts': [],
        'security_groups': ['0c1e5a8e-6f6c-4b25-a7cf-4b8b5c2e7d11'],
        'binding:host_id': 'compute-host1',
        'binding:vif_type': 'ovs',
        'binding:vnic_type': 'normal',
        'binding:profile': {},
        'binding:vif_details': {
            'port_filter': True,
            'ovs_hybrid_plug': False,
            'bridge_name': 'br-int',
        },
        'port_security_enabled': True,
        'qos_policy_id': None,
        'dns_name': '',
        'description': 'bench port',
        'tags': [],
        'propagate_uplink_status': False,
        'ip_allocation': 'immediate',
        'revision_number': 1,
        'created_at': '2012-09-27T14:28:31Z',
        'updated_at': '2012-09-27T14:28:31Z',
    }}


@dataclass(frozen=True)
class Kind:
    """One kind of notification of the workload."""

    event_type: str
    exchange: str
    publisher_id: str
    payload: object
    admin_ctxt: bool


KINDS = {
    'exists': Kind('compute.instance.exists', 'nova', 'compute.host1',
                   _instance_payload, True),
    'update': Kind('compute.instance.update', 'nova', 'compute.host1',
                   _update_payload, True),
    'port': Kind('port.create.end', 'neutron', 'network.host1',
                 _port_payload, False),
}
DEFAULT_MIX = '2:1:1'


def parse_mix(text):
    """``exists:update:port`` weights (``2:1:1``) or one kind's name."""
    if text in KINDS:
        return {k: int(k == text) for k in KINDS}
    parts = text.split(':')
    if len(parts) != len(KINDS) or not all(p.isdigit() for p in parts):
        raise ValueError(f'mix {text!r} is neither a kind '
                         f'({", ".join(KINDS)}) nor weights like 2:1:1')
    mix = dict(zip(KINDS, map(int, parts), strict=True))
    if not any(mix.values()):
        raise ValueError('a mix needs one non-zero weight')
    return mix


def pattern(mix):
    """One cycle of kinds, interleaved (2:1:1 → exists update port exists)."""
    return [kind for i in range(max(mix.values()))
            for kind, weight in mix.items() if i < weight]


def kinds(count, mix, start=0):
    """The kinds of notifications ``start`` to ``start + count``."""
    cycle = pattern(mix)
    return (cycle[i % len(cycle)] for i in range(start, start + count))


def count_kinds(count, mix, start=0):
    return collections.Counter(kinds(count, mix, start))


def _event_types(definition):
    event_types = definition.get('event_type', [])
    return [event_types] if isinstance(event_types, str) else event_types


@functools.cache
def meters_per_kind(meters_path=CEILOMETER_METERS):
    """Meter names each kind yields under a meters.yaml.

    A definition applies when one of its event-type regexes matches at the
    start, as Ceilometer matches them; the workload's payloads carry every
    field such a definition reads, so each yields one sample.
    """
    definitions = yaml.safe_load(Path(meters_path).read_text())['metric']
    result = {}
    for name, kind in KINDS.items():
        meters = [d['name'] for d in definitions
                  if any(re.match(p, kind.event_type)
                         for p in _event_types(d))]
        for definition in definitions:
            if definition['name'] in meters and (
                    definition.get('lookup')
                    or '[*]' in str(definition.get('volume'))):
                raise ValueError(f'meter {definition["name"]} yields a '
                                 'payload-dependent number of samples')
        result[name] = tuple(meters)
    return result


def expected_samples(count, mix, start=0, meters_path=CEILOMETER_METERS):
    """Counter of meter name → samples the notifications should yield."""
    per_kind = meters_per_kind(meters_path)
    expected = collections.Counter()
    for kind, n in count_kinds(count, mix, start).items():
        for meter in per_kind[kind]:
            expected[meter] += n
    return expected


def sizes(kind, index=0):
    """(notification, wire) sizes in bytes of one published notification.

    The notification is the JSON a consumer decodes from the envelope's
    ``oslo.message``; the wire size is the envelope's.
    """
    spec = KINDS[kind]
    message = {
        'message_id': _uuid(4, index),
        'publisher_id': spec.publisher_id,
        'event_type': spec.event_type,
        'priority': 'INFO',
        'payload': spec.payload(index),
        'timestamp': '2012-05-08 16:03:44.122481',
    }
    for key, value in _ctxt(index, spec.admin_ctxt).items():
        message[f'_context_{key}'] = value
    inner = json.dumps(message)
    envelope = json.dumps({'oslo.version': '2.0', 'oslo.message': inner})
    return len(inner), len(envelope)


def mean_sizes(mix):
    """Mean (notification, wire) sizes over one cycle of the mix."""
    cycle = pattern(mix)
    all_sizes = [sizes(k, i) for i, k in enumerate(cycle)]
    return tuple(sum(col) / len(cycle) for col in zip(*all_sizes,
                                                       strict=True))


def _transport_conf(exchange):
    import oslo_messaging.opts
    from oslo_config import cfg

    conf = cfg.ConfigOpts()
    for group, opts in oslo_messaging.opts.list_opts():
        if group is None:
            conf.register_opts(opts)
    conf(args=[], project='calipso-bench', default_config_files=[])
    conf.set_override('control_exchange', exchange)
    return conf


class Publisher:
    """oslo.messaging notifiers on the local broker, one per kind."""

    def __init__(self, vhost=DEFAULT_VHOST):
        url = transport_url(vhost)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            import oslo_messaging
            self._transports = []
            by_exchange = {}
            for kind in KINDS.values():
                if kind.exchange not in by_exchange:
                    by_exchange[kind.exchange] = (
                        oslo_messaging.get_notification_transport(
                            _transport_conf(kind.exchange), url=url))
                    self._transports.append(by_exchange[kind.exchange])
        self._notifiers = {}
        for name, kind in KINDS.items():
            self._notifiers[name] = oslo_messaging.Notifier(
                by_exchange[kind.exchange], publisher_id=kind.publisher_id,
                driver='messagingv2', topics=[TOPIC])

    def publish(self, count, mix, start=0):
        """Publish notifications ``start`` to ``start + count``."""
        for index, kind in enumerate(kinds(count, mix, start), start):
            spec = KINDS[kind]
            self._notifiers[kind].info(_ctxt(index, spec.admin_ctxt),
                                       spec.event_type, spec.payload(index))

    def close(self):
        for transport in self._transports:
            transport.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Broker:
    """Cheap queue counts and purges through kombu."""

    def __init__(self, vhost=DEFAULT_VHOST):
        self._conn = kombu.Connection(amqp_url(vhost), connect_timeout=10)
        self._conn.connect()
        self._channel = self._conn.channel()

    def counts(self, queue=QUEUE):
        """(ready, consumers) of a queue, None when it does not exist."""
        try:
            ok = self._channel.queue_declare(queue=queue, passive=True)
        except self._conn.channel_errors:
            self._channel = self._conn.channel()
            return None
        return ok.message_count, ok.consumer_count

    def purge(self, queues=TOPIC_QUEUES):
        for queue in queues:
            if self.counts(queue) is not None:
                self._channel.queue_purge(queue)

    def wait(self, predicate, timeout, queue=QUEUE, interval=0.05):
        """Poll counts until ``predicate(ready, consumers)``; last counts."""
        deadline = time.monotonic() + timeout
        while True:
            counts = self.counts(queue) or (0, 0)
            if predicate(*counts) or time.monotonic() > deadline:
                return counts
            time.sleep(interval)

    def close(self):
        self._conn.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _rabbitmqctl(*args):
    rabbitmqctl = shutil.which('rabbitmqctl')
    if not rabbitmqctl:
        raise OSError('rabbitmqctl is not installed')
    return subprocess.run([rabbitmqctl, '-q', *args], capture_output=True,
                          text=True, timeout=60, check=True).stdout


def ensure_vhost(vhost):
    """Create a virtual host for guest unless it exists (rabbitmqctl)."""
    if vhost == DEFAULT_VHOST or vhost in _rabbitmqctl(
            'list_vhosts', 'name').split():
        return
    _rabbitmqctl('add_vhost', vhost)
    _rabbitmqctl('set_permissions', '-p', vhost, 'guest', '.*', '.*', '.*')


def rabbitmqctl_counts(queue=QUEUE, vhost=DEFAULT_VHOST):
    """(ready, unacked) from rabbitmqctl, None when it cannot tell."""
    try:
        out = _rabbitmqctl('list_queues', '-p', vhost, 'name',
                           'messages_ready', 'messages_unacknowledged')
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[0] == queue:
            return int(fields[1]), int(fields[2])
    return None


def prepare(broker, count, mix, vhost=DEFAULT_VHOST, timeout=120):
    """Purge the notification queues and publish a fresh workload.

    Returns the seconds publishing took; raises when the queue does not
    end up holding exactly ``count`` ready messages.
    """
    broker.purge()
    started = time.monotonic()
    with Publisher(vhost) as publisher:
        publisher.publish(count, mix)
    elapsed = time.monotonic() - started
    ready, _ = broker.wait(lambda r, c: r >= count, timeout=timeout)
    if ready != count:
        raise RuntimeError(f'{QUEUE} holds {ready} messages after '
                           f'publishing {count}')
    return elapsed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--count', type=int, default=20000)
    parser.add_argument('--mix', default=DEFAULT_MIX)
    parser.add_argument('--vhost', default=DEFAULT_VHOST)
    parser.add_argument('--keep', action='store_true',
                        help='do not purge the notification queues first')
    args = parser.parse_args(argv)
    mix = parse_mix(args.mix)
    ensure_vhost(args.vhost)
    with Broker(args.vhost) as broker:
        if args.keep:
            started = time.monotonic()
            with Publisher(args.vhost) as publisher:
                publisher.publish(args.count, mix)
            elapsed = time.monotonic() - started
        else:
            elapsed = prepare(broker, args.count, mix, args.vhost)
        ready, consumers = broker.counts() or (0, 0)
    expected = expected_samples(args.count, mix)
    size, wire = mean_sizes(mix)
    print(f'published {args.count} notifications ({args.mix}, '
          f'~{size:.0f} B each, {wire:.0f} B on the wire) in '
          f'{elapsed:.1f} s; '
          f'{QUEUE}: {ready} ready, {consumers} consumers; expected '
          f'samples: {sum(expected.values())} '
          f'{dict(sorted(expected.items()))}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

