"""Host pollsters: real values of this machine, Ceilometer's types and
units, counters that never go backwards."""

import types

import psutil
import pytest

from calipso_agent.pollsters import base, host
from tests.helpers.basics import make_conf

EXPECTED = {
    'cpu': ('cumulative', 'ns', host.CPUPollster),
    'cpu_util': ('gauge', '%', host.CPUUtilPollster),
    'memory.usage': ('gauge', 'MB', host.MemoryUsagePollster),
    'memory.total': ('gauge', 'MB', host.MemoryTotalPollster),
    'disk.usage': ('gauge', 'B', host.DiskUsagePollster),
    'disk.read.bytes': ('cumulative', 'B', host.DiskReadBytesPollster),
    'disk.write.bytes': ('cumulative', 'B', host.DiskWriteBytesPollster),
    'network.incoming.bytes': ('cumulative', 'B',
                               host.IncomingBytesPollster),
    'network.outgoing.bytes': ('cumulative', 'B',
                               host.OutgoingBytesPollster),
    'network.incoming.packets': ('cumulative', 'packet',
                                 host.IncomingPacketsPollster),
    'network.outgoing.packets': ('cumulative', 'packet',
                                 host.OutgoingPacketsPollster),
    'load.1': ('gauge', 'process', host.Load1Pollster),
    'load.5': ('gauge', 'process', host.Load5Pollster),
    'load.15': ('gauge', 'process', host.Load15Pollster),
}
HOST = 'poller-1'


def make_pollsters():
    """{meter: pollster} of every host meter, as the agent loads them."""
    conf = make_conf(host=HOST)
    made = {}
    for meter, (_, _, cls) in EXPECTED.items():
        made[meter] = cls(conf)
        made[meter].meter = meter
    return made


@pytest.fixture
def pollsters():
    return make_pollsters()


def kept(pollster, reading):
    """The names of ``reading`` that ``pollster`` does not leave out."""
    return {name for name in reading or {}
            if pollster.exclude is None or not pollster.exclude.left_out(name)}


def cycle(pollsters, second=0):
    """{meter: [samples]} of one cycle sharing one cache, as the agent
    runs it."""
    context = base.PollingContext(None, HOST, 'host_source',
                                  f'2026-12-06T06:00:{second:02d}+00:00')
    [resource] = host.LocalHostDiscovery(None).discover(context)
    cache = {}
    return {meter: list(p.get_samples(context, cache, [resource]))
            for meter, p in pollsters.items()}


def test_types_units_and_resource_ids(pollsters):
    samples = cycle(pollsters)
    for meter, (kind, unit, _) in EXPECTED.items():
        assert samples[meter], meter
        for item in samples[meter]:
            assert (item.name, item.type, item.unit) == (meter, kind, unit)
            assert isinstance(item.volume, (int, float)), meter
            assert item.volume >= 0, meter
            assert item.id == base.polled_sample_id(
                meter, item.resource_id, item.timestamp)
    for meter in ('cpu', 'cpu_util', 'memory.usage', 'load.1'):
        assert [s.resource_id for s in samples[meter]] == [HOST]
    interfaces = set(psutil.net_io_counters(pernic=True))
    assert {s.resource_id for s in samples['network.incoming.bytes']} == {
        f'{HOST}-{name}' for name in interfaces}
    devices = kept(pollsters['disk.read.bytes'],
                   psutil.disk_io_counters(perdisk=True))
    assert devices
    assert {s.resource_id for s in samples['disk.read.bytes']} == {
        f'{HOST}-{name}' for name in devices}
    assert {s.resource_metadata['interface']
            for s in samples['network.outgoing.packets']} == interfaces


def test_values_are_this_machines(pollsters):
    samples = cycle(pollsters)
    memory = psutil.virtual_memory()
    [total] = samples['memory.total']
    assert total.volume == round(memory.total / host.MB, 2)
    [used] = samples['memory.usage']
    assert 0 < used.volume < total.volume
    [disk] = samples['disk.usage']
    assert abs(disk.volume - psutil.disk_usage('/').used) < 1024 ** 3
    [load] = samples['load.15']
    assert load.volume == pytest.approx(psutil.getloadavg()[2], abs=0.5)
    [cpu] = samples['cpu']
    busy = sum(psutil.cpu_times()) - psutil.cpu_times().idle
    assert 0 < cpu.volume <= busy * host.NS
    [util] = samples['cpu_util']
    assert 0 <= util.volume <= 100
    lo = {s.resource_metadata['interface']: s.volume
          for s in samples['network.incoming.bytes']}
    counters = psutil.net_io_counters(pernic=True)
    for name, volume in lo.items():
        assert volume <= counters[name].bytes_recv


def test_cumulative_counters_never_go_backwards(pollsters):
    previous = {}
    # Traffic and disk writes between cycles so the counters move.
    for second in range(4):
        samples = cycle(pollsters, second)
        psutil.net_io_counters(pernic=True)
        for meter, (kind, _, _) in EXPECTED.items():
            if kind != 'cumulative':
                continue
            for item in samples[meter]:
                key = (meter, item.resource_id)
                assert item.volume >= previous.get(key, 0), key
                previous[key] = item.volume
    assert previous


PSUTIL_CALLS = ('cpu_times', 'virtual_memory', 'disk_usage',
                'disk_io_counters', 'net_io_counters', 'getloadavg')


@pytest.fixture
def psutil_calls(monkeypatch):
    """The names of the psutil calls made, in order."""
    calls = []
    for name in PSUTIL_CALLS:
        real = getattr(psutil, name)

        def counting(*args, _real=real, _name=name, **kwargs):
            calls.append(_name)
            return _real(*args, **kwargs)
        monkeypatch.setattr(psutil, name, counting)
    return calls


def test_one_psutil_reading_per_cycle(pollsters, psutil_calls):
    cycle(pollsters)
    assert sorted(psutil_calls) == sorted(PSUTIL_CALLS)


def test_the_readings_a_cycle_declares_are_taken_together(pollsters,
                                                          psutil_calls):
    context = base.PollingContext(None, HOST, 'host_source',
                                  '2026-12-06T06:00:00+00:00')
    cache = {base.CYCLE_READINGS: frozenset(
        name for p in pollsters.values() for name in p.reads)}
    pollsters['load.1'].get_samples(context, cache, [HOST])
    # The first pollster's question took every reading of the cycle...
    assert sorted(psutil_calls) == sorted(PSUTIL_CALLS)
    for meter, pollster in pollsters.items():
        assert pollster.get_samples(context, cache, [HOST]), meter
    # ...and the others asked for none again.
    assert len(psutil_calls) == len(PSUTIL_CALLS)


def test_a_cycle_takes_only_the_readings_its_pollsters_declare(
        pollsters, psutil_calls):
    context = base.PollingContext(None, HOST, 'host_source',
                                  '2026-12-06T06:00:00+00:00')
    chosen = [pollsters[m] for m in ('cpu', 'cpu_util', 'memory.total')]
    cache = {base.CYCLE_READINGS: frozenset(
        name for p in chosen for name in p.reads)}
    for pollster in chosen:
        assert pollster.get_samples(context, cache, [HOST])
    assert psutil_calls == ['cpu_times', 'virtual_memory']


def test_counter_ids_and_resources_stay_right_when_known_names_overflow(
        pollsters):
    interfaces = set(psutil.net_io_counters(pernic=True))
    pollster = pollsters['network.incoming.bytes']
    pollster.max_known = 1
    for second in range(3):
        samples = cycle(pollsters, second)['network.incoming.bytes']
        assert {s.resource_id for s in samples} == {
            f'{HOST}-{name}' for name in interfaces}
        for item in samples:
            assert item.id == base.polled_sample_id(
                'network.incoming.bytes', item.resource_id, item.timestamp)
            assert item.resource_metadata == {
                'host': HOST, 'interface': item.resource_id[len(HOST) + 1:]}
        assert len(pollster._known[HOST]) <= 1


def test_counter_samples_of_two_hosts_keep_their_own_resource_ids(pollsters):
    context = base.PollingContext(None, HOST, 'host_source',
                                  '2026-12-06T06:00:00+00:00')
    pollster = pollsters['disk.read.bytes']
    cache = {}
    samples = pollster.get_samples(context, cache, [HOST, 'other'])
    devices = kept(pollster, psutil.disk_io_counters(perdisk=True))
    assert {(s.resource_metadata['host'], s.resource_id) for s in samples} == {
        (h, f'{h}-{d}') for h in (HOST, 'other') for d in devices}
    assert all(s.id == base.polled_sample_id('disk.read.bytes', s.resource_id,
                                             s.timestamp) for s in samples)


DEVICES = ('loop0', 'loop12', 'ram0', 'zram0', 'fd0', 'sda', 'sda1', 'vda',
           'vda2', 'xvdb', 'xvdb3', 'nvme0n1', 'nvme0n1p1', 'dm-0', 'md127')


def polled_names(monkeypatch, cls, reading, names, **options):
    counters = types.SimpleNamespace(
        read_bytes=1, write_bytes=2, bytes_recv=3, bytes_sent=4,
        packets_recv=5, packets_sent=6)
    monkeypatch.setattr(psutil, reading,
                        lambda **kwargs: dict.fromkeys(names, counters))
    conf = make_conf(host=HOST, **{f'host_pollsters__{k}': v
                                   for k, v in options.items()})
    pollster = cls(conf)
    pollster.meter = 'm'
    context = base.PollingContext(None, HOST, 'host_source',
                                  '2026-12-06T06:00:00+00:00')
    return [s.resource_metadata[pollster.kind]
            for s in pollster.get_samples(context, {}, [HOST])]


def test_disks_leave_out_ram_loop_and_partitions_by_default(monkeypatch):
    assert polled_names(monkeypatch, host.DiskReadBytesPollster,
                        'disk_io_counters', DEVICES) == [
        'dm-0', 'md127', 'nvme0n1', 'sda', 'vda', 'xvdb']


def test_an_empty_pattern_polls_every_device(monkeypatch):
    assert polled_names(monkeypatch, host.DiskWriteBytesPollster,
                        'disk_io_counters', DEVICES,
                        disk_exclude='') == sorted(DEVICES)


def test_interfaces_are_all_polled_unless_excluded(monkeypatch):
    names = ('lo', 'eth0', 'veth1a2b', 'br-int')
    assert polled_names(monkeypatch, host.IncomingBytesPollster,
                        'net_io_counters', names) == sorted(names)
    assert polled_names(monkeypatch, host.OutgoingPacketsPollster,
                        'net_io_counters', names,
                        interface_exclude='^(lo|veth.*)$') == [
        'br-int', 'eth0']


def test_a_broken_pattern_is_refused_with_the_option_named():
    conf = make_conf(host=HOST, host_pollsters__disk_exclude='(loop')
    with pytest.raises(ValueError, match=r'\[host_pollsters\] disk_exclude'):
        host.DiskReadBytesPollster(conf)


class PrefixPattern:
    """A pattern finding ``prefix`` at the start of names; keeps the
    names it searched."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.searched = []

    def search(self, name):
        self.searched.append(name)
        return name.startswith(self.prefix)


def test_a_name_filter_decides_each_name_once_and_forgets_when_full():
    pattern = PrefixPattern('veth')
    searched = pattern.searched
    name_filter = host.NameFilter(pattern)
    name_filter.max_known = 3
    for _ in range(3):
        assert [n for n in ('eth0', 'veth1', 'lo')
                if not name_filter.left_out(n)] == ['eth0', 'lo']
    assert searched == ['eth0', 'veth1', 'lo']
    assert name_filter.left_out('veth2')
    assert not name_filter.left_out('eth0')
    assert searched == ['eth0', 'veth1', 'lo', 'veth2', 'eth0']


def test_a_name_filter_sorts_the_names_kept_again_only_when_they_change():
    pattern = PrefixPattern('loop')
    searched = pattern.searched
    name_filter = host.NameFilter(pattern)
    assert name_filter.kept({'vda': 1, 'loop0': 2, 'sda': 3}) == [
        'sda', 'vda']
    first = name_filter.kept(['vda', 'loop0', 'sda'])
    assert first == ['sda', 'vda']
    assert name_filter.kept(['vda', 'loop0', 'sda']) is first
    assert name_filter.kept(['vda', 'loop0', 'sdb', 'sda']) == [
        'sda', 'sdb', 'vda']
    assert name_filter.kept([]) == []
    assert searched == ['vda', 'loop0', 'sda', 'sdb']


def test_host_pollsters_share_one_step_group():
    assert {cls.step_group for _, _, cls in EXPECTED.values()} == {'host'}


def group_cycle(pollsters, cache):
    context = base.PollingContext(None, HOST, 'host_source',
                                  '2026-12-06T06:00:00+00:00')
    failed = []
    members = list(pollsters.values())
    samples = members[0].get_group_samples(members, context, cache, [HOST],
                                           failed)
    return samples, failed


def test_the_group_makes_what_each_pollster_makes_in_one_pass():
    taken = host.HostSnapshot()
    taken.take(frozenset(name for name, _ in host.READERS))
    context = base.PollingContext(None, HOST, 'host_source',
                                  '2026-12-06T06:00:00+00:00')
    one_by_one = [s.as_dict() for p in make_pollsters().values()
                  for s in p.get_samples(context, {host.SNAPSHOT_KEY: taken},
                                         [HOST])]
    grouped, failed = group_cycle(make_pollsters(),
                                  {host.SNAPSHOT_KEY: taken})
    assert failed == []
    assert [s.as_dict() for s in grouped] == one_by_one
    assert len({s['id'] for s in one_by_one}) == len(one_by_one) > 14


def test_a_pollster_failing_in_the_group_fails_alone(monkeypatch):
    pollsters = make_pollsters()
    incoming = pollsters['network.incoming.bytes']

    def half_then_fail(samples, readings, context, hosts):
        type(incoming).add_samples(incoming, samples, readings, context,
                                   hosts)
        raise RuntimeError('broken on purpose')
    monkeypatch.setattr(incoming, 'add_samples', half_then_fail)
    samples, failed = group_cycle(pollsters, {})
    assert [(p.meter, str(e)) for p, e in failed] == [
        ('network.incoming.bytes', 'broken on purpose')]
    made = {s.name for s in samples}
    assert made == set(EXPECTED) - {'network.incoming.bytes'}


def test_a_failing_reading_fails_only_the_pollsters_reading_it(monkeypatch):
    def refused():
        raise OSError('no load average here')
    monkeypatch.setattr(psutil, 'getloadavg', refused)
    pollsters = make_pollsters()
    cache = {base.CYCLE_READINGS: frozenset(
        name for p in pollsters.values() for name in p.reads)}
    samples, failed = group_cycle(pollsters, cache)
    assert sorted(p.meter for p, _ in failed) == ['load.1', 'load.15',
                                                  'load.5']
    assert all(isinstance(e, OSError) for _, e in failed)
    assert {s.name for s in samples} == set(EXPECTED) - {
        'load.1', 'load.5', 'load.15'}
