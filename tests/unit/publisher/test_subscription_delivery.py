"""The samples frames between the subscription publisher and its delivery
process: what the process rebuilds, signs and sends is what the agent
matched."""

import datetime
import io
import socket

import msgpack

from calipso_agent.publisher import subscription_delivery, utils
from tests.helpers.basics import make_sample

SECRET = 'secret'


def roundtrip(matched):
    stream = io.BytesIO(subscription_delivery.samples_frame(matched))
    kind, body = subscription_delivery.read_frame(stream)
    assert kind == 'samples'
    return subscription_delivery.frame_samples(body)


def notification_samples(count, per_notification):
    """Samples in runs sharing equal (not identical) metadata, as the
    samples of one notification do."""
    return [make_sample(i, resource_metadata={
        'instance': f'vm-{i // per_notification}', 'flavor': {'id': 'm1'},
        7: 'a non-text key'}) for i in range(count)]


def test_samples_come_back_as_the_agent_matched_them():
    samples = notification_samples(12, 4)
    matched = [([f'sub-{i % 3}'], s) for i, s in enumerate(samples)]
    back = roundtrip(matched)
    assert [ids for ids, _, _ in back] == [ids for ids, _ in matched]
    assert [s.as_dict() for _, s, _ in back] == [
        s.as_dict() for s in samples]
    # One metadata per notification crossed the pipe, shared on arrival.
    assert len({id(m) for _, _, m in back}) == 3
    assert all(m.metadata is s.resource_metadata for _, s, m in back)


def test_values_without_a_msgpack_type_go_as_text():
    when = datetime.datetime(2026, 1, 2, 3, 4, 5)
    [(_, sample, _)] = roundtrip([(['s'], make_sample(
        1, resource_metadata={'at': when}))])
    assert sample.resource_metadata == {'at': str(when)}


def test_the_delivery_process_sends_the_datagrams_of_the_samples():
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(('127.0.0.1', 0))
    receiver.settimeout(5)
    deliverer = subscription_delivery.Deliverer({
        'options': {'queue_size': 10}, 'secret': SECRET, 'networks': [],
        'broker_urls': []})
    try:
        deliverer.apply([{'id': 'sub', 'target':
                          f'udp://127.0.0.1:{receiver.getsockname()[1]}'}])
        samples = notification_samples(6, 3)
        stream = io.BytesIO(subscription_delivery.samples_frame(
            [(['sub'], s) for s in samples]))
        deliverer.deliver(subscription_delivery.read_frame(stream)[1])
        received = [receiver.recv(65536) for _ in samples]
    finally:
        deliverer.stop()
        receiver.close()
    assert received == [utils.datagram(s, SECRET) for s in samples]
    for data in received:
        assert utils.verify_signature(
            msgpack.unpackb(data, strict_map_key=False), SECRET)
    assert deliverer.counts() == {'sub': {'delivered': 6, 'dropped': 0,
                                          'last_error': None}}
