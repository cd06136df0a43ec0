"""The real RabbitMQ: queues, publishing notifications with oslo.messaging's
Notifier, raw messages, dead letters."""

import contextlib
import json
import os
import re
import subprocess
import time
import urllib.parse
import uuid

import kombu

from calipso_agent import replay
from tests.helpers.basics import make_conf

RABBIT_URL = os.environ.get('CALIPSO_TEST_RABBIT_URL',
                            'rabbit://guest:guest@127.0.0.1:5672/')


AMQP_URL = 'amqp://' + RABBIT_URL.split('://', 1)[1]


TELEMETRY_SECRET = 'functional-secret'


def broker_available(url=AMQP_URL, timeout=2):
    try:
        with kombu.Connection(url, connect_timeout=timeout) as conn:
            conn.connect()
            return True
    except Exception:
        return False


def unique_topic(prefix='calipso_test'):
    return f'{prefix}_{uuid.uuid4().hex}'


def topic_queues(topic, priorities=('info', 'sample', 'error')):
    """The queue names oslo.messaging uses for ``topic`` without a pool."""
    return [f'{topic}.{priority}' for priority in priorities]


def queue_counts(name, url=AMQP_URL):
    """(ready message count, consumer count) of queue ``name``, or None
    when it does not exist. The count is RabbitMQ's ``message_count``:
    messages delivered but not yet acknowledged are not in it."""
    with kombu.Connection(url) as conn:
        channel = conn.channel()
        try:
            ok = channel.queue_declare(name, passive=True)
        except conn.channel_errors:
            return None
        finally:
            with contextlib.suppress(Exception):
                channel.close()
    return ok.message_count, ok.consumer_count


def delete_queues(names, url=AMQP_URL):
    """Delete the queues ``names`` (only queues a test created!)."""
    with kombu.Connection(url) as conn:
        for name in names:
            channel = conn.channel()
            try:
                channel.queue_delete(name)
            except conn.channel_errors:
                pass
            finally:
                with contextlib.suppress(Exception):
                    channel.close()


def publish_raw(routing_key, body, exchange='nova',
                content_type='application/json', url=AMQP_URL):
    """Put ``body`` (bytes) on ``exchange`` as is, bypassing oslo.messaging.

    Like oslo's Notifier, it first declares the exchange and the
    ``routing_key`` queue (non-durable, as oslo.messaging declares them), so
    the message waits there even if the agent is not consuming yet.
    """
    with kombu.Connection(url) as conn:
        channel = conn.channel()
        target = kombu.Exchange(exchange, 'topic', durable=False)
        kombu.Queue(routing_key, target, routing_key=routing_key,
                    durable=False, auto_delete=False)(channel).declare()
        producer = kombu.Producer(channel)
        producer.publish(body, exchange=exchange, routing_key=routing_key,
                         content_type=content_type, content_encoding='utf-8',
                         serializer=None, declare=[], retry=True)


def publish_notifications(topic, notifications, exchange='nova',
                          publisher_id=None, priority=None,
                          keep_timestamps=False, url=RABBIT_URL):
    """Send notifications with oslo.messaging's own Notifier (driver
    messagingv2), the way nova sends them.

    ``notifications``: envelopes (``load_envelope``) or any dicts with
    ``event_type`` and ``payload``, and optionally ``ctxt``,
    ``publisher_id``, ``priority``; ``publisher_id`` and ``priority``
    given here override theirs (defaults: 'compute.host1', 'info'). The
    Notifier makes the message id and, unless ``keep_timestamps`` (then
    the envelope's ``timestamp``), the timestamp. Returns the message ids
    the Notifier gave them, in order (recorded from its ``uuid4`` calls).
    """
    from unittest import mock

    import oslo_messaging
    from oslo_messaging.notify import notifier as notifier_module
    from oslo_utils import timeutils

    message_ids = []

    class RecordingUUID:
        """The uuid module, as the Notifier sees it, noting uuid4s."""

        def __getattr__(self, name):
            return getattr(uuid, name)

        def uuid4(self):
            value = uuid.uuid4()
            message_ids.append(str(value))
            return value

    conf = replay.notifier_conf(url, exchange)
    transport = oslo_messaging.get_notification_transport(conf)
    notifier = oslo_messaging.Notifier(transport,
                                       publisher_id='compute.host1',
                                       driver='messagingv2', topics=[topic],
                                       retry=3)
    sent = 0
    try:
        recording = mock.patch.object(notifier_module, 'uuid',
                                      RecordingUUID())
        for item in notifications:
            prepared = notifier.prepare(
                publisher_id=(publisher_id or item.get('publisher_id')
                              or 'compute.host1'))
            level = str(priority or item.get('priority') or 'info').lower()
            send = getattr(prepared, {'warning': 'warn'}.get(level, level))
            if keep_timestamps and item.get('timestamp'):
                timeutils.set_time_override(
                    replay.notification_time(item['timestamp']))
            try:
                with recording:
                    send(dict(item.get('ctxt') or {}), item['event_type'],
                         item['payload'])
            finally:
                if keep_timestamps:
                    timeutils.clear_time_override()
            sent += 1
    finally:
        transport.cleanup()
    if len(message_ids) != sent:
        raise AssertionError(f'{sent} notifications sent but the Notifier '
                             f'made {len(message_ids)} message ids')
    return message_ids


def close_broker_connections(name_prefix, pids):
    """Make RabbitMQ close the AMQP connections whose client-declared
    connection name starts with ``name_prefix`` and ends with ``:<pid>``
    for one of ``pids``. Returns how many were closed."""
    listing = subprocess.run(
        ['rabbitmqctl', '-q', 'list_connections', 'pid', 'client_properties'],
        capture_output=True, text=True, timeout=60, check=True).stdout
    closed = 0
    for line in listing.splitlines():
        match = re.search(re.escape(name_prefix) + r'[^"]*:(\d+)"', line)
        if match and int(match.group(1)) in pids:
            subprocess.run(['rabbitmqctl', '-q', 'close_connection',
                            line.split('\t', 1)[0], 'calipso fault test'],
                           capture_output=True, timeout=60, check=True)
            closed += 1
    return closed


def publish_samples(topic, samples, per_notification=50,
                    secret=TELEMETRY_SECRET, url=RABBIT_URL, pause=0.0,
                    stop=None):
    """Put ``samples`` on the bus as notifier:// does (signed meter
    messages, ``per_notification`` to a notification, topic ``topic`` on
    the control exchange), ``pause`` seconds apart; ``stop`` (an Event)
    ends it early. Returns how many samples were sent."""
    from calipso_agent.publisher import notifier

    conf = make_conf(transport_url=url, publisher__telemetry_secret=secret)
    publisher = notifier.NotifierPublisher(
        conf, urllib.parse.urlparse(f'notifier://?topic={topic}'))
    sent = 0
    try:
        for start in range(0, len(samples), per_notification):
            if stop is not None and stop.is_set():
                break
            chunk = samples[start:start + per_notification]
            publisher.publish_samples(chunk)
            sent += len(chunk)
            if pause:
                time.sleep(pause)
    finally:
        publisher.close()
    return sent


def read_dead_letters(queue, url=AMQP_URL):
    """[(headers, body)] of the dead letters in ``queue``, left there."""
    letters = []
    with kombu.Connection(url) as conn:
        channel = conn.channel()
        try:
            while True:
                message = channel.basic_get(queue, no_ack=False)
                if message is None:
                    break
                body = message.body
                # py-amqp decodes the text of a body that names its
                # encoding: the bytes that were sent.
                if isinstance(body, str):
                    body = body.encode(message.content_encoding or 'utf-8',
                                       'surrogateescape')
                letters.append((dict(message.headers or {}), body))
        except conn.channel_errors:
            return []
        finally:
            with contextlib.suppress(Exception):
                channel.close()
    return letters


def oslo_body(message_text):
    """An oslo.messaging 2.0 body around ``message_text`` (the JSON text
    of the message, as is: it may be what no encoder would make)."""
    return ('{"oslo.version": "2.0", "oslo.message": '
            + json.dumps(message_text) + '}').encode()


def unsettled_messages(queue, vhost='/'):
    """Ready plus unacknowledged messages of ``queue`` (rabbitmqctl), None
    when it cannot tell."""
    try:
        out = subprocess.run(
            ['rabbitmqctl', '-q', 'list_queues', '-p', vhost, 'name',
             'messages_ready', 'messages_unacknowledged'],
            capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[0] == queue:
            return int(fields[1]) + int(fields[2])
    return None
