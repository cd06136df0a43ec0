"""Fuzzing notifications through the endpoint and a real store: whatever
one notification holds, the batch it is in is handled (never requeued
with the store up) and the good notifications of the batch are stored.

Envelopes and payloads are instance-exists notifications with fields
replaced by arbitrary JSON values (huge and non-finite numbers, NUL and
surrogate characters, long text, deep nesting), decoded as the batched
consumer decodes them when they are JSON at all.
"""

import uuid

import hypothesis
import orjson
import pytest
from hypothesis import strategies as st

from calipso_agent import amqp_consumer, messaging, storage
from calipso_agent import pipeline as pipeline_mod
from calipso_agent import sample as sample_mod
from calipso_agent.notification import manager, meters, vsg
from tests.helpers import basics, databases, fixtures

pytestmark = pytest.mark.functional

PAYLOAD_FIELDS = ('instance_id', 'tenant_id', 'user_id', 'memory_mb',
                  'vcpus', 'root_gb', 'ephemeral_gb', 'display_name',
                  'metadata', 'image_meta', 'launched_at', 'host',
                  'instance_type')
ENVELOPE_FIELDS = ('event_type', 'timestamp', 'message_id', 'publisher_id',
                   'payload', '_context_project_id', '_context_user_id')

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-2 ** 70, max_value=2 ** 70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.text(alphabet=st.sampled_from('\x00\ud800x\u00e9'), max_size=10),
    st.builds(lambda n: 'x' * n, st.integers(min_value=200, max_value=5000)))
values = st.recursive(
    scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20)


class Deep:
    """Objects nested ``levels`` deep, made in the test (hypothesis would
    recurse printing them)."""

    def __init__(self, levels):
        self.levels = levels

    def __repr__(self):
        return f'Deep({self.levels})'

    def make(self):
        value = {}
        for _ in range(self.levels):
            value = {'a': value}
        return value


def deep(levels):
    return st.builds(Deep, st.integers(min_value=levels,
                                       max_value=levels * 4))


def made(value):
    if isinstance(value, Deep):
        return value.make()
    if isinstance(value, dict):
        return {k: made(v) for k, v in value.items()}
    if isinstance(value, list):
        return [made(v) for v in value]
    return value


field_value = st.one_of(values, deep(100), deep(1000))


def notification_dict(envelope):
    """What oslo.messaging's dispatcher hands the endpoint."""
    ctxt = {k[len('_context_'):]: v for k, v in envelope.items()
            if isinstance(k, str) and k.startswith('_context_')}
    return {'ctxt': ctxt, 'publisher_id': envelope.get('publisher_id'),
            'event_type': envelope.get('event_type'),
            'payload': envelope.get('payload'),
            'metadata': {'message_id': envelope.get('message_id'),
                         'timestamp': envelope.get('timestamp')}}


def good(resource_id):
    envelope = fixtures.instance_exists(resource_id)
    message_id = str(uuid.uuid4())
    return dict(envelope, message_id=message_id), message_id


@st.composite
def fuzzed(draw):
    envelope, _ = good('fuzz-vm')
    envelope['payload'] = dict(envelope['payload'])
    for field in draw(st.lists(st.sampled_from(PAYLOAD_FIELDS), max_size=4)):
        envelope['payload'][field] = draw(field_value)
    for field in draw(st.lists(st.sampled_from(ENVELOPE_FIELDS),
                               max_size=2)):
        envelope[field] = draw(values)
    return envelope


class Letters:
    def __init__(self):
        self.letters = []

    def publish(self, body, reason, message_id=None, **kwargs):
        self.letters.append((message_id, reason))


@pytest.fixture(scope='module', params=['sqlite', 'postgresql'])
def dispatcher(request, tmp_path_factory):
    if request.param == 'sqlite':
        path = tmp_path_factory.mktemp('fuzz') / 'samples.sqlite'
        yield from _dispatcher(f'sqlite:///{path}')
        return
    with databases.shared_postgresql_database() as url:
        if url is None:
            pytest.skip('the shared PostgreSQL server does not answer')
        yield from _dispatcher(url)


def _dispatcher(url):
    conf = basics.make_conf(database__connection=url)
    pipeline = pipeline_mod.Pipeline.from_dict(conf, {
        'sources': [{'name': 'all', 'meters': ['*'], 'sinks': ['db']}],
        'sinks': [{'name': 'db', 'publishers': ['database://']}]})
    endpoints = [meters.MeterEndpoint(conf, meters.MeterDefinitions.from_files(
        [fixtures.CEILOMETER_METERS])), vsg.VsgEndpoint(conf)]
    d = manager.SampleDispatcher(endpoints, pipeline, (0.01, 0.01),
                                 dead_letters=Letters())
    store = storage.get_connection(conf)
    d.fuzz_store = store
    yield d
    store.close()
    pipeline.close()


@hypothesis.settings(max_examples=150, deadline=None,
                     suppress_health_check=list(hypothesis.HealthCheck))
@hypothesis.given(poison=fuzzed(), position=st.integers(0, 6))
def test_no_notification_stalls_its_batch(dispatcher, poison, position):
    goods = [good(f'fuzz-good-{uuid.uuid4().hex}') for _ in range(6)]
    batch = [envelope for envelope, _ in goods]
    batch.insert(position, made(poison))
    notifications = []
    for envelope in batch:
        try:
            # Through the batched consumer's decoding when it is JSON.
            body = orjson.dumps({'oslo.message': orjson.dumps(
                envelope, option=orjson.OPT_NON_STR_KEYS).decode()})
            _, message = amqp_consumer.decode(body)
            envelope = message
        except (TypeError, ValueError, orjson.JSONEncodeError):
            pass
        notifications.append(notification_dict(envelope))
    result = dispatcher.info(notifications)
    assert result == messaging.RESULTS['handled']
    stored = {s.id for s in dispatcher.fuzz_store.get_samples(
        storage.base.SampleFilter(resource_id=[
            envelope['payload']['instance_id'] for envelope, _ in goods]))}
    want = {sample_mod.sample_id(message_id, name,
                                 envelope['payload']['instance_id'])
            for envelope, message_id in goods
            for name in fixtures.INSTANCE_METERS}
    assert stored == want
