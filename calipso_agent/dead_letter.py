"""Dead letters: notifications that can never succeed, kept on the broker.

A notification is dead-lettered when it can never be processed as it is:
undecodable or over ``[delivery] max_notification_bytes`` (seen by the
batched AMQP consumer), a sample over the limits of ``[sample_limits]``,
refused by the store, or failing alone ``max_delivery_attempts`` times.

Why the agent publishes the dead letter itself rather than letting
RabbitMQ dead-letter a rejected message: RabbitMQ's own dead-lettering
needs ``x-dead-letter-exchange`` among the arguments of the consumed
queue, and the notification queues already exist, declared by
oslo.messaging or by the services' notifiers without it. Declaring them
again with other arguments fails (PRECONDITION_FAILED) and a queue cannot
be altered, only deleted with its messages; a policy would work but is
the broker operator's to set. Publishing to our own exchange needs
nothing of existing deployments: the copy is published with publisher
confirms and persistent delivery, and only once the broker has confirmed
it is the original acknowledged, so nothing is lost in between (at worst
a crash there leaves a duplicate dead letter).

The dead letters go to the direct exchange ``[delivery]
dead_letter_exchange`` (``calipso.dead``), routed to a durable queue per
kind of consumer (``[notification] dead_letter_queue``,
``notifications.dead``; ``[collector] dead_letter_queue``,
``samples.dead``). Each carries its reason and origin in headers
(``HEADERS``); ``calipso-dead-letters`` lists, shows and requeues them.
The body is the message as it came when the consumer still had it (the
batched consumer's undecodable and oversize messages), otherwise the
notification re-encoded as an oslo.messaging 2.0 envelope.
"""

import datetime
import json
import logging
import socket
import threading

import kombu
import orjson
import oslo_messaging
from oslo_messaging import opts as messaging_opts

from calipso_agent import amqp_consumer, delivery, envelope

LOG = logging.getLogger(__name__)

REASON = 'x-calipso-reason'
MESSAGE_ID = 'x-calipso-message-id'
EVENT_TYPE = 'x-calipso-event-type'
ORIGINAL_EXCHANGE = 'x-calipso-original-exchange'
ORIGINAL_ROUTING_KEY = 'x-calipso-original-routing-key'
DEAD_LETTERED_AT = 'x-calipso-dead-lettered-at'
DEAD_LETTERED_BY = 'x-calipso-dead-lettered-by'
ATTEMPTS = 'x-calipso-attempts'
REQUEUED = 'x-calipso-requeued'
#: Headers a dead letter carries (REQUEUED: on a message put back).
HEADERS = (REASON, MESSAGE_ID, EVENT_TYPE, ORIGINAL_EXCHANGE,
           ORIGINAL_ROUTING_KEY, DEAD_LETTERED_AT, DEAD_LETTERED_BY,
           ATTEMPTS)
# Longest reason put in a header.
REASON_LENGTH = 1000


class DeadLetterError(Exception):
    """The dead letter could not be published: keep the original."""


def publish_notification(dead_letters, notification, priority, reason,
                         exchange, routing_key, attempts=None):
    """Dead-letter a notification dict as the dispatcher hands it over:
    the body as it came when the batched consumer still holds it, else
    re-encoded (``oslo_envelope``); ``exchange`` and ``routing_key`` are
    where it is requeued to when the consumer does not know better."""
    message_id = envelope.message_id(notification)
    delivered = (amqp_consumer.in_flight(message_id)
                 if isinstance(message_id, str) else None)
    encoding = 'utf-8'
    if delivered is not None:
        body, content_type = delivered.body, delivered.content_type
        encoding = delivered.content_encoding
        exchange = delivered.exchange or exchange
        routing_key = delivered.routing_key or routing_key
    else:
        body, content_type = oslo_envelope(notification, priority), None
    dead_letters.publish(
        body, reason, message_id=delivery.text_of(message_id),
        event_type=delivery.text_of(notification.get('event_type')),
        exchange=exchange,
        routing_key=routing_key, attempts=attempts,
        content_type=content_type or 'application/json',
        content_encoding=encoding)


def oslo_envelope(notification, priority):
    """The oslo.messaging 2.0 body of a notification dict as the
    dispatcher hands it over (so that requeueing it works as sending).
    A payload no encoder can write (nested past the interpreter's
    stack) is replaced by a text saying so: only the oslo.messaging
    driver path gets here with one, the batched consumer keeps bodies."""
    message = {'message_id': envelope.message_id(notification),
               'timestamp': envelope.timestamp(notification),
               'event_type': notification.get('event_type'),
               'publisher_id': notification.get('publisher_id'),
               'priority': str(priority).upper(),
               'payload': notification.get('payload')}
    envelope.add_context(message, notification.get('ctxt'))
    try:
        inner = _json_text(message)
    except (TypeError, ValueError, RecursionError) as exc:
        message['payload'] = f'<payload not encodable: {exc}>'
        inner = _json_text(message)
    return orjson.dumps({'oslo.version': '2.0', 'oslo.message': inner})


def _json_text(value):
    try:
        return orjson.dumps(value, default=str,
                            option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, default=str)


def broker_urls(conf):
    """kombu URLs of the notification transport when it is rabbit://,
    else None."""
    for group, options in messaging_opts.list_opts():
        conf.register_opts(options, group=group)
    url = oslo_messaging.TransportURL.parse(
        conf, conf.oslo_messaging_notifications.transport_url
        or conf.transport_url)
    if url.transport != 'rabbit':
        return None
    return amqp_consumer.kombu_urls(url)


class DeadLetterQueue:
    """Publishes dead letters to one queue; thread-safe, one connection
    of its own (made on first use, remade after a failure)."""

    def __init__(self, urls, exchange, queue):
        self.urls = urls
        self.exchange = exchange
        self.queue = queue
        self._connection = None
        self._producer = None
        self._lock = threading.Lock()
        self.origin = f'{socket.gethostname()}'

    def _connect(self):
        connection = kombu.Connection(
            ';'.join(self.urls), connect_timeout=10,
            transport_options={'confirm_publish': True, 'client_properties': {
                'connection_name': f'calipso dead letters {self.origin}'}})
        channel = connection.channel()
        exchange = kombu.Exchange(self.exchange, 'direct', durable=True)
        kombu.Queue(self.queue, exchange, routing_key=self.queue,
                    durable=True)(channel).declare()
        self._connection = connection
        self._producer = kombu.Producer(channel, exchange=exchange)

    def publish(self, body, reason, message_id=None, event_type=None,
                exchange=None, routing_key=None, attempts=None,
                content_type='application/json', content_encoding='utf-8',
                headers=None):
        """Publish one dead letter (``body``: bytes, with the content type
        and encoding it came with) and wait for the broker's confirm;
        DeadLetterError when it could not."""
        values = dict(headers or {})
        values.update({
            REASON: ' '.join(str(reason).split())[:REASON_LENGTH],
            MESSAGE_ID: message_id, EVENT_TYPE: event_type,
            ORIGINAL_EXCHANGE: exchange, ORIGINAL_ROUTING_KEY: routing_key,
            DEAD_LETTERED_AT: datetime.datetime.now(
                datetime.UTC).isoformat(timespec='seconds'),
            DEAD_LETTERED_BY: self.origin, ATTEMPTS: attempts})
        values = {k: v for k, v in values.items() if v is not None}
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._connection is None:
                        self._connect()
                    self._producer.publish(
                        body, routing_key=self.queue, headers=values,
                        content_type=content_type,
                        content_encoding=content_encoding or 'binary',
                        serializer=None, delivery_mode=2, retry=False)
                    return
                except Exception as exc:
                    self._close()
                    if attempt == 2:
                        raise DeadLetterError(
                            f'cannot publish to {self.exchange}/'
                            f'{self.queue}: {type(exc).__name__}: {exc}'
                        ) from exc

    def _close(self):
        connection, self._connection, self._producer = (
            self._connection, None, None)
        if connection is not None:
            try:
                connection.release()
            except Exception:
                LOG.debug('Error closing the dead-letter connection',
                          exc_info=True)

    def close(self):
        with self._lock:
            self._close()


class DroppingDeadLetters:
    """Where the transport is not RabbitMQ: a dead letter is logged (by
    the caller) and dropped."""

    queue = None

    def publish(self, body, reason, **kwargs):
        LOG.warning('No broker to dead-letter to: notification %s dropped',
                    kwargs.get('message_id'))

    def close(self):
        """Nothing to close."""


def from_conf(conf, queue):
    urls = broker_urls(conf)
    if urls is None:
        return DroppingDeadLetters()
    return DeadLetterQueue(urls, conf.delivery.dead_letter_exchange, queue)
