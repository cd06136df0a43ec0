"""NotifierPublisher against the RabbitMQ broker on 127.0.0.1:5672."""

import socket
import time
import urllib.parse
import uuid

import kombu
import oslo_messaging
import pytest

from calipso_agent.publisher import base, notifier, utils
from tests.helpers import basics
from tests.helpers.basics import make_sample

pytestmark = pytest.mark.functional

BROKER = 'guest:guest@127.0.0.1:5672'
SECRET = 'functional-secret'
DISK_METADATA = {'flavor': {'name': 'm1.small', 'vcpus': 1},
                 'disk_names': ['vda', 'vdb']}


def broker_up():
    try:
        with socket.create_connection(('127.0.0.1', 5672), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope='module', autouse=True)
def require_broker():
    if not broker_up():
        pytest.skip('no RabbitMQ on 127.0.0.1:5672')


@pytest.fixture
def conf():
    return basics.make_conf(host='functional-node',
                             publisher__telemetry_secret=SECRET)


@pytest.fixture
def topic():
    name = f'calipso-functional-{uuid.uuid4().hex}'
    yield name
    with kombu.Connection(f'amqp://{BROKER}//') as conn:
        conn.default_channel.queue_delete(f'{name}.sample')


def consume(conf, topic, count):
    """Notifications on ``topic`` until ``count`` arrived or 10 s passed."""
    transport = oslo_messaging.get_notification_transport(
        conf, url=f'rabbit://{BROKER}/')
    endpoint = basics.RecordingEndpoint()
    listener = oslo_messaging.get_notification_listener(
        transport, [oslo_messaging.Target(topic=topic)], [endpoint],
        executor='threading')
    listener.start()
    try:
        deadline = time.monotonic() + 10
        while (len(endpoint.received) < count
               and time.monotonic() < deadline):
            endpoint.event.wait(0.1)
            endpoint.event.clear()
    finally:
        listener.stop()
        listener.wait()
        transport.cleanup()
    return endpoint.received


@pytest.mark.parametrize('driver', ['messagingv2', 'messaging'])
def test_samples_reach_the_bus_signed(conf, topic, driver):
    url = f'notifier://{BROKER}/?topic={topic}&driver={driver}&retry=1'
    pub = notifier.NotifierPublisher(conf, urllib.parse.urlparse(url))
    first = [make_sample(i, resource_metadata=DISK_METADATA)
             for i in range(3)]
    second = [make_sample(i, resource_metadata=DISK_METADATA)
              for i in range(3, 203)]
    try:
        # Sent before anyone listens: the queue must keep them.
        pub.publish_samples(first)
        pub.publish_samples(second)
    finally:
        pub.close()
    received = consume(conf, topic, 2)
    assert len(received) == 2
    for (publisher_id, event_type, payload), samples in zip(
            received, (first, second), strict=True):
        assert publisher_id == 'telemetry.publisher.functional-node'
        assert event_type == 'metering'
        assert payload == [utils.meter_message(s, SECRET) for s in samples]
        for msg in payload:
            assert utils.verify_signature(msg, SECRET)
            assert not utils.verify_signature(msg, 'not the secret')
        assert [m['message_id'] for m in payload] == [s.id for s in samples]
        assert payload[0]['resource_metadata']['disk_names'] == ['vda',
                                                                 'vdb']


def test_configured_transport_url(conf, topic):
    conf.set_override('transport_url', f'rabbit://{BROKER}/')
    pub = notifier.NotifierPublisher(
        conf, urllib.parse.urlparse(f'notifier://?topic={topic}'))
    try:
        pub.publish_samples([make_sample(1)])
    finally:
        pub.close()
    ((_, _, payload),) = consume(conf, topic, 1)
    assert payload[0]['resource_id'] == 'vm-1'


def test_wrong_credentials_fail_without_hanging(conf, topic):
    url = f'notifier://guest:wrong@127.0.0.1:5672/?topic={topic}&retry=0'
    pub = notifier.NotifierPublisher(conf, urllib.parse.urlparse(url))
    start = time.monotonic()
    try:
        with pytest.raises(base.PublisherError):
            pub.publish_samples([make_sample(1)])
    finally:
        pub.close()
    assert time.monotonic() - start < 10
