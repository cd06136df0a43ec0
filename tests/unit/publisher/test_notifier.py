import socket
import time
import urllib.parse

import oslo_messaging
import pytest

from calipso_agent.publisher import base, notifier, utils
from tests.helpers import basics
from tests.helpers.basics import make_sample

SECRET = 'bus-secret'


@pytest.fixture
def conf():
    return basics.make_conf(transport_url='fake://', host='node-1',
                             publisher__telemetry_secret=SECRET)


def make(conf, url):
    return notifier.NotifierPublisher(conf, urllib.parse.urlparse(url))


def consume(transport, topic, count=1):
    """Notifications already sent on ``topic`` of the fake transport."""
    endpoint = basics.RecordingEndpoint()
    listener = oslo_messaging.get_notification_listener(
        transport, [oslo_messaging.Target(topic=topic)], [endpoint],
        executor='threading')
    listener.start()
    deadline = time.monotonic() + 5
    while len(endpoint.received) < count and time.monotonic() < deadline:
        endpoint.event.wait(0.05)
        endpoint.event.clear()
    listener.stop()
    listener.wait()
    return endpoint.received


def test_entry_point(conf):
    pub = basics.load_publisher(conf, 'notifier://')
    assert isinstance(pub, notifier.NotifierPublisher)
    pub.close()


def test_samples_notification(conf):
    pub = make(conf, 'notifier://')
    # Integer volumes, as cpu time in ns, through the transport.
    samples = [make_sample(i, volume=10 ** 9 + i) for i in range(3)]
    pub.publish_samples(samples)
    (received,) = consume(pub.transport, 'metering')
    publisher_id, event_type, payload = received
    assert publisher_id == 'telemetry.publisher.node-1'
    assert event_type == 'metering'
    assert payload == [utils.meter_message(s, SECRET) for s in samples]
    assert all(utils.verify_signature(msg, SECRET) for msg in payload)
    pub.close()


def capture(monkeypatch, pub):
    """What the publisher hands the transport: (topic, ctxt, msg, kwargs)."""
    sent = []

    def send(target, ctxt, message, **kwargs):
        sent.append((target.topic, ctxt, message, kwargs))

    monkeypatch.setattr(pub.transport, '_send_notification', send)
    return sent


def test_envelope(conf, monkeypatch):
    pub = make(conf, 'notifier://')
    sent = capture(monkeypatch, pub)
    pub.publish_samples([make_sample(0), make_sample(1)])
    ((topic, ctxt, message, kwargs),) = sent
    assert topic == 'metering.sample'
    assert ctxt == {}
    assert set(message) == {'message_id', 'publisher_id', 'event_type',
                            'priority', 'payload', 'timestamp'}
    assert message['priority'] == 'SAMPLE'
    assert message['event_type'] == 'metering'
    assert message['publisher_id'] == 'telemetry.publisher.node-1'
    assert [m['resource_id'] for m in message['payload']] == ['vm-0', 'vm-1']
    assert kwargs == {'version': 2.0, 'retry': notifier.DEFAULT_RETRY}


def test_default_topic_and_event_type_from_conf(conf, monkeypatch):
    conf.set_override('metering_topic', 'telemetry-x',
                      group='publisher_notifier')
    pub = make(conf, 'notifier://')
    sent = capture(monkeypatch, pub)
    pub.publish_samples([make_sample()])
    assert [(topic, msg['event_type']) for topic, _, msg, _ in sent] == [
        ('telemetry-x.sample', 'telemetry-x')]


def test_topics_from_url(conf, monkeypatch):
    pub = make(conf, 'notifier://?topic=one&topic=two')
    sent = capture(monkeypatch, pub)
    pub.publish_samples([make_sample()])
    assert [(topic, msg['event_type']) for topic, _, msg, _ in sent] == [
        ('one.sample', 'metering'), ('two.sample', 'metering')]


def test_empty_batch_sends_nothing(conf, monkeypatch):
    pub = make(conf, 'notifier://')
    sent = capture(monkeypatch, pub)
    pub.publish_samples([])
    assert sent == []


@pytest.fixture
def transport_urls(monkeypatch):
    urls = []
    real = oslo_messaging.get_notification_transport

    def spy(conf, url=None):
        urls.append(url)
        return real(conf, url='fake://')

    monkeypatch.setattr(oslo_messaging, 'get_notification_transport', spy)
    return urls


@pytest.mark.parametrize('url,transport_url,version', [
    ('notifier://', None, 2.0),
    ('notifier://?driver=messaging', None, 1.0),
    ('notifier://u:p@127.0.0.1:5672/', 'rabbit://u:p@127.0.0.1:5672/', 2.0),
    ('notifier://u:p@127.0.0.1:5672/vh?topic=t&ssl=true&retry=1',
     'rabbit://u:p@127.0.0.1:5672/vh?ssl=true', 2.0),
    ('notifier://127.0.0.1:5672?driver=rabbit',
     'rabbit://127.0.0.1:5672', 2.0),
    ('notifier://127.0.0.1:9092?driver=kafka', 'kafka://127.0.0.1:9092', 2.0),
    ('notifier://127.0.0.1?driver=messaging&policy=default'
     '&max_queue_length=5&per_meter_topic=0',
     'rabbit://127.0.0.1', 1.0),
])
def test_transport_url(conf, transport_urls, url, transport_url, version):
    pub = make(conf, url)
    assert transport_urls == [transport_url]
    assert pub.version == version


def test_driver_from_conf(conf):
    conf.set_override('telemetry_driver', 'messaging',
                      group='publisher_notifier')
    assert make(conf, 'notifier://').version == 1.0


@pytest.mark.parametrize('query,retry', [
    ('', notifier.DEFAULT_RETRY),
    ('retry=0', 0),
    ('retry=10', 10),
    ('max_retry=7', 7),
    ('max_retry=7&retry=1', 1),
])
def test_retry(conf, monkeypatch, query, retry):
    pub = make(conf, f'notifier://?{query}')
    sent = capture(monkeypatch, pub)
    pub.publish_samples([make_sample()])
    assert [kwargs for _, _, _, kwargs in sent] == [
        {'version': 2.0, 'retry': retry}]


def test_delivery_failure_is_publisher_error(conf, monkeypatch):
    pub = make(conf, 'notifier://')

    def fail(*args, **kwargs):
        raise oslo_messaging.MessageDeliveryFailure('broker gone')

    monkeypatch.setattr(pub.transport, '_send_notification', fail)
    with pytest.raises(base.PublisherError, match='broker gone'):
        pub.publish_samples([make_sample()])


def test_unreachable_broker_fails_fast(conf):
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    pub = make(conf, f'notifier://guest:guest@127.0.0.1:{port}/?retry=0')
    start = time.monotonic()
    with pytest.raises(base.PublisherError):
        pub.publish_samples([make_sample()])
    assert time.monotonic() - start < 5
    pub.close()


@pytest.mark.parametrize('url,message', [
    ('notifier://?topic=', 'topic is empty'),
    ('notifier://?driver=bogus', "driver='bogus' is neither"),
    ('notifier://?driver=', "driver='' is neither"),
    ('notifier://?driver=log', "'log' cannot report delivery failures"),
    ('notifier://?retry=-1', "retry='-1' is not a number"),
    ('notifier://?retry=forever', "retry='forever'"),
    ('notifier://?retry=', "retry=''"),
    ('notifier://?policy=drop', 'policy other than "default"'),
    ('notifier://?per_meter_topic=1', 'per_meter_topic is not supported'),
    ('notifier://?per_meter_topic=hmm', 'per_meter_topic is not supported'),
    ('notifier://?colour=red', 'unknown notifier option.*colour'),
    ('notifier://guest:s3cret@127.0.0.1:port/', r'URL \(127.0.0.1:port\)'),
])
def test_bad_url(conf, url, message):
    with pytest.raises(base.PublisherConfigError, match=message) as info:
        make(conf, url)
    assert 's3cret' not in str(info.value)


def test_unsupported_driver_in_conf(conf):
    conf.set_override('telemetry_driver', 'noop',
                      group='publisher_notifier')
    with pytest.raises(base.PublisherConfigError, match="'noop'"):
        make(conf, 'notifier://')
