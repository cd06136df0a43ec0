"""The batched AMQP consumer: decoding and settlement order."""

import json

import oslo_messaging
import pytest

from calipso_agent import amqp_consumer
from tests.helpers import basics


def oslo_body(message, **context):
    inner = dict(message, **{f'_context_{k}': v for k, v in context.items()})
    inner['_unique_id'] = 'u'
    return json.dumps({'oslo.version': '2.0',
                       'oslo.message': json.dumps(inner)}).encode()


def test_decode_oslo_envelope():
    ctxt, message = amqp_consumer.decode(oslo_body(
        {'event_type': 'e', 'priority': 'INFO', 'payload': {'a': 1},
         'message_id': 'm'}, user_id='u1', project_id='p1'))
    assert ctxt == {'user_id': 'u1', 'project_id': 'p1'}
    assert message == {'event_type': 'e', 'priority': 'INFO',
                       'payload': {'a': 1}, 'message_id': 'm'}


def test_decode_bare_notification():
    ctxt, message = amqp_consumer.decode(
        b'{"event_type": "e", "payload": {}, "_context_user": "x"}')
    assert ctxt == {'user': 'x'} and message['event_type'] == 'e'


@pytest.mark.parametrize('body,reason', [
    (b'\x00 not json', 'unexpected character'),
    (b'[1, 2]', 'not a JSON object'),
    (b'{"hello": "world"}', 'no event_type'),
    (b'{"oslo.message": "{broken"}', None),
    (oslo_body({'event_type': 'e', 'priority': None}),
     'priority None is not a string'),
    (b'\xff\xfe', None),
])
def test_decode_rejects_garbage(body, reason):
    with pytest.raises(ValueError, match=reason):
        amqp_consumer.decode(body)


class FakeChannel:
    def __init__(self):
        self.calls = []

    def basic_ack(self, tag, multiple=False):
        self.calls.append(('ack', tag, multiple))

    def basic_reject(self, tag, requeue):
        self.calls.append(('reject', tag, requeue))


class Delivery:
    def __init__(self, tag, body):
        self.delivery_tag = tag
        self.body = body
        self.content_type = 'application/json'
        self.content_encoding = 'utf-8'
        self.delivery_info = {'routing_key': 'notifications.info',
                              'exchange': 'nova'}


class RecordingDeadLetters:
    def __init__(self, fail=False):
        self.fail = fail
        self.letters = []

    def publish(self, body, reason, **kwargs):
        if self.fail:
            raise OSError('broker gone')
        self.letters.append(dict(kwargs, body=body, reason=reason))


def make_consumer(dead_letters=None, max_bytes=None):
    consumer = amqp_consumer.BatchedNotificationConsumer(
        ['amqp://guest:guest@127.0.0.1:5672/'], [], None, 10, dead_letters,
        max_bytes)
    consumer._channel = FakeChannel()
    consumer._generation = 1
    return consumer


def deliver(consumer, count, start=1, body=None):
    for tag in range(start, start + count):
        consumer._on_delivery(Delivery(tag, body or oslo_body(
            {'event_type': 'e', 'priority': 'INFO', 'message_id': f'm{tag}',
             'payload': {}})))


def test_acks_are_one_frame_per_settled_run():
    consumer = make_consumer()
    deliver(consumer, 5)
    messages = list(consumer._received)
    assert [m.msg_id for m in messages] == [f'm{i}' for i in range(1, 6)]
    for m in messages[1:3]:
        m.acknowledge()
    consumer._flush_settlements()
    assert consumer._channel.calls == []  # tag 1 is not settled yet
    messages[0].acknowledge()
    consumer._flush_settlements()
    assert consumer._channel.calls == [('ack', 3, True)]
    messages[3].requeue()
    messages[4].acknowledge()
    consumer._flush_settlements()
    assert consumer._channel.calls[1:] == [('reject', 4, True),
                                           ('ack', 5, True)]
    assert not consumer._unsettled and not consumer._settlements


def test_undecodable_deliveries_are_acked_in_order(caplog):
    consumer = make_consumer()
    deliver(consumer, 1, start=1)
    deliver(consumer, 1, start=2, body=b'garbage')
    deliver(consumer, 1, start=3)
    assert consumer.undecodable == 1
    assert 'Notification None dropped (delivery 2' in caplog.text
    assert 'undecodable: unexpected character' in caplog.text
    first, third = consumer._received
    third.acknowledge()
    consumer._flush_settlements()
    assert consumer._channel.calls == []
    first.acknowledge()
    consumer._flush_settlements()
    assert consumer._channel.calls == [('ack', 3, True)]


def test_settlements_of_an_old_connection_are_ignored():
    consumer = make_consumer()
    deliver(consumer, 2)
    old = list(consumer._received)
    consumer._disconnect()
    consumer._channel = FakeChannel()
    consumer._generation = 2
    deliver(consumer, 1, start=1)
    for m in old:
        m.acknowledge()
    consumer._flush_settlements()
    assert consumer._channel.calls == []
    consumer._received[0].acknowledge()
    consumer._flush_settlements()
    assert consumer._channel.calls == [('ack', 1, True)]


def test_kombu_urls_from_transport_url():
    conf = basics.make_conf()
    url = oslo_messaging.TransportURL.parse(
        conf, 'rabbit://u%40x:p%2Fw@h1:5673,guest:g@[::1]/v%2Fh')
    assert amqp_consumer.kombu_urls(url) == [
        'amqp://u%40x:p%2Fw@h1:5673/v%2Fh',
        'amqp://guest:g@[::1]:5672/v%2Fh']


def test_queue_arguments_follow_oslo_options():
    class Rabbit:
        rabbit_ha_queues = False
        rabbit_quorum_queue = True
        rabbit_quorum_delivery_limit = 5
        rabbit_quorum_max_memory_length = 0
        rabbit_quorum_max_memory_bytes = 0

    assert amqp_consumer.queue_arguments(Rabbit) == {
        'x-queue-type': 'quorum', 'x-delivery-limit': 5}
    Rabbit.rabbit_quorum_queue = False
    Rabbit.rabbit_ha_queues = True
    assert amqp_consumer.queue_arguments(Rabbit) == {'x-ha-policy': 'all'}


def test_the_driver_does_not_send():
    driver = amqp_consumer.BatchedNotificationDriver.__new__(
        amqp_consumer.BatchedNotificationDriver)
    with pytest.raises(amqp_consumer.ConsumerOnlyError):
        driver.send_notification(None, {}, {}, '2.0', None)


@pytest.mark.parametrize('body,message_id', [
    # The oslo.message string does not decode: the id is read around it.
    (json.dumps({'oslo.version': '2.0', 'oslo.message':
                 '{"message_id": "5f1c-77", "event_type": broken'}).encode(),
     '5f1c-77'),
    (b'{"message_id": "m-9", "payload": {"x": nan}}', 'm-9'),
    (oslo_body({'message_id': 'whole', 'priority': 7}), 'whole'),
    (b'\xff\xfe "message_id": "after-binary" \xff', 'after-binary'),
    (b'garbage', None),
    (b'{"message_id": 42}', None),
])
def test_message_id_of_an_undecodable_body(body, message_id):
    assert amqp_consumer.message_id_of(body) == message_id


def test_undecodable_and_oversize_messages_are_dead_lettered_as_they_came(
        caplog):
    letters = RecordingDeadLetters()
    consumer = make_consumer(letters, max_bytes=2000)
    broken = json.dumps({'oslo.version': '2.0', 'oslo.message':
                         '{"message_id": "bad-1", "event_type": x'}).encode()
    big = oslo_body({'event_type': 'e', 'priority': 'INFO',
                     'message_id': 'big-1', 'payload': {'x': 'y' * 3000}})
    consumer._on_delivery(Delivery(1, broken))
    consumer._on_delivery(Delivery(2, big))
    deliver(consumer, 1, start=3)
    assert [(d['message_id'], d['body'], d['exchange'], d['routing_key'])
            for d in letters.letters] == [
        ('bad-1', broken, 'nova', 'notifications.info'),
        ('big-1', big, 'nova', 'notifications.info')]
    assert letters.letters[0]['reason'].startswith('undecodable: ')
    assert letters.letters[1]['reason'] == (
        f'{len(big)} bytes, more than the 2000 accepted')
    assert [m.msg_id for m in consumer._received] == ['m3']
    consumer._received[0].acknowledge()
    consumer._flush_settlements()
    assert consumer._channel.calls == [('ack', 3, True)]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and all('\n' not in line for line in lines)
    assert lines[0].startswith('Notification bad-1 dead-lettered')


def test_a_dead_letter_not_published_leaves_the_message_queued():
    consumer = make_consumer(RecordingDeadLetters(fail=True))
    consumer._on_delivery(Delivery(1, b'garbage'))
    consumer._flush_settlements()
    assert consumer._channel.calls == [('reject', 1, True)]
