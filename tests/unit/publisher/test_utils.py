import json

import msgpack
import pytest

from calipso_agent.publisher import utils
from tests.helpers.basics import make_sample

SECRET = 'secret'
# make_sample(1, **SIGNED) is the sample signed below: the tampering cases
# change one of its fields.
SIGNED = dict(volume=1.5,
              resource_metadata={'flavor': {'name': 'm1.small', 'vcpus': 1},
                                 'tags': ['a', 'b']})


# Digests computed with Ceilometer 27's own compute_signature.
CEILOMETER_VECTORS = [
    ({'counter_name': 'cpu', 'counter_volume': 1.5,
      'resource_metadata': {'flavor': {'name': 'm1', 'vcpus': 2},
                            'tags': ['a', 'é', b'b', ('t', 1)],
                            'l': [{'z': 'q', 'a': [1, 'b']}]},
      'user_id': None, 'ok': True},
     'secret',
     '37b661e9f2f62dfcb5cbdabb7b3388874a4a377c205e6d15682e1a42c908f17e'),
    ({'k': 'ünï', 'n': {}, 'e': [], 'x': {'y': {'z': 'w'}}},
     'ß',
     '7bee56ed31561252f26e259bc0dad60a779671bf7bd4d262f0ee3b049dced858'),
]


@pytest.mark.parametrize('message,secret,digest', CEILOMETER_VECTORS)
def test_signature_matches_ceilometer(message, secret, digest):
    assert utils.compute_signature(message, secret) == digest


def test_meter_message_fields():
    smp = make_sample(1, **SIGNED)
    msg = utils.meter_message(smp, SECRET)
    assert set(msg) == {
        'source', 'counter_name', 'counter_type', 'counter_unit',
        'counter_volume', 'user_id', 'project_id', 'resource_id',
        'timestamp', 'resource_metadata', 'message_id', 'recorded_at',
        'monotonic_time', 'message_signature'}
    assert msg['counter_name'] == 'cpu'
    assert msg['counter_type'] == 'cumulative'
    assert msg['counter_unit'] == 'ns'
    assert msg['counter_volume'] == 1.5
    assert msg['message_id'] == smp.id
    assert msg['monotonic_time'] is None
    assert msg['resource_metadata'] == smp.resource_metadata
    assert utils.verify_signature(msg, SECRET)


def test_publisher_id_is_signed():
    msg = utils.meter_message(make_sample(1, **SIGNED), SECRET,
                              publisher_id='me')
    assert msg['publisher_id'] == 'me'
    assert utils.verify_signature(msg, SECRET)
    msg['publisher_id'] = 'someone else'
    assert not utils.verify_signature(msg, SECRET)


@pytest.mark.parametrize('field,value', [
    ('counter_volume', 2.5),
    ('resource_id', 'vm-2'),
    ('resource_metadata', {'flavor': {'name': 'm1.small', 'vcpus': 2},
                           'tags': ['a', 'b']}),
    ('resource_metadata', {'flavor': {'name': 'm1.small', 'vcpus': 1},
                           'tags': ['a', 'c']}),
])
def test_tampering_breaks_signature(field, value):
    msg = utils.meter_message(make_sample(1, **SIGNED), SECRET)
    msg[field] = value
    assert not utils.verify_signature(msg, SECRET)


def test_wrong_secret_fails():
    msg = utils.meter_message(make_sample(1, **SIGNED), SECRET)
    assert not utils.verify_signature(msg, 'other')


def test_signature_survives_json_and_msgpack():
    msg = utils.meter_message(
        make_sample(1, volume=1.5,
                    resource_metadata={'t': ('x', 'y'), 'n': {'b': 1}}),
        SECRET)
    assert utils.verify_signature(json.loads(json.dumps(msg)), SECRET)
    packed = msgpack.packb(msg, use_bin_type=True)
    assert utils.verify_signature(msgpack.unpackb(packed), SECRET)


def test_key_order_does_not_matter():
    msg = utils.meter_message(make_sample(1, **SIGNED), SECRET)
    reordered = dict(reversed(list(msg.items())))
    assert utils.verify_signature(reordered, SECRET)


@pytest.mark.parametrize('signature', [None, '', 'zz', 'é', 42, b'00'])
def test_garbage_signature_is_rejected(signature):
    msg = utils.meter_message(make_sample(1, **SIGNED), SECRET)
    msg['message_signature'] = signature
    assert not utils.verify_signature(msg, SECRET)


def test_missing_signature_is_rejected():
    msg = utils.meter_message(make_sample(1, **SIGNED), SECRET)
    del msg['message_signature']
    assert not utils.verify_signature(msg, SECRET)


def test_no_secret_means_unsigned():
    msg = utils.meter_message(make_sample(1, **SIGNED), '')
    assert msg['message_signature'] == ''
    assert utils.verify_signature({'anything': 1}, '')
