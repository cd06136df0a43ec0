"""The message bus: transport, listener targets, and the batch listeners.

The notification agent (notifications to samples to publishers) and the
collector (meter messages to the store) consume the same way, and the
polling agent will too: one oslo.messaging batch notification listener
per worker, on the threading executor, requeueing allowed. What they
share is here:

* ``notification_transport``: oslo.messaging's transport, or the batched
  AMQP consumer (``amqp_consumer``) for rabbit://.
* ``BatchEndpoint``: the oslo.messaging endpoint base. Subclasses turn
  each notification of a batch into a ``delivery.Item``; the batch is
  acknowledged, requeued after a ``Backoff`` or its offenders
  dead-lettered as ``delivery`` decides.
* ``BatchListenerService``: the cotyledon worker base. Subclasses say
  which option group configures them, where they listen and what their
  endpoint is; it makes the dead-letter queue, the transport and the
  listener, and closes everything on terminate.
"""

import abc
import functools
import logging
import threading

import cotyledon
import oslo_messaging

from calipso_agent import (
    amqp_consumer,
    dead_letter,
    delivery,
    envelope,
    sample_limits,
)

LOG = logging.getLogger(__name__)

#: What the listener is told for each ``BatchDelivery.deliver`` result.
RESULTS = {delivery.HANDLED: oslo_messaging.NotificationResult.HANDLED,
           delivery.REQUEUE: oslo_messaging.NotificationResult.REQUEUE}


class Backoff:
    """Exponential wait between retries of a failing batch."""

    def __init__(self, initial, maximum):
        self.initial = initial
        self.maximum = maximum
        self.failures = 0

    def next_delay(self):
        delay = min(self.maximum, self.initial * (2 ** self.failures))
        self.failures += 1
        return delay

    def reset(self):
        self.failures = 0


def notification_transport(conf, dead_letters=None):
    """The transport notifications are consumed from: oslo.messaging's,
    or for rabbit:// with ``[notification] batched_amqp_consumer`` the
    batched consumer driver (which dead-letters to ``dead_letters`` what
    it cannot read)."""
    transport = oslo_messaging.get_notification_transport(conf)
    if not conf.notification.batched_amqp_consumer:
        return transport
    url = oslo_messaging.TransportURL.parse(
        conf, conf.oslo_messaging_notifications.transport_url
        or conf.transport_url)
    if url.transport != 'rabbit':
        return transport
    transport.cleanup()
    return amqp_consumer.notification_transport(
        conf, url, conf.notification.prefetch, dead_letters,
        conf.delivery.max_notification_bytes)


def notification_targets(conf):
    """Where the notification agent listens: every ``[notification]
    topics`` on every ``exchanges``."""
    return [oslo_messaging.Target(topic=topic, exchange=exchange)
            for exchange in conf.notification.exchanges
            for topic in conf.notification.topics]


def metering_targets(conf):
    """Where notifier:// sends: the metering topic on the transport's
    control exchange (the Target's default)."""
    return [oslo_messaging.Target(
        topic=conf.publisher_notifier.metering_topic)]


class BatchEndpoint:
    """An oslo.messaging batch endpoint handing its samples to a receiver.

    ``publish(samples)`` hands samples over, ``apply_changes(changes)``
    inventory changes (when the endpoints make any); ``probe()`` says
    whether the receiver answers again during an outage (``what``,
    ``done``: the words of ``delivery.Outage``'s log lines). ``origin``
    is the (exchange, routing key or topic) a dead letter is requeued
    to.
    """

    def __init__(self, publish, probe, what, done, backoff=(0.5, 30.0),
                 limits=None, dead_letters=None, origin=None,
                 max_attempts=5, probe_interval=1.0, apply_changes=None):
        self.limits = limits or sample_limits.SampleLimits()
        self.dead_letters = dead_letters or dead_letter.DroppingDeadLetters()
        self.origin = origin
        self._stopping = threading.Event()
        self.outage = delivery.Outage(what, done, probe, probe_interval,
                                      self._stopping)
        self.delivery = delivery.BatchDelivery(
            publish, self.outage, lambda: Backoff(*backoff), max_attempts,
            apply_changes)

    def stop(self):
        """Cut short the waits of a requeue (the worker is stopping)."""
        self._stopping.set()

    def item(self, notification, priority, routing_key):
        """An empty ``delivery.Item`` of ``notification`` that is
        dead-lettered as sent with ``priority`` to ``routing_key`` on the
        origin's exchange."""
        return delivery.Item(envelope.message_id(notification),
                             notification.get('event_type'), [],
                             functools.partial(self._dead_letter,
                                               notification, priority,
                                               routing_key))

    def _dead_letter(self, notification, priority, routing_key, reason,
                     attempts):
        dead_letter.publish_notification(
            self.dead_letters, notification, priority, reason,
            self.origin[0], routing_key, attempts)

    def deliver(self, items):
        """The listener's answer for a batch of items."""
        return RESULTS[self.delivery.deliver(items)]


class BatchListenerService(cotyledon.Service, abc.ABC):
    """One worker consuming notifications in batches.

    A subclass names its option ``group`` (``batch_size``,
    ``batch_timeout``, ``dead_letter_queue``, ``requeue_backoff_initial``
    and ``requeue_backoff_max``) and implements ``prepare`` (open what
    the endpoint needs; False: the worker stopped first), ``make_endpoint``,
    ``targets``, ``log_listening`` and ``close``.
    """

    group = None

    def __init__(self, worker_id, conf):
        super().__init__(worker_id)
        self.conf = conf
        self.listener = None
        self.endpoint = None
        self.dead_letters = None
        self._stopping = threading.Event()

    @property
    def options(self):
        return self.conf[self.group]

    def delivery_options(self):
        """The keyword arguments of ``BatchEndpoint`` every service sets
        from the configuration."""
        conf = self.conf
        return dict(
            backoff=(self.options.requeue_backoff_initial,
                     self.options.requeue_backoff_max),
            limits=sample_limits.SampleLimits.from_conf(conf),
            dead_letters=self.dead_letters,
            max_attempts=conf.delivery.max_delivery_attempts,
            probe_interval=conf.delivery.outage_probe_interval)

    def prepare(self):
        return True

    @abc.abstractmethod
    def make_endpoint(self):
        """The oslo.messaging endpoint of this worker's batches."""

    @abc.abstractmethod
    def targets(self):
        """The oslo.messaging targets this worker listens on."""

    def pool(self):
        """The listener pool (a queue shared by the workers of another
        consumer group), or None."""
        return None

    def log_listening(self):
        """Log once where this worker listens."""

    def close(self):
        """Close what ``prepare`` opened."""

    def run(self):
        if not self.prepare():
            return
        conf = self.conf
        self.dead_letters = dead_letter.from_conf(
            conf, self.options.dead_letter_queue)
        self.endpoint = self.make_endpoint()
        transport = notification_transport(conf, self.dead_letters)
        self.listener = oslo_messaging.get_batch_notification_listener(
            transport, self.targets(), [self.endpoint],
            executor='threading', allow_requeue=True, pool=self.pool(),
            batch_size=self.options.batch_size,
            batch_timeout=self.options.batch_timeout)
        self.listener.start()
        self.log_listening()

    def terminate(self):
        self._stopping.set()
        if self.endpoint is not None:
            self.endpoint.stop()
        if self.listener is not None:
            self.listener.stop()
            self.listener.wait()
        self.close()
        if self.dead_letters is not None:
            self.dead_letters.close()
        super().terminate()
