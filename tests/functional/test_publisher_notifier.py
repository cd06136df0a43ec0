"""NotifierPublisher against the RabbitMQ broker on 127.0.0.1:5672."""

import socket
import threading
import time
import urllib.parse
import uuid

import kombu
import oslo_messaging
import pytest
from oslo_config import cfg
from oslo_messaging import opts as messaging_opts

from calipso_agent import opts
from calipso_agent import sample as sample_mod
from calipso_agent.publisher import base, notifier, utils

pytestmark = pytest.mark.functional

BROKER = 'guest:guest@127.0.0.1:5672'
SECRET = 'functional-secret'


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
    conf = cfg.ConfigOpts()
    opts.register_opts(conf)
    conf([])
    conf.set_override('host', 'functional-node')
    conf.set_override('telemetry_secret', SECRET, group='publisher')
    return conf


@pytest.fixture
def topic():
    name = f'calipso-functional-{uuid.uuid4().hex}'
    yield name
    with kombu.Connection(f'amqp://{BROKER}//') as conn:
        conn.default_channel.queue_delete(f'{name}.sample')


def make_sample(index):
    return sample_mod.Sample(
        name='disk.read.bytes', type=sample_mod.TYPE_CUMULATIVE, unit='B',
        volume=4096 * index, user_id='user-1', project_id='project-1',
        resource_id=f'vm-{index}', timestamp='2024-05-01T12:00:00+00:00',
        resource_metadata={'flavor': {'name': 'm1.small', 'vcpus': 1},
                           'disk_names': ['vda', 'vdb']},
        message_id=f'notification-{index}')


class Endpoint:
    def __init__(self):
        self.received = []
        self.event = threading.Event()

    def sample(self, ctxt, publisher_id, event_type, payload, metadata):
        self.received.append((publisher_id, event_type, payload))
        self.event.set()


def consume(conf, topic, count):
    """Notifications on ``topic`` until ``count`` arrived or 10 s passed."""
    transport = oslo_messaging.get_notification_transport(
        conf, url=f'rabbit://{BROKER}/')
    endpoint = Endpoint()
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
    first = [make_sample(i) for i in range(3)]
    second = [make_sample(i) for i in range(3, 203)]
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
    for group, options in messaging_opts.list_opts():
        conf.register_opts(options, group=group)
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
