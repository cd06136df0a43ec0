"""The compute pollsters against libvirt's own test driver: a node XML
written by the test, read through libvirt-python (no mock)."""

import libvirt
import pytest
from stevedore import driver

from calipso_agent.pollsters import base
from tests.helpers import basics
from tests.helpers.libvirt_node import SHUTOFF, Instance, write_node

METERS = ('cpu', 'memory.usage', 'disk.device.read.bytes',
          'disk.device.write.bytes', 'network.incoming.bytes',
          'network.outgoing.bytes')
NAMESPACE = 'calipso.poll.compute'


@pytest.fixture
def node(tmp_path):
    instances = [
        Instance(0x2a, display_name='web-1', project_id='p-1',
                 user_id='u-1', flavor='m1.large', vcpus=4, ram_mb=2048,
                 disks=('vda', 'vdb'),
                 taps=('tap0a1b2c3d-4e', 'tap5f6a7b8c-9d')),
        Instance(0x2b, display_name='db-1', project_id='p-2',
                 user_id='u-2', taps=('tapaaaabbbb-cc',)),
        Instance(0x2c, display_name='stopped', state=SHUTOFF),
        Instance(0x2d, nova=False),
    ]
    uri = write_node(tmp_path, instances)
    conf = basics.make_conf(compute__libvirt_uri=uri)
    return conf, uri, {i.id: i for i in instances}


def context(conf, timestamp='2026-12-06T06:00:00+00:00'):
    return base.PollingContext(conf, 'compute-1', 'compute_source',
                               timestamp, sample_source='cloud-1')


def plugin(namespace, name, conf):
    loaded = driver.DriverManager(namespace, name,
                                  invoke_on_load=True,
                                  invoke_args=(conf,)).driver
    loaded.meter = name
    return loaded


def discover(conf):
    return plugin(base.DISCOVER_NAMESPACE, 'local_instances',
                  conf).discover(context(conf))


def poll(conf, resources, meters=METERS, cache=None, ctx=None):
    cache = {} if cache is None else cache
    ctx = ctx or context(conf)
    return {name: list(plugin(NAMESPACE, name, conf).get_samples(
        ctx, cache, resources)) for name in meters}


def test_discovery_lists_the_nova_instances(node):
    conf, _, instances = node
    found = {i['id']: i for i in discover(conf)}
    nova = {k for k, v in instances.items() if v.nova}
    assert set(found) == nova
    web = next(i for i in instances.values() if i.display_name == 'web-1')
    got = found[web.id]
    assert got['name'] == 'instance-0000002a'
    assert got['display_name'] == 'web-1'
    assert (got['project_id'], got['user_id']) == ('p-1', 'u-1')
    assert got['flavor'] == {'name': 'm1.large', 'vcpus': 4, 'ram': 2048,
                             'disk': 1, 'ephemeral': 0, 'swap': 0}
    assert got['disks'] == ['vda', 'vdb']
    assert [v['name'] for v in got['vnics']] == ['tap0a1b2c3d-4e',
                                                 'tap5f6a7b8c-9d']
    assert got['host'] == 'compute-1'


def test_samples_of_each_meter(node):
    conf, uri, instances = node
    resources = discover(conf)
    libvirt_conn = libvirt.openReadOnly(uri)
    before = {i: libvirt_conn.lookupByUUIDString(i).info()[4]
              for i in instances if instances[i].nova}
    samples = poll(conf, resources)
    after = {i: libvirt_conn.lookupByUUIDString(i).info()[4]
             for i in instances if instances[i].nova}
    running = {i for i, v in instances.items()
               if v.nova and v.state != SHUTOFF}

    cpu = {s.resource_id: s for s in samples['cpu']}
    assert set(cpu) == running
    for rid, made in cpu.items():
        assert (made.type, made.unit) == ('cumulative', 'ns')
        assert before[rid] <= made.volume <= after[rid]
        assert made.project_id == instances[rid].project_id
        assert made.user_id == instances[rid].user_id
        assert made.resource_metadata['display_name'] == \
            instances[rid].display_name
        assert made.resource_metadata['instance_type'] == \
            instances[rid].flavor
        assert made.resource_metadata['cpu_number'] == instances[rid].vcpus
        assert made.source == 'cloud-1'
        assert made.id == base.polled_sample_id('cpu', rid,
                                                made.timestamp)

    memory = {s.resource_id: s for s in samples['memory.usage']}
    assert set(memory) == running
    for rid, made in memory.items():
        assert (made.type, made.unit) == ('gauge', 'MB')
        # The test driver has no balloon statistics: the memory held.
        held = libvirt_conn.lookupByUUIDString(rid).info()[2] / 1024
        assert made.volume == held == instances[rid].ram_mb


@pytest.mark.parametrize('meter, position', [
    ('disk.device.read.bytes', 1), ('disk.device.write.bytes', 3)])
def test_disk_samples_per_device(node, meter, position):
    conf, uri, instances = node
    resources = discover(conf)
    libvirt_conn = libvirt.openReadOnly(uri)

    def read_all():
        return {f'{i}-{dev}': libvirt_conn.lookupByUUIDString(
            i).blockStats(dev)[position]
            for i, v in instances.items() if v.nova and v.state != SHUTOFF
            for dev in v.disks}
    before = read_all()
    made = {s.resource_id: s for s in poll(conf, resources, [meter])[meter]}
    after = read_all()
    assert set(made) == set(before)
    for rid, sample in made.items():
        assert (sample.type, sample.unit) == ('cumulative', 'B')
        assert before[rid] <= sample.volume <= after[rid]
        assert sample.resource_metadata['disk_name'] == rid.rsplit('-')[-1]


@pytest.mark.parametrize('meter, position', [
    ('network.incoming.bytes', 0), ('network.outgoing.bytes', 4)])
def test_network_samples_per_vnic(node, meter, position):
    conf, uri, instances = node
    resources = discover(conf)
    libvirt_conn = libvirt.openReadOnly(uri)

    def read_all():
        return {f'{v.name}-{i}-{tap}': libvirt_conn.lookupByUUIDString(
            i).interfaceStats(tap)[position]
            for i, v in instances.items() if v.nova and v.state != SHUTOFF
            for tap in v.taps}
    before = read_all()
    made = {s.resource_id: s for s in poll(conf, resources, [meter])[meter]}
    after = read_all()
    # Ceilometer's vNIC ids: <libvirt name>-<instance id>-<tap>.
    assert set(made) == set(before) and len(made) == 3
    for rid, sample in made.items():
        assert (sample.type, sample.unit) == ('cumulative', 'B')
        assert before[rid] <= sample.volume <= after[rid]
        assert rid.endswith('-' + sample.resource_metadata['vnic_name'])
        assert sample.resource_metadata['instance_id'] in rid


def test_cumulative_counters_never_go_backwards(node):
    conf, _, _ = node
    resources = discover(conf)
    cumulative = [m for m in METERS if m != 'memory.usage']
    first = poll(conf, resources, cumulative)
    second = poll(conf, resources, cumulative,
                  ctx=context(conf, '2026-12-06T06:00:10+00:00'))
    for meter in cumulative:
        earlier = {s.resource_id: s.volume for s in first[meter]}
        later = {s.resource_id: s.volume for s in second[meter]}
        assert set(earlier) == set(later) and earlier
        for rid, volume in later.items():
            assert volume >= earlier[rid], (meter, rid)


def test_one_cycle_reads_each_counter_once(node):
    conf, _, _ = node
    resources = discover(conf)
    cache = {}
    ctx = context(conf)
    read = plugin(NAMESPACE, 'disk.device.read.bytes', conf)
    first = list(read.get_samples(ctx, cache, resources))
    again = list(read.get_samples(ctx, cache, resources))
    assert [s.volume for s in first] == [s.volume for s in again]
    assert [s.id for s in first] == [s.id for s in again]


def test_an_instance_gone_since_the_discovery_is_skipped(node):
    conf, _, instances = node
    resources = discover(conf)
    gone = dict(resources[0], id='00000000-0000-0000-0000-000000000000')
    samples = poll(conf, [gone] + resources[1:], ['cpu'])['cpu']
    assert {s.resource_id for s in samples} == {
        r['id'] for r in resources[1:]
        if instances[r['id']].state != SHUTOFF}


def test_an_unreachable_libvirt_is_a_pollster_error(tmp_path):
    conf = basics.make_conf(
        compute__libvirt_uri=f'test://{tmp_path}/missing.xml')
    with pytest.raises(base.PollsterError, match='cannot connect'):
        discover(conf)


def test_the_agent_loads_the_instances_cpu_beside_the_hosts():
    from calipso_agent.pollsters import manager
    assert 'calipso.poll.compute' in manager.pollster_namespaces()
    pollsters = manager.load_pollsters(basics.make_conf())
    discoveries = {p.default_discovery for p in pollsters
                   if p.meter == 'cpu'}
    assert {'local_host', 'local_instances'} <= discoveries
    assert all(p.meter for p in pollsters)
