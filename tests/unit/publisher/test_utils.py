import hashlib
import hmac
import json

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


METADATA = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5),
              st.floats(allow_nan=False)),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.text(max_size=4), children, max_size=4)),
    max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(metadata=st.dictionaries(st.text(max_size=6), METADATA, max_size=5),
       volume=st.one_of(st.integers(), st.floats(allow_nan=False)),
       user_id=st.one_of(st.none(), st.text(max_size=5)),
       publisher_id=st.one_of(st.none(), st.text(max_size=5)))
def test_meter_message_signs_as_the_generic_rendering(
        metadata, volume, user_id, publisher_id):
    smp = make_sample(1, volume=volume, user_id=user_id,
                      resource_metadata=metadata)
    msg = utils.meter_message(smp, SECRET, publisher_id=publisher_id)
    assert msg['message_signature'] == utils.compute_signature(msg, SECRET)


def test_samples_sharing_metadata_sign_and_encode_as_alone():
    samples = [make_sample(i, resource_metadata={'flavor': {'id': 'm1'},
                                                 'n': i // 2})
               for i in range(5)]
    shared = utils.shared_metadata(samples)
    assert shared[0] is shared[1] and shared[2] is shared[3]
    assert len({id(m) for m in shared}) == 3
    for smp, metadata in zip(samples, shared, strict=True):
        assert utils.datagram(smp, SECRET, metadata) == utils.datagram(
            smp, SECRET)
        assert utils.verify_signature(
            utils.meter_message(smp, SECRET, metadata=metadata), SECRET)


@settings(max_examples=200, deadline=None)
@given(secret=st.one_of(st.text(min_size=1, max_size=100),
                        st.binary(min_size=1, max_size=150)),
       data=st.binary(max_size=300))
def test_signer_is_hmac_sha256(secret, data):
    key = secret.encode('utf-8') if isinstance(secret, str) else secret
    assert utils.Signer(secret).hexdigest(data) == hmac.new(
        key, data, hashlib.sha256).hexdigest()
