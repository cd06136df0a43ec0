"""The pollster contract's helpers."""

import uuid

from calipso_agent import sample
from calipso_agent.pollsters import base


def test_polled_sample_id_is_deterministic_per_meter_resource_instant():
    ts = '2026-12-06T06:00:00+00:00'
    first = base.polled_sample_id('cpu', 'host1', ts)
    assert first == base.polled_sample_id('cpu', 'host1', ts)
    assert uuid.UUID(first).version == 5
    others = {base.polled_sample_id('cpu', 'host2', ts),
              base.polled_sample_id('load.1', 'host1', ts),
              base.polled_sample_id('cpu', 'host1',
                                    '2026-12-06T06:00:10+00:00')}
    assert first not in others and len(others) == 3


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
