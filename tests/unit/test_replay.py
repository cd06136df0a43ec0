"""calipso_agent.replay: envelopes, exchanges and pacing."""

import json
import os

import pytest

from calipso_agent import replay
from tests.helpers import fixtures


@pytest.mark.parametrize('event_type, publisher_id, exchange', [
    ('compute.instance.create.end', 'compute.host1', 'nova'),
    ('instance.update', 'nova-compute:host1', 'nova'),
    ('port.create.end', 'network.host1', 'neutron'),
    ('floatingip.update.end', '', 'neutron'),
    ('volume.attach.end', 'volumes.example.com', 'cinder'),
    ('snapshot.create.end', 'snapshot.dev', 'cinder'),
    ('image.upload', 'images.example.com', 'glance'),
    ('vcpe.compute.stats', 'vcpe_publisher', 'vcpeservice'),
    ('identity.authenticate', 'identity.node', 'keystone'),
    ('something.new', 'neutron-server:host', 'neutron'),
    ('something.new', 'unknown.host', 'openstack'),
])
def test_exchange_of_the_sending_service(event_type, publisher_id,
                                         exchange):
    assert replay.exchange_for({'event_type': event_type,
                                'publisher_id': publisher_id}) == exchange


def test_every_fixture_is_an_envelope_of_a_known_service():
    files = replay.envelope_files([fixtures.NOTIFICATIONS])
    assert len(files) == len([n for n in os.listdir(fixtures.NOTIFICATIONS)
                              if n.endswith('.json')])
    assert files == sorted(files)
    for path in files:
        envelope = replay.read_envelope(path)
        family = os.path.basename(path).split('__')[0]
        if family in ('nova_legacy', 'nova_versioned', 'neutron', 'cinder',
                      'glance', 'vcpe'):
            assert replay.exchange_for(envelope) == {
                'nova_legacy': 'nova', 'nova_versioned': 'nova',
                'vcpe': 'vcpeservice'}.get(family, family), path


@pytest.mark.parametrize('content, reason', [
    ('{not json', 'cannot read'),
    ('[1, 2]', 'not a JSON object'),
    ('{"payload": {}}', 'no event_type'),
    ('{"event_type": "a.b"}', 'no payload'),
    ('{"event_type": "a", "payload": {}, "priority": "loud"}',
     "unknown priority 'loud'"),
])
def test_bad_envelope_says_why(tmp_path, content, reason):
    path = tmp_path / 'bad.json'
    path.write_text(content)
    with pytest.raises(replay.EnvelopeError, match=reason) as info:
        replay.read_envelope(str(path))
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(replay.EnvelopeError, match='cannot read'):
        replay.read_envelope(str(tmp_path / 'none.json'))


def test_directory_and_files_mixed(tmp_path):
    for name in ('b.json', 'a.json', 'notes.txt', 'manifest.json'):
        (tmp_path / name).write_text(json.dumps(
            {'event_type': 'x', 'payload': {}}))
    single = tmp_path / 'notes.txt'
    assert replay.envelope_files([str(tmp_path), str(single)]) == [
        str(tmp_path / 'a.json'), str(tmp_path / 'b.json'), str(single)]


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.slept = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(round(seconds, 6))
        self.now += seconds


def test_pacer_spaces_sends():
    clock = FakeClock()
    pacer = replay.Pacer(4, clock=clock.clock, sleep=clock.sleep)
    for _ in range(5):
        pacer.wait()
    assert clock.slept == [0.25, 0.25, 0.25, 0.25]


def test_pacer_does_not_catch_up_after_a_stall():
    clock = FakeClock()
    pacer = replay.Pacer(10, clock=clock.clock, sleep=clock.sleep)
    pacer.wait()
    clock.now += 5
    pacer.wait()
    pacer.wait()
    assert clock.slept == [0.1]


def test_pacer_without_rate_never_sleeps():
    clock = FakeClock()
    pacer = replay.Pacer(0, clock=clock.clock, sleep=clock.sleep)
    for _ in range(3):
        pacer.wait()
    assert clock.slept == []


@pytest.mark.parametrize('timestamp, kept', [
    ('2015-09-24 12:47:27.634363', '2015-09-24T12:47:27.634363'),
    ('2024-05-01T12:00:00Z', '2024-05-01T12:00:00'),
    ('2024-05-01T14:00:00+02:00', '2024-05-01T12:00:00'),
    ('2015-09-24 12:47:.634363', None),
    ('', None),
    (None, None),
])
def test_kept_time_of_an_envelope(timestamp, kept):
    stamp = replay.kept_time({'timestamp': timestamp})
    assert (stamp.isoformat() if stamp else None) == kept


def test_every_fixture_timestamp_but_the_broken_ones_is_kept():
    """The fixtures' own timestamps, as ``--keep-timestamps`` sends them;
    the five broken ones of the shared set (as their services sent them)
    are sent with the current time instead of failing the replay."""
    unkept = [name for name in fixtures.fixture_names()
              if replay.kept_time(fixtures.load_envelope(name)) is None]
    assert unkept == [
        'glance__searchlight__image-member-create',
        'glance__searchlight__image-member-delete',
        'neutron__ceilometer-tests__bulk_network_create',
        'neutron__ceilometer-tests__bulk_port_create',
        'neutron__ceilometer-tests__bulk_subnet_create']
