"""The CORD vSG code endpoint, on the vcpe fixtures."""

import pytest

from calipso_agent.notification import base, vsg
from tests.helpers import basics, fixtures


@pytest.fixture
def endpoint():
    return vsg.VsgEndpoint(basics.make_conf())


def samples_of(endpoint, fixture):
    _, notification = base.from_envelope(fixtures.load_envelope(fixture))
    assert endpoint.handles(notification['event_type'])
    return endpoint.process_notification(notification)


def test_compute_stats_per_interface(endpoint):
    samples = samples_of(endpoint,
                         'vcpe__cord-constructed__compute-stats-full')
    got = {(s.name, s.resource_id): (s.type, s.unit, s.volume)
           for s in samples}
    assert got == {
        ('cpu_util', 'vcpe-222-432'): ('gauge', '%', 0.72),
        ('memory', 'vcpe-222-432'): ('gauge', 'MB', 1955.0),
        ('memory.usage', 'vcpe-222-432'): ('gauge', 'MB', 11.37),
        ('network.incoming.bytes', 'vcpe-222-432-eth0'):
            ('cumulative', 'B', 1385914.0),
        ('network.incoming.packets', 'vcpe-222-432-eth0'):
            ('cumulative', 'packet', 20186.0),
        ('network.outgoing.bytes', 'vcpe-222-432-eth0'):
            ('cumulative', 'B', 648.0),
        ('network.outgoing.packets', 'vcpe-222-432-eth0'):
            ('cumulative', 'packet', 8.0),
        ('network.incoming.bytes', 'vcpe-222-432-eth1'):
            ('cumulative', 'B', 5112906.0),
        ('network.incoming.packets', 'vcpe-222-432-eth1'):
            ('cumulative', 'packet', 40221.0),
        ('network.outgoing.bytes', 'vcpe-222-432-eth1'):
            ('cumulative', 'B', 2390772.0),
        ('network.outgoing.packets', 'vcpe-222-432-eth1'):
            ('cumulative', 'packet', 19837.0),
    }
    sample = samples[0]
    assert sample.project_id == '3a397e70f64e4e40b69b6266c634d9d0'
    assert sample.user_id == '1e3ce043029547f1a61c1996d1a531a2'
    assert sample.timestamp == '2017-06-01T10:00:02.002000+00:00'
    assert sample.resource_metadata['host'] == (
        'vcpe_publisher_on_cord-compute-1')
    assert sample.resource_metadata['event_type'] == 'vcpe.compute.stats'
    assert len({s.id for s in samples}) == len(samples)


def test_compute_stats_partial_payloads(endpoint):
    net_only = samples_of(endpoint,
                          'vcpe__cord-constructed__compute-stats-net-only')
    assert net_only and all(s.name.startswith('network.') for s in net_only)
    cpu_mem = samples_of(endpoint,
                         'vcpe__cord-constructed__compute-stats-cpu-mem')
    assert {s.name for s in cpu_mem} == {'cpu_util', 'memory',
                                         'memory.usage'}


@pytest.mark.parametrize('fixture,expected', [
    ('vcpe__cord-sample-publisher__vcpe',
     ('vsg', 'gauge', 'vsg', 1.0, 'vcpe-222-432')),
    ('vcpe__cord-sample-publisher__vcpe-dns-cache-size',
     ('vsg.dns.cache.size', 'gauge', 'entries', 150.0, 'vcpe-222-432')),
    ('vcpe__cord-constructed__dns-queries-forwarded',
     ('vsg.dns.queries_forwarded', 'cumulative', 'queries', 2703.0,
      'vcpe-222-432')),
    ('vcpe__cord-constructed__dns-server-queries-failed',
     ('vsg.dns.server.queries_failed', 'cumulative', 'queries', 3.0,
      'vcpe-222-432-8.8.4.4')),
    ('vcpe__cord-constructed__dns-total-instered-entries',
     ('vsg.dns.total_instered_entries', 'cumulative', 'entries', 1834.0,
      'vcpe-222-432')),
    ('vcpe__cord-constructed__dns-total-inserted-entries-as-sent',
     ('vsg.dns.total_instered_entries', 'cumulative', 'entries', 1834.0,
      'vcpe-222-432')),
])
def test_single_sample_events(endpoint, fixture, expected):
    (sample,) = samples_of(endpoint, fixture)
    assert (sample.name, sample.type, sample.unit, sample.volume,
            sample.resource_id) == expected


def test_not_vsg_events_are_not_handled(endpoint):
    assert not endpoint.handles('compute.instance.exists')
    assert not endpoint.handles('vcpex')


@pytest.mark.parametrize('payload,reason', [
    ('not a dict', 'payload is not an object'),
    ({'cache_size': 1}, 'payload has no vcpe_id'),
    ({'vcpe_id': 'v', 'cache_size': 'many'}, 'is not a number'),
])
def test_bad_payloads_raise_a_clear_error(endpoint, payload, reason):
    notification = {'event_type': 'vcpe.dns.cache.size', 'payload': payload,
                    'metadata': {'message_id': 'm', 'timestamp': 'x'}}
    with pytest.raises(base.NotificationError, match=reason):
        endpoint.process_notification(notification)


def test_bad_interface_entries(endpoint):
    notification = {'event_type': 'vcpe.compute.stats',
                    'payload': {'vcpe_id': 'v', 'network_stats': [3]},
                    'metadata': {'timestamp': '2020-01-01T00:00:00'}}
    with pytest.raises(base.NotificationError, match='not an object'):
        endpoint.process_notification(notification)
