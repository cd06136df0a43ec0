"""The pollster contract's helpers."""

import datetime
import hashlib
import uuid

from calipso_agent import sample
from calipso_agent.pollsters import base


def expected_polled_id(meter, resource_id, instant):
    """The documented id, from the uuid module: 56 bits of microseconds
    since the epoch, version 8, 66 bits of SHA-1(namespace, meter/resource),
    variant RFC 4122."""
    micros = (instant - datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
              ) // datetime.timedelta(microseconds=1)
    digest = hashlib.sha1(base.POLLED_ID_NAMESPACE.bytes
                          + f'{meter}/{resource_id}'.encode()).digest()
    key = int.from_bytes(digest, 'big') >> (160 - 66)
    value = ((micros >> 8) << 80 | 8 << 76 | (micros & 0xff) << 68
             | (key >> 62) << 64 | 0b10 << 62 | key & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


def test_polled_sample_id_is_deterministic_per_meter_resource_instant():
    ts = '2026-12-06T06:00:00+00:00'
    first = base.polled_sample_id('cpu', 'host1', ts)
    assert first == base.polled_sample_id('cpu', 'host1', ts)
    parsed = uuid.UUID(first)
    assert (parsed.version, parsed.variant) == (8, uuid.RFC_4122)
    assert first == expected_polled_id(
        'cpu', 'host1', datetime.datetime(2026, 12, 6, 6, tzinfo=datetime.UTC))
    others = {base.polled_sample_id('cpu', 'host2', ts),
              base.polled_sample_id('load.1', 'host1', ts),
              base.polled_sample_id('cpu', 'host1',
                                    '2026-12-06T06:00:10+00:00'),
              base.polled_sample_id('cpu', 'host1',
                                    '2026-12-06T06:00:00.000001+00:00')}
    assert first not in others and len(others) == 4


def test_polled_sample_id_depends_on_the_instant_not_its_spelling():
    ts = '2026-12-06T06:00:00+00:00'
    first = base.polled_sample_id('cpu', 'host1', ts)
    assert first == base.polled_sample_id('cpu', 'host1',
                                          '2026-12-06T07:00:00+01:00')
    assert first == base.polled_sample_id('cpu', 'host1',
                                          '2026-12-06T06:00:00')
    assert first == base.polled_sample_id('cpu', 'host1',
                                          '2026-12-06T06:00:00Z')


def test_polled_sample_ids_sort_by_instant():
    instants = [f'2026-12-06T06:{minute:02d}:00+00:00'
                for minute in range(0, 60, 7)]
    ids = [base.polled_sample_id('cpu', f'host{n}', ts)
           for n, ts in zip(range(9, 0, -1), instants, strict=True)]
    assert ids == sorted(ids)


def test_polled_sample_id_same_after_its_caches_are_cleared(monkeypatch):
    ts = '2026-12-06T06:00:00+00:00'
    made = {(m, r, t): base.polled_sample_id(m, r, t)
            for m in ('cpu', 'load.1') for r in ('a', 'b', 'c')
            for t in (ts, '2026-12-06T06:01:00+00:00')}
    monkeypatch.setattr(base, '_MAX_KEYS', 2)
    monkeypatch.setattr(base, '_MAX_INSTANTS', 1)
    base._key_halves.clear()
    base._instant_halves.clear()
    for (meter, resource, timestamp), expected in made.items():
        assert base.polled_sample_id(meter, resource, timestamp) == expected
    assert len(base._key_halves) <= 2 and len(base._instant_halves) <= 1
    assert len(set(made.values())) == len(made)


def test_polled_sample_id_never_equals_a_notification_sample_id():
    ts = '2026-12-06T06:00:00+00:00'
    polled = uuid.UUID(base.polled_sample_id('cpu', 'host1', ts))
    notified = uuid.UUID(sample.sample_id('msg', 'cpu', 'host1'))
    assert (polled.version, notified.version) == (8, 5)


class Constant(base.Pollster):
    meter_type = sample.TYPE_CUMULATIVE
    unit = 'ns'

    def get_samples(self, context, cache, resources):
        for resource in resources:
            yield self.make_sample(context, resource, 7)


def test_make_sample_carries_meter_type_unit_and_id():
    pollster = Constant(conf=None)
    pollster.meter = 'cpu'
    context = base.PollingContext(None, 'h', 'src', '2026-12-06T06:00:00',
                                  'openstack')
    [made] = pollster.get_samples(context, {}, ['r'])
    assert (made.name, made.type, made.unit, made.volume) == (
        'cpu', 'cumulative', 'ns', 7)
    assert made.source == 'openstack' and made.resource_id == 'r'
    assert made.id == base.polled_sample_id('cpu', 'r', context.timestamp)


def test_resource_key():
    assert base.resource_key({'id': 5, 'name': 'x'}) == '5'
    assert base.resource_key('abc') == 'abc'


def test_cycle_stamp_is_the_iso_text_of_the_tick_and_its_id_instant(
        monkeypatch):
    # Whole seconds (the fast path) and fractions, in and out of the
    # cache of instants.
    for epoch in (0.0, 1_800_000_000.0, 1_800_000_060.0, 1_800_000_000.5,
                  1_800_000_000.000001, 951_782_400.0, 253_402_300_799.0):
        text = datetime.datetime.fromtimestamp(
            epoch, datetime.UTC).isoformat()
        monkeypatch.setattr(base, '_instant_halves', {})
        stamp = base.cycle_stamp(epoch)
        monkeypatch.setattr(base, '_instant_halves', {})
        assert stamp == (text, base.polled_id_instant(text)), epoch
        assert base.cycle_stamp(epoch) == stamp


def test_a_context_carries_the_id_instant_of_its_timestamp():
    context = base.PollingContext(None, 'h', 'src',
                                  '2026-12-06T06:00:00+00:00')
    assert context.id_instant == base.polled_id_instant(context.timestamp)
    assert (context.id_instant + base.polled_id_key('cpu', 'h')
            == base.polled_sample_id('cpu', 'h', context.timestamp))
