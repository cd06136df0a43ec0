"""The collector: samples that notifier:// put on the bus, into the store.

One oslo.messaging batch notification listener per worker consumes the
``sample`` priority of ``[publisher_notifier] metering_topic`` on the
transport's control exchange (where notifier:// sends). Each notification
carries a list of Ceilometer meter messages; every one is checked against
``[publisher] telemetry_secret`` and turned into a Sample whose id is the
meter message's ``message_id``. The samples of a batch are written at once
and the batch is acknowledged only after the write committed. A store
failure requeues the batch after a backoff, and stores keep one sample per
id, so nothing is lost and nothing is stored twice. A meter message that
can never be stored (bad signature, missing field, bad value) is logged
with its message id and reason, counted and dropped alone.
"""

import collections
import logging
import math
import threading

import cotyledon
import oslo_messaging

from calipso_agent import sample as sample_mod
from calipso_agent import storage
from calipso_agent.notification import manager
from calipso_agent.publisher import database, utils
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


class SampleEndpoint:
    """The oslo.messaging endpoint: one call per batch of notifications.

    ``dropped`` counts the meter messages (and notifications) dropped, by
    reason class; ``stored`` the samples the store accepted.
    """

    def __init__(self, store, secret, backoff):
        self.store = store
        self.secret = secret
        self.backoff = backoff
        self._stopping = threading.Event()
        self.dropped = collections.Counter()
        self.stored = 0
        self.rejected = 0

    def stop(self):
        self._stopping.set()

    def _drop(self, kind, message_id, reason, notification_id):
        self.dropped[kind] += 1
        LOG.error('Meter message %s (notification %s) dropped: %s '
                  '[%d %s so far]', message_id, notification_id, reason,
                  self.dropped[kind], kind)

    def samples_of(self, notification, recorded_at):
        """The valid samples of one notification; the others are logged
        and counted."""
        notification_id = (notification.get('metadata') or {}).get(
            'message_id')
        payload = notification.get('payload')
        if isinstance(payload, dict):
            payload = [payload]
        if not isinstance(payload, list):
            self.dropped['notification'] += 1
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

    def sample(self, notifications):
        recorded_at = sample_mod.utcnow_iso()
        samples = []
        for notification in notifications:
            samples.extend(self.samples_of(notification, recorded_at))
        if not samples:
            return oslo_messaging.NotificationResult.HANDLED
        error = None
        try:
            result = self.store.record_samples(samples)
        except Exception as exc:
            error = exc
        if error is not None:
            # Logged outside the except block: oslo.log would repeat the
            # exception text after the message.
            delay = self.backoff.next_delay()
            expected = isinstance(error, storage_base.StorageError)
            LOG.error('Storing %d samples of %d notifications failed '
                      '(%s: %s); requeueing them in %.1fs', len(samples),
                      len(notifications), type(error).__name__,
                      ' '.join(str(error).split()), delay,
                      exc_info=None if expected else error)
            self._stopping.wait(delay)
            return oslo_messaging.NotificationResult.REQUEUE
        self.backoff.reset()
        self.stored += result.stored
        if result.rejected:
            self.rejected += len(result.rejected)
            LOG.error('%d of %d samples rejected by the store: %s '
                      '[%d rejected so far]', len(result.rejected),
                      len(samples), database.describe_rejected(
                          result.rejected), self.rejected)
        LOG.debug('Stored %d samples of %d notifications', result.stored,
                  len(notifications))
        return oslo_messaging.NotificationResult.HANDLED


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


def listener_targets(conf):
    """Where notifier:// sends: the metering topic on the transport's
    control exchange (the Target's default)."""
    return [oslo_messaging.Target(
        topic=conf.publisher_notifier.metering_topic)]


class CollectorService(cotyledon.Service):
    """One worker of the collector."""

    name = 'calipso-collector'

    def __init__(self, worker_id, conf):
        super().__init__(worker_id)
        self.conf = conf
        self.listener = None
        self.endpoint = None
        self.store = None
        self._stopping = threading.Event()

    def run(self):
        conf = self.conf
        self.store = connect(conf, self._stopping)
        if self.store is None:
            return
        self.endpoint = SampleEndpoint(
            self.store, conf.publisher.telemetry_secret,
            manager.Backoff(conf.collector.requeue_backoff_initial,
                            conf.collector.requeue_backoff_max))
        transport = manager.notification_transport(conf)
        self.listener = oslo_messaging.get_batch_notification_listener(
            transport, listener_targets(conf), [self.endpoint],
            executor='threading', allow_requeue=True,
            batch_size=conf.collector.batch_size,
            batch_timeout=conf.collector.batch_timeout)
        self.listener.start()
        LOG.info('Collector worker %d listening on topic %s.%s of exchange '
                 '%s, storing into %s', self.worker_id,
                 conf.publisher_notifier.metering_topic, PRIORITY,
                 conf.control_exchange,
                 storage.safe_url(storage.database_url(conf)))

    def terminate(self):
        self._stopping.set()
        if self.endpoint is not None:
            self.endpoint.stop()
        if self.listener is not None:
            self.listener.stop()
            self.listener.wait()
        if self.store is not None:
            self.store.close()
        super().terminate()

