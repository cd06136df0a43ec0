"""Publishing notification envelopes on the bus, as the services would.

An envelope is the JSON of one oslo.messaging notification
(``event_type``, ``payload``, and optionally ``publisher_id``,
``priority``, ``ctxt``, ``timestamp``), the format of the shared
fixtures. Each is sent with oslo.messaging's own Notifier (driver
``messagingv2``) on the exchange of the service that would have sent it,
so the agent sees exactly what nova, neutron, cinder, glance or a CORD
service puts on the bus. The Notifier gives every send a new message id:
replaying a file twice makes two notifications (two sets of samples).
"""

import datetime
import json
import os
import time

import oslo_messaging
from oslo_config import cfg
from oslo_messaging import opts as messaging_opts
from oslo_utils import timeutils

# The service whose exchange carries an event type, by its first word;
# the publisher id's first word when the event type's is not known.
EXCHANGE_BY_PREFIX = {
    'compute': 'nova', 'instance': 'nova', 'aggregate': 'nova',
    'flavor': 'nova', 'keypair': 'nova', 'server_group': 'nova',
    'servergroup': 'nova', 'compute_task': 'nova', 'scheduler': 'nova',
    'service': 'nova', 'libvirt': 'nova', 'metrics': 'nova',
    'network': 'neutron', 'subnet': 'neutron', 'port': 'neutron',
    'router': 'neutron', 'floatingip': 'neutron', 'l3': 'neutron',
    'security_group': 'neutron', 'security_group_rule': 'neutron',
    'firewall': 'neutron', 'firewall_policy': 'neutron',
    'firewall_rule': 'neutron', 'rbac_policy': 'neutron',
    'pool': 'neutron', 'vip': 'neutron', 'member': 'neutron',
    'health_monitor': 'neutron', 'vpnservice': 'neutron',
    'ipsecpolicy': 'neutron', 'ikepolicy': 'neutron',
    'ipsec_site_connection': 'neutron',
    'volume': 'cinder', 'volumes': 'cinder', 'snapshot': 'cinder',
    'backup': 'cinder', 'consistencygroup': 'cinder',
    'image': 'glance', 'images': 'glance',
    'identity': 'keystone', 'orchestration': 'heat',
    'vcpe': 'vcpeservice',
}
DEFAULT_EXCHANGE = 'openstack'
SERVICE_EXCHANGES = ('nova', 'neutron', 'cinder', 'glance')
PRIORITIES = ('audit', 'debug', 'info', 'warn', 'error', 'critical',
              'sample')


class EnvelopeError(ValueError):
    """A file that holds no notification envelope."""


def exchange_for(envelope):
    """The exchange the service that sent ``envelope`` publishes on: the
    service a publisher id names (``nova-compute:host``), else the one of
    the event type's or the publisher id's first word."""
    publisher = str(envelope.get('publisher_id') or '')
    service = publisher.split(':', 1)[0].split('-', 1)[0]
    if service in SERVICE_EXCHANGES:
        return service
    for text in (envelope.get('event_type'), publisher):
        prefix = str(text or '').split('.', 1)[0]
        if prefix in EXCHANGE_BY_PREFIX:
            return EXCHANGE_BY_PREFIX[prefix]
    return DEFAULT_EXCHANGE


def envelope_files(paths):
    """The JSON files named, a directory's ``*.json`` sorted by name."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            files.extend(sorted(
                os.path.join(path, name) for name in os.listdir(path)
                if name.endswith('.json') and name != 'manifest.json'))
        else:
            files.append(path)
    return files


def read_envelope(path):
    """The envelope in ``path``; EnvelopeError saying why not."""
    try:
        with open(path, 'rb') as handle:
            envelope = json.loads(handle.read())
    except (OSError, ValueError) as exc:
        raise EnvelopeError(f'{path}: cannot read: {exc}') from exc
    if not isinstance(envelope, dict):
        raise EnvelopeError(f'{path}: not a JSON object')
    if not isinstance(envelope.get('event_type'), str):
        raise EnvelopeError(f'{path}: no event_type')
    if 'payload' not in envelope:
        raise EnvelopeError(f'{path}: no payload')
    priority = str(envelope.get('priority') or 'info').lower()
    if {'warning': 'warn'}.get(priority, priority) not in PRIORITIES:
        raise EnvelopeError(f'{path}: unknown priority {priority!r}')
    return envelope


def notification_time(value):
    """The naive UTC datetime of an envelope's ``timestamp``."""
    text = str(value).replace('T', ' ').replace('Z', '')
    stamp = datetime.datetime.fromisoformat(text)
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(datetime.UTC).replace(tzinfo=None)
    return stamp


def kept_time(envelope):
    """``notification_time`` of the envelope's timestamp; None when it has
    none or it is not ISO 8601 (such an envelope is sent with the current
    time rather than not at all)."""
    if not envelope.get('timestamp'):
        return None
    try:
        return notification_time(envelope['timestamp'])
    except ValueError:
        return None


def notifier_conf(url, exchange):
    """A ConfigOpts of oslo.messaging's options for a Notifier that sends
    to ``exchange`` (a service's ``control_exchange``) on ``url``."""
    conf = cfg.ConfigOpts()
    conf([], project='calipso-replay', default_config_files=[])
    for group, options in messaging_opts.list_opts():
        conf.register_opts(options, group=group)
    conf.set_override('transport_url', url)
    conf.set_override('control_exchange', exchange)
    return conf


class Replayer:
    """Sends envelopes to ``topics`` on the broker of ``url``, on each
    envelope's service exchange unless ``exchange`` names one for all."""

    def __init__(self, url, topics=('notifications',), exchange=None,
                 keep_timestamps=False):
        self.url = url
        self.topics = list(topics)
        self.exchange = exchange
        self.keep_timestamps = keep_timestamps
        self._notifiers = {}

    def _notifier(self, exchange):
        # oslo.messaging takes the exchange from the transport's
        # configuration: one transport per exchange, as each service has.
        if exchange not in self._notifiers:
            transport = oslo_messaging.get_notification_transport(
                notifier_conf(self.url, exchange))
            self._notifiers[exchange] = (transport, oslo_messaging.Notifier(
                transport, driver='messagingv2', topics=self.topics,
                retry=3))
        return self._notifiers[exchange][1]

    def send(self, envelope):
        """Publish one envelope; the exchange it went to."""
        exchange = self.exchange or exchange_for(envelope)
        notifier = self._notifier(exchange).prepare(
            publisher_id=envelope.get('publisher_id') or 'calipso-replay')
        priority = str(envelope.get('priority') or 'info').lower()
        send = getattr(notifier, {'warning': 'warn'}.get(priority, priority))
        stamp = kept_time(envelope) if self.keep_timestamps else None
        if stamp is not None:
            timeutils.set_time_override(stamp)
        try:
            send(dict(envelope.get('ctxt') or {}), envelope['event_type'],
                 envelope['payload'])
        finally:
            if stamp is not None:
                timeutils.clear_time_override()
        return exchange

    def close(self):
        for transport, _notifier in self._notifiers.values():
            transport.cleanup()
        self._notifiers.clear()


class Pacer:
    """Spaces sends to at most ``rate`` per second (0: no limit)."""

    def __init__(self, rate, clock=time.monotonic, sleep=time.sleep):
        self.interval = 1.0 / rate if rate else 0.0
        self.clock = clock
        self.sleep = sleep
        self.next_at = None

    def wait(self):
        if not self.interval:
            return
        now = self.clock()
        if self.next_at is None:
            self.next_at = now
        if self.next_at > now:
            self.sleep(self.next_at - now)
        self.next_at = max(self.next_at, now) + self.interval
