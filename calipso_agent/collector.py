"""The collector: samples that notifier:// put on the bus, into the store.

One oslo.messaging batch notification listener per worker consumes the
``sample`` priority of ``[publisher_notifier] metering_topic`` on the
transport's control exchange (where notifier:// sends). Each notification
carries a list of Ceilometer meter messages; every one is checked against
``[publisher] telemetry_secret`` and turned into a Sample whose id is the
meter message's ``message_id``. The samples of a batch are written at once
and the batch is acknowledged only after the write committed. A store
that fails for now requeues the batch after a backoff, and stores keep one
sample per id, so nothing is lost and nothing is stored twice. A meter
message that is not a sample (bad signature, missing field, bad value) is
logged with its message id and reason, counted and dropped alone; a
notification the store refuses, or with a sample over ``[sample_limits]``,
is dead-lettered alone (see ``delivery``). The listener is ``messaging``'s.
"""

import collections
import logging
import math
import threading
import types

from calipso_agent import delivery, envelope, messaging, metrics, storage
from calipso_agent import sample as sample_mod
from calipso_agent.publisher import utils
from calipso_agent.storage import base as storage_base

LOG = logging.getLogger(__name__)

PRIORITY = 'sample'
REQUIRED_FIELDS = ('counter_name', 'counter_type', 'counter_volume',
                   'resource_id', 'timestamp', 'message_id')


class MeterMessageError(ValueError):
    """A meter message that can never be stored; the text is the reason."""


def _volume(value):
    if isinstance(value, bool):
        raise MeterMessageError(f'counter_volume {value!r} is not a '
                                  'number')
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise MeterMessageError(f'counter_volume {value!r} is not a '
                                      'number')
    if not isinstance(value, (int, float)):
        raise MeterMessageError(f'counter_volume {value!r} is not a '
                                  'number')
    value = float(value)
    if not math.isfinite(value):
        raise MeterMessageError(f'counter_volume {value!r} is not finite')
    return value


def sample_from_meter_message(message, recorded_at=None):
    """The Sample of a Ceilometer meter message, or MeterMessageError.

    The meter message's ``message_id`` is the sample id (Ceilometer's
    convention), so a redelivered message maps to the same stored sample.
    """
    if not isinstance(message, dict):
        raise MeterMessageError(
            f'meter message is a {type(message).__name__}, not an object')
    missing = [f for f in REQUIRED_FIELDS if message.get(f) is None]
    if missing:
        raise MeterMessageError(f'missing {", ".join(missing)}')
    metadata = message.get('resource_metadata')
    sample = sample_mod.Sample(
        name=message['counter_name'],
        type=message['counter_type'],
        unit=message.get('counter_unit'),
        volume=_volume(message['counter_volume']),
        user_id=message.get('user_id'),
        project_id=message.get('project_id'),
        resource_id=message['resource_id'],
        timestamp=message['timestamp'],
        resource_metadata=metadata if metadata is not None else {},
        source=message.get('source') or 'openstack',
        message_id=message['message_id'],
        id=message['message_id'],
        recorded_at=(message.get('recorded_at') or recorded_at
                     or sample_mod.utcnow_iso()))
    reason = storage_base.validate_sample(sample)
    if reason is not None:
        raise MeterMessageError(reason)
    sample.timestamp = sample_mod.normalize_timestamp(sample.timestamp)
    return sample


class SampleEndpoint(messaging.BatchEndpoint):
    """The oslo.messaging endpoint: one call per batch of notifications.

    ``dropped`` counts the meter messages (and notifications) dropped, by
    reason class; ``stored`` the samples the store accepted. What happens
    to each notification of a batch (stored, requeued, dead-lettered) is
    ``delivery``'s; ``origin`` is the (exchange, routing key) a dead
    letter is requeued to.
    """

    def __init__(self, store, secret, backoff=(0.5, 30.0), limits=None,
                 dead_letters=None, origin=('calipso', 'metering.sample'),
                 max_attempts=5, probe_interval=1.0):
        super().__init__(self._store_samples, self._probe, 'Store',
                         'storing', backoff, limits, dead_letters, origin,
                         max_attempts, probe_interval)
        self.store = store
        self.secret = secret
        self.dropped = collections.Counter()
        self.stored = 0
        self.already_stored = 0
        self._local = threading.local()

    def _probe(self):
        try:
            self.store.ping()
        except storage_base.StorageError:
            return False
        return True

    def _drop(self, kind, message_id, reason, notification_id):
        self.dropped[kind] += 1
        metrics.METER_MESSAGES_DROPPED.labels(kind).inc()
        LOG.error('Meter message %s (notification %s) dropped: %s '
                  '[%d %s so far]', message_id, notification_id, reason,
                  self.dropped[kind], kind)

    def samples_of(self, notification, recorded_at):
        """The valid samples of one notification; the others are logged
        and counted."""
        notification_id = envelope.message_id(notification)
        payload = notification.get('payload')
        if isinstance(payload, dict):
            payload = [payload]
        if not isinstance(payload, list):
            self.dropped['notification'] += 1
            metrics.METER_MESSAGES_DROPPED.labels('notification').inc()
            LOG.error('Notification %s dropped: payload is a %s, not a list '
                      'of meter messages [%d notification dropped so far]',
                      notification_id, type(payload).__name__,
                      self.dropped['notification'])
            return []
        samples = []
        for message in payload:
            message_id = (message.get('message_id')
                          if isinstance(message, dict) else None)
            if isinstance(message, dict) and not utils.verify_signature(
                    message, self.secret):
                self._drop('bad signature', message_id,
                           'message_signature does not match',
                           notification_id)
                continue
            try:
                samples.append(sample_from_meter_message(message,
                                                         recorded_at))
            except MeterMessageError as exc:
                self._drop('invalid', message_id, exc, notification_id)
        return samples

    def item_of(self, notification, recorded_at):
        """The delivery item of one notification: its samples within the
        limits, or the reason it is refused."""
        item = self.item(notification, PRIORITY, self.origin[1])
        samples = self.samples_of(notification, recorded_at)
        trimmed = []
        for sample in samples:
            reason = self.limits.check(sample)
            if reason is not None:
                item.refused = f'meter message {sample.id}: {reason}'
                return item
            dropped = self.limits.bound_metadata(sample)
            if dropped:
                trimmed.append(f'{sample.id}: {", ".join(dropped)}')
        if trimmed:
            LOG.warning('Notification %s: resource_metadata over '
                        '[sample_limits], fields dropped: %s', item.message_id,
                        '; '.join(trimmed[:5]) + (
                            f'; and {len(trimmed) - 5} more'
                            if len(trimmed) > 5 else ''))
        item.samples = samples
        return item

    def _store_samples(self, samples):
        result = metrics.record_samples(self.store, samples)
        self.stored += result.stored
        duplicates = delivery.redelivered(samples, result)
        self.already_stored += duplicates
        if result.rejected:
            raise storage_base.StorageDataError(
                f'{len(result.rejected)} of {len(samples)} samples rejected '
                f'by the store: {delivery.describe_rejected(result.rejected)}',
                refused=result.rejected)
        self._batch.stored += result.stored
        return duplicates

    @property
    def _batch(self):
        """This thread's batch counts."""
        batch = getattr(self._local, 'batch', None)
        if batch is None:
            batch = self._local.batch = types.SimpleNamespace(stored=0)
        return batch

    def sample(self, notifications):
        recorded_at = sample_mod.utcnow_iso()
        items = [self.item_of(n, recorded_at) for n in notifications]
        self._batch.stored = 0
        result = self.deliver(items)
        if result == messaging.RESULTS[delivery.HANDLED]:
            LOG.debug('Stored %d samples of %d notifications',
                      self._batch.stored, len(notifications))
        return result


def connect(conf, stopping, sleep=None):
    """The storage driver, retrying ``[database] max_retries`` times
    (forever when -1) every ``retry_interval`` seconds while the store
    is unreachable; None when ``stopping`` is set first."""
    wait = sleep or stopping.wait
    attempt = 0
    while not stopping.is_set():
        attempt += 1
        try:
            return storage.get_connection(conf)
        except storage_base.StorageError as exc:
            retries = conf.database.max_retries
            if 0 <= retries < attempt:
                raise
            LOG.warning('Database unreachable (%s); attempt %d, retrying '
                        'in %.1fs', exc, attempt,
                        conf.database.retry_interval)
            wait(conf.database.retry_interval)
    return None


class CollectorService(messaging.BatchListenerService):
    """One worker of the collector."""

    name = 'calipso-collector'
    group = 'collector'

    def __init__(self, worker_id, conf):
        super().__init__(worker_id, conf)
        self.store = None

    def prepare(self):
        self.store = connect(self.conf, self._stopping)
        return self.store is not None

    def make_endpoint(self):
        conf = self.conf
        return SampleEndpoint(
            self.store, conf.publisher.telemetry_secret,
            origin=(conf.control_exchange,
                    f'{conf.publisher_notifier.metering_topic}.{PRIORITY}'),
            **self.delivery_options())

    def targets(self):
        return messaging.metering_targets(self.conf)

    def log_listening(self):
        conf = self.conf
        LOG.info('Collector worker %d listening on topic %s.%s of exchange '
                 '%s, storing into %s', self.worker_id,
                 conf.publisher_notifier.metering_topic, PRIORITY,
                 conf.control_exchange,
                 storage.safe_url(storage.database_url(conf)))

    def close(self):
        if self.store is not None:
            self.store.close()
