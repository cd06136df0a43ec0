"""A batched AMQP notification consumer behind oslo.messaging's listener.

oslo.messaging's rabbit driver spends most of a notification agent's time
receiving: one ``ensure``-wrapped ``consume`` call, two JSON decodes, a
context deep copy and one ``basic.ack`` frame per message. This driver
implements the same listener contract (``listen_for_notifications``, a
poll-style listener, incoming messages that are acknowledged or requeued)
for ``rabbit://`` transport URLs, so oslo.messaging's batch notification
listener, dispatcher and executor run unchanged on top of it, but it

* drains deliveries until the batch is full, decoding each body once with
  orjson;
* settles in delivery order with one ``basic.ack(multiple=True)`` per run
  of acknowledged messages (requeues are ``basic.reject(requeue=True)``),
  always from the polling thread, which owns the channel;
* binds the same queues as oslo.messaging (``<topic>.<priority>`` or the
  pool name, on each target's topic exchange) and reuses an existing queue
  as it was declared, so it consumes alongside oslo's own driver.

It only consumes: sending stays with oslo.messaging's drivers. Connection
loss is retried with backoff; deliveries not yet settled are redelivered by
the broker, and their late settlements are ignored.

**Private oslo.messaging API: this module only.** A driver is written
against ``oslo_messaging._drivers.base`` (``BaseDriver``,
``PollStyleListener``, ``PollStyleListenerAdapter``, ``IncomingMessage``)
and handed to ``oslo_messaging.transport.NotificationTransport``, which
is not exported either: oslo.messaging has no public way to plug in a
driver other than its ``oslo.messaging.drivers`` entry points, and those
take every transport URL of that scheme (sending included). Nothing else
in calipso imports oslo.messaging's private modules (a unit test checks).
What an oslo.messaging upgrade can break here: the signature of
``listen_for_notifications`` (targets and priorities, pool, batch size,
batch timeout), the adapter's ``_poll_style_listener`` and batching
contract, the ``IncomingMessage`` constructor (ctxt, message, msg_id) and
its ``acknowledge``/``requeue`` methods, and ``NotificationTransport``
taking a driver. ``tests/unit/test_amqp_consumer.py`` and the functional
agent tests exercise each of them; ``[notification]
batched_amqp_consumer = false`` falls back to oslo's own driver.
"""

import collections
import logging
import os
import re
import socket
import threading
import time
import urllib.parse

import kombu
import orjson
from oslo_messaging import transport as transport_mod
from oslo_messaging._drivers import base as driver_base

from calipso_agent import envelope as envelope_mod
from calipso_agent import metrics

LOG = logging.getLogger(__name__)

# Longest wait for deliveries while acknowledgements may be due.
SETTLE_INTERVAL = 0.01


# Deliveries decoded and not yet settled, by message id: what a dead letter
# of one of them carries (the delivery as it came). Written by the polling
# thread, read by the executor's; single dict operations need no lock.
_in_flight = {}


class Delivered:
    """A delivery as it came: body, exchange, routing key, content type
    and encoding."""

    __slots__ = ('body', 'exchange', 'routing_key', 'content_type',
                 'content_encoding')

    def __init__(self, raw):
        info = raw.delivery_info
        self.body = raw.body
        self.exchange = info.get('exchange')
        self.routing_key = info.get('routing_key')
        self.content_type = raw.content_type
        self.content_encoding = raw.content_encoding


def in_flight(message_id):
    """The Delivered of a notification this process consumed and has not
    settled yet, or None (another driver, or settled)."""
    raw = _in_flight.get(message_id)
    return None if raw is None else Delivered(raw)


class ConsumerOnlyError(RuntimeError):
    """The batched consumer driver does not send messages."""


def kombu_urls(url):
    """kombu connection URLs, one per host, of an oslo TransportURL."""
    vhost = urllib.parse.quote(url.virtual_host or '', safe='')
    urls = []
    for host in url.hosts or [None]:
        hostname = (host.hostname if host else None) or '127.0.0.1'
        if ':' in hostname and not hostname.startswith('['):
            hostname = f'[{hostname}]'
        port = (host.port if host else None) or 5672
        user = urllib.parse.quote((host.username if host else None)
                                  or 'guest', safe='')
        password = urllib.parse.quote((host.password if host else None)
                                      or 'guest', safe='')
        urls.append(f'amqp://{user}:{password}@{hostname}:{port}/{vhost}')
    return urls


def queue_arguments(rabbit_conf):
    """Queue arguments as oslo.messaging declares notification queues."""
    args = {}
    if rabbit_conf.rabbit_ha_queues:
        args['x-ha-policy'] = 'all'
    if rabbit_conf.rabbit_quorum_queue:
        args['x-queue-type'] = 'quorum'
        limits = (('x-delivery-limit', 'rabbit_quorum_delivery_limit'),
                  ('x-max-in-memory-length',
                   'rabbit_quorum_max_memory_length'),
                  ('x-max-in-memory-bytes',
                   'rabbit_quorum_max_memory_bytes'))
        for argument, option in limits:
            value = getattr(rabbit_conf, option, 0)
            if value:
                args[argument] = value
    return args


class Binding:
    """One queue bound to one exchange with one routing key."""

    __slots__ = ('exchange', 'routing_key', 'queue')

    def __init__(self, exchange, routing_key, queue):
        self.exchange = exchange
        self.routing_key = routing_key
        self.queue = queue


class AmqpNotification(driver_base.IncomingMessage):
    """A delivered notification; settled by the consumer's polling thread."""

    __slots__ = ('_consumer', '_generation', '_tag')

    def __init__(self, consumer, generation, tag, ctxt, message):
        super().__init__(ctxt, message, msg_id=message.get('message_id'))
        self._consumer = consumer
        self._generation = generation
        self._tag = tag

    def acknowledge(self):
        self._consumer.settle(self._generation, self._tag, True)

    def requeue(self):
        self._consumer.settle(self._generation, self._tag, False)


def decode(body):
    """(ctxt, message) of an oslo.messaging notification body, or raise
    ValueError."""
    envelope = orjson.loads(body)
    if isinstance(envelope, dict) and 'oslo.message' in envelope:
        envelope = orjson.loads(envelope['oslo.message'])
    if not isinstance(envelope, dict):
        raise ValueError('the message is not a JSON object')
    ctxt, message = envelope_mod.split_context(envelope)
    if not isinstance(message.get('event_type'), str):
        raise ValueError('the message has no event_type')
    if not isinstance(message.get('priority', ''), str):
        raise ValueError(f'priority {message["priority"]!r} is not a string')
    return ctxt, message


# A message_id in JSON text, or in JSON text quoted inside JSON (the
# oslo.message string), ids as services make them (uuids, digests).
_MESSAGE_ID = re.compile(
    r'\\*"message_id\\*"\s*:\s*\\*"([\w.:@/+=-]{1,255})\\*"')


def message_id_of(body):
    """The message_id of a body that failed to decode, if it can be seen:
    from the envelope when it decodes, else from the text around it."""
    envelope = None
    try:
        envelope = orjson.loads(body)
        if isinstance(envelope, dict) and 'oslo.message' in envelope:
            inner = envelope['oslo.message']
            envelope = inner
            envelope = orjson.loads(inner)
    except Exception:
        pass
    if isinstance(envelope, dict):
        message_id = envelope.get('message_id')
        if isinstance(message_id, str) and message_id:
            return message_id
    if isinstance(envelope, str):
        text = envelope
    elif isinstance(body, (bytes, bytearray)):
        text = body[:1 << 20].decode('utf-8', 'replace')
    else:
        text = str(body or '')[:1 << 20]
    match = _MESSAGE_ID.search(text)
    return match.group(1) if match else None


class BatchedNotificationConsumer(driver_base.PollStyleListener):
    """Polls batches of notifications from a set of bindings."""

    def __init__(self, urls, bindings, rabbit_conf, prefetch,
                 dead_letters=None, max_bytes=None):
        super().__init__(prefetch)
        #: Where undecodable and oversize messages go (None: dropped).
        self.dead_letters = dead_letters
        self.max_bytes = max_bytes
        self._urls = urls
        self._bindings = bindings
        self._rabbit = rabbit_conf
        self._prefetch = prefetch
        self._connection = None
        self._channel = None
        self._generation = 0
        self._received = []
        self._unsettled = collections.deque()
        self._settlements = {}
        self._settled = collections.deque()
        self._message_ids = {}
        self._stopped = threading.Event()
        self._retry_delay = None
        self.undecodable = 0
        #: How the broker's management tools name this consumer.
        self.connection_name = (f'calipso notification consumer '
                                f'{socket.gethostname()}:{os.getpid()}')

    # --- called from the executor threads -------------------------------
    def settle(self, generation, tag, ack):
        self._settled.append((generation, tag, ack))

    # --- the polling thread ----------------------------------------------
    def _connect(self):
        rabbit = self._rabbit
        ssl = None
        if rabbit.ssl:
            ssl = {k: v for k, v in (('ca_certs', rabbit.ssl_ca_file),
                                     ('certfile', rabbit.ssl_cert_file),
                                     ('keyfile', rabbit.ssl_key_file))
                   if v} or True
        connection = kombu.Connection(
            ';'.join(self._urls), ssl=ssl,
            heartbeat=rabbit.heartbeat_timeout_threshold,
            failover_strategy=rabbit.kombu_failover_strategy,
            connect_timeout=rabbit.rabbit_retry_interval + 5,
            transport_options={'client_properties': {
                'connection_name': self.connection_name}})
        # Deliveries may arrive while basic.consume waits for its answer:
        # they belong to the new connection already.
        self._generation += 1
        try:
            connection.connect()
            self._declare(connection, connection.channel())
            channel = connection.channel()
            channel.basic_qos(0, self._prefetch, False)
            for queue in sorted({b.queue for b in self._bindings}):
                channel.basic_consume(queue, callback=self._on_delivery)
        except Exception:
            connection.release()
            raise
        self._connection = connection
        self._channel = channel
        self._retry_delay = None
        LOG.info('Consuming notifications from %s on %s',
                 ', '.join(sorted({b.queue for b in self._bindings})),
                 connection.as_uri())

    def _wait_before_retry(self):
        rabbit = self._rabbit
        if self._retry_delay is None:
            self._retry_delay = rabbit.rabbit_retry_interval
        else:
            self._retry_delay = min(
                rabbit.rabbit_interval_max,
                self._retry_delay + rabbit.rabbit_retry_backoff)
        self._stopped.wait(self._retry_delay)

    def _declare(self, connection, channel):
        arguments = queue_arguments(self._rabbit)
        durable = self._rabbit.amqp_durable_queues
        auto_delete = self._rabbit.amqp_auto_delete
        for exchange in {b.exchange for b in self._bindings}:
            channel.exchange_declare(exchange, 'topic', durable=durable,
                                     auto_delete=auto_delete)
        for queue in {b.queue for b in self._bindings}:
            try:
                channel.queue_declare(queue, passive=True)
            except connection.channel_errors:
                channel = connection.channel()
                channel.queue_declare(queue, durable=durable,
                                      auto_delete=auto_delete,
                                      arguments=arguments)
        for binding in self._bindings:
            channel.queue_bind(binding.queue, binding.exchange,
                               binding.routing_key)
        channel.close()

    def _disconnect(self):
        connection, self._connection, self._channel = (
            self._connection, None, None)
        self._unsettled.clear()
        self._settlements.clear()
        self._received.clear()
        self._forget(list(self._message_ids))
        if connection is not None:
            try:
                connection.release()
            except Exception:
                LOG.debug('Error closing the AMQP connection', exc_info=True)

    def _on_delivery(self, raw):
        tag = raw.delivery_tag
        self._unsettled.append(tag)
        body = raw.body
        size = len(body or b'')
        if self.max_bytes and size > self.max_bytes:
            self._set_aside(raw, f'{size} bytes, more than the '
                                 f'{self.max_bytes} accepted',
                            metrics.TOO_LARGE)
            return
        try:
            ctxt, message = decode(body)
        except (ValueError, TypeError, RecursionError) as exc:
            self.undecodable += 1
            self._set_aside(raw, f'undecodable: {" ".join(str(exc).split())}'
                                 [:300], metrics.UNDECODABLE)
            return
        message_id = message.get('message_id')
        if type(message_id) is str:
            self._message_ids[tag] = message_id
            _in_flight[message_id] = raw
        self._received.append(
            AmqpNotification(self, self._generation, tag, ctxt, message))

    def _forget(self, tags):
        pop = self._message_ids.pop
        for tag in tags:
            message_id = pop(tag, None)
            if message_id is not None:
                _in_flight.pop(message_id, None)

    def _set_aside(self, raw, reason, kind):
        """Dead-letter a message the agent can never read, as it came,
        then settle it: acknowledged once the dead letter is confirmed,
        requeued if it could not be published."""
        info = raw.delivery_info
        message_id = message_id_of(raw.body)
        where = (f'delivery {raw.delivery_tag}, routing key '
                 f'{info.get("routing_key")}, {len(raw.body or b"")} bytes')
        if self.dead_letters is None:
            LOG.error('Notification %s dropped (%s): %s', message_id, where,
                      reason)
            self._settlements[raw.delivery_tag] = True
            metrics.unread(kind, True)
            return
        try:
            self.dead_letters.publish(
                raw.body, reason, message_id=message_id,
                exchange=info.get('exchange'),
                routing_key=info.get('routing_key'),
                content_type=raw.content_type or 'application/json',
                content_encoding=raw.content_encoding)
        except Exception as exc:
            LOG.error('Notification %s (%s) %s, and could not be '
                      'dead-lettered (%s): requeued', message_id, where,
                      reason, ' '.join(str(exc).split()))
            self._settlements[raw.delivery_tag] = False
            metrics.unread(kind, False)
            return
        LOG.error('Notification %s dead-lettered (%s): %s', message_id,
                  where, reason)
        self._settlements[raw.delivery_tag] = True
        metrics.unread(kind, True)

    def _flush_settlements(self):
        settled = self._settled
        generation = self._generation
        settlements = self._settlements
        while settled:
            gen, tag, ack = settled.popleft()
            if gen == generation:
                settlements[tag] = ack
        unsettled = self._unsettled
        last_ack = None
        channel = self._channel
        if self._message_ids:
            self._forget(settlements)
        while unsettled and unsettled[0] in settlements:
            tag = unsettled.popleft()
            if settlements.pop(tag):
                last_ack = tag
                continue
            if last_ack is not None:
                channel.basic_ack(last_ack, multiple=True)
                last_ack = None
            channel.basic_reject(tag, requeue=True)
        if last_ack is not None:
            channel.basic_ack(last_ack, multiple=True)

    def _drain(self, timeout):
        connection = self._connection
        try:
            connection.drain_events(timeout=timeout)
        except TimeoutError:
            pass
        connection.heartbeat_check()

    def poll(self, timeout=None, batch_size=1, batch_timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        batch_deadline = None
        while not self._stopped.is_set():
            try:
                if self._connection is None:
                    self._connect()
                    continue
                self._flush_settlements()
                if len(self._received) >= batch_size:
                    break
                now = time.monotonic()
                if self._received and batch_deadline is None:
                    batch_deadline = now + (batch_timeout or 0)
                limits = [d for d in (deadline, batch_deadline) if d]
                if limits and now >= min(limits):
                    break
                # Settlements from the executor are sent from this thread:
                # while some are due, wake up often to send them.
                idle = SETTLE_INTERVAL if self._unsettled else 1.0
                wait = min([idle] + [d - now for d in limits])
                self._drain(max(wait, 0.001))
            except Exception as exc:
                if self._stopped.is_set():
                    break
                LOG.error('AMQP connection to %s failed (%s: %s); '
                          'unsettled deliveries will be redelivered; '
                          'reconnecting', self._safe_urls(),
                          type(exc).__name__, exc)
                self._disconnect()
                self._wait_before_retry()
        batch = self._received[:batch_size]
        del self._received[:batch_size]
        return batch

    def _safe_urls(self):
        return ', '.join(urllib.parse.urlsplit(u)._replace(
            netloc=u.split('@', 1)[-1].split('/', 1)[0]).geturl()
            for u in self._urls)

    def stop(self):
        self._stopped.set()

    def cleanup(self):
        if self._connection is not None:
            try:
                self._flush_settlements()
            except Exception:
                LOG.debug('Could not settle before closing', exc_info=True)
        self._disconnect()


class BatchedNotificationDriver(driver_base.BaseDriver):
    """oslo.messaging driver that consumes notifications from RabbitMQ."""

    def __init__(self, conf, url, default_exchange, prefetch,
                 dead_letters=None, max_bytes=None):
        super().__init__(conf, url, default_exchange)
        self._rabbit = conf.oslo_messaging_rabbit
        self._prefetch = prefetch
        self._dead_letters = dead_letters
        self._max_bytes = max_bytes

    def require_features(self, requeue=True):
        """Requeueing is supported."""

    def send(self, *args, **kwargs):
        raise ConsumerOnlyError('this driver only consumes notifications')

    def send_notification(self, *args, **kwargs):
        raise ConsumerOnlyError('this driver only consumes notifications')

    def listen(self, *args, **kwargs):
        raise ConsumerOnlyError('this driver only consumes notifications')

    def listen_for_notifications(self, targets_and_priorities, pool,
                                 batch_size, batch_timeout):
        bindings = []
        for target, priority in targets_and_priorities:
            routing_key = f'{target.topic}.{priority}'
            bindings.append(Binding(target.exchange or self._default_exchange,
                                    routing_key, pool or routing_key))
        consumer = BatchedNotificationConsumer(
            kombu_urls(self._url), bindings, self._rabbit,
            max(self._prefetch, batch_size), self._dead_letters,
            self._max_bytes)
        return driver_base.PollStyleListenerAdapter(consumer, batch_size,
                                                    batch_timeout)

    def cleanup(self):
        """Listeners clean up their own connections."""


def notification_transport(conf, url, prefetch, dead_letters=None,
                           max_bytes=None):
    """An oslo.messaging notification transport on the batched consumer
    driver, for the rabbit:// ``url`` (an oslo_messaging.TransportURL)."""
    return transport_mod.NotificationTransport(BatchedNotificationDriver(
        conf, url, conf.control_exchange, prefetch, dead_letters,
        max_bytes))
