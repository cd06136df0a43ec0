"""The storage contract: one suite every storage driver passes.

Instantiate it in a test module with::

    from tests.storage_contract import *  # noqa: F401,F403

and two fixtures there:

* ``connection_factory`` (module or session scope): a callable returning a
  fresh, upgraded, empty ``base.Connection`` each time it is called (the
  property tests call it once per example), with a ``broken()`` method
  returning a connection of the same driver to a store that fails;
* ``connection``: ``connection_factory()`` for one test.

The expectations are those of ``calipso_agent/storage/base.py`` (the
docstrings) and ``query.py`` (``validate`` and ``matches`` are the reference
semantics). Deterministic tests pin literal answers; property tests compare
every driver with the plain-Python reference of ``tests/helpers/``.
"""

import datetime
import math
import os

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from calipso_agent import inventory as inventory_mod
from calipso_agent import sample as sample_mod
from calipso_agent.storage import base, query
from tests.helpers import inventory as inventory_helpers
from tests.helpers import oracle
from tests.helpers.basics import make_sample
from tests.helpers.oracle import instant, sample_dict

UTC = datetime.UTC
T0 = datetime.datetime(2024, 5, 1, tzinfo=UTC)
MINUTE = 60
HOUR = 3600
DAY = 86400

# CALIPSO_CONTRACT_EXAMPLES: examples per property test;
# CALIPSO_CONTRACT_SHRINK=0: report the first failing example as found
# (shrinking it can take minutes on a server).
EXAMPLES = int(os.environ.get('CALIPSO_CONTRACT_EXAMPLES', '40'))
PHASES = tuple(Phase) if os.environ.get(
    'CALIPSO_CONTRACT_SHRINK', '1') != '0' else tuple(
        p for p in Phase if p not in (Phase.shrink, Phase.explain))
PROPERTY = settings(
    max_examples=EXAMPLES, deadline=None, print_blob=True, phases=PHASES,
    suppress_health_check=[HealthCheck.too_slow,
                           HealthCheck.data_too_large,
                           HealthCheck.filter_too_much,
                           HealthCheck.large_base_example])

SAMPLE_FIELDS = ('id', 'name', 'type', 'unit', 'volume', 'user_id',
                 'project_id', 'resource_id', 'timestamp',
                 'resource_metadata', 'source', 'message_id')
STAT_TIME_FIELDS = ('period_start', 'period_end', 'duration_start',
                    'duration_end')
STAT_NUMBER_FIELDS = ('count', 'min', 'max', 'avg', 'sum', 'duration',
                      'period')


# --- helpers ---------------------------------------------------------------

def at(seconds=0, microseconds=0):
    """T0 + ``seconds`` as an ISO 8601 UTC string."""
    return (T0 + datetime.timedelta(seconds=seconds,
                                    microseconds=microseconds)).isoformat()


def msg_ids(*indexes):
    """The message ids of make_sample(index) samples."""
    return {f'n-{i}' for i in indexes}


def got_msg_ids(samples):
    return {sample_dict(s)['message_id'] for s in samples}


def same_json(a, b):
    """JSON equality where 1 == 1.0 but True is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k])
                                            for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(map(same_json, a, b))
    return type(a) is type(b) and a == b


def comparable(item):
    """A sample as a dict of its stored fields, timestamps as instants."""
    data = sample_dict(item)
    out = {f: data.get(f) for f in SAMPLE_FIELDS}
    out['timestamp'] = instant(out['timestamp'])
    out['resource_metadata'] = out['resource_metadata'] or {}
    return out


def sample_differences(got, want):
    """Fields where sample ``got`` differs from the recorded ``want``."""
    got, want = comparable(got), comparable(want)
    problems = []
    for field in SAMPLE_FIELDS:
        g, w = got[field], want[field]
        if field == 'volume':
            ok = (isinstance(g, (int, float)) and not isinstance(g, bool)
                  and math.isclose(g, w, rel_tol=1e-9, abs_tol=1e-9))
        elif field == 'resource_metadata':
            ok = same_json(g, w)
        else:
            ok = g == w
        if not ok:
            problems.append(f'{field}: got {g!r}, expected {w!r}')
    return problems


def assert_samples_match(got, recorded):
    """Every returned sample equals the recorded sample of its id."""
    by_id = {s.id: s for s in recorded}
    seen = set()
    for item in got:
        sid = sample_dict(item)['id']
        assert sid not in seen, f'sample {sid} returned twice'
        seen.add(sid)
        assert sid in by_id, f'returned sample {sid} was never recorded'
        problems = sample_differences(item, by_id[sid])
        assert not problems, f'sample {sid}: {problems}'


def mapping(obj):
    """A returned record (dict or object) as a dict."""
    if isinstance(obj, dict):
        return obj
    if hasattr(obj, 'as_dict'):
        return obj.as_dict()
    return dict(vars(obj))


def rejected_reason(entry):
    """The reason of one RecordResult.rejected entry."""
    if isinstance(entry, (tuple, list)) and len(entry) == 2:
        return entry[1]
    if isinstance(entry, dict):
        return entry.get('reason')
    return getattr(entry, 'reason', entry)


def meter_names(resource):
    """The meter names of Resource.meters (names, dicts or Meters)."""
    names = set()
    for meter in resource.meters or ():
        if isinstance(meter, str):
            names.add(meter)
        elif isinstance(meter, dict):
            names.add(meter.get('name', meter.get('counter_name')))
        else:
            names.add(getattr(meter, 'name', None))
    return names


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def close(a, b, rel=1e-9, abs_=1e-9):
    return is_number(a) and math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


def check_stat(stat, **want):
    """Assert the named fields of a Statistics."""
    assert isinstance(stat, base.Statistics), stat
    got = stat.as_dict()
    for field, value in want.items():
        have = got[field]
        if field in STAT_TIME_FIELDS:
            ok = have is not None and instant(have) == instant(value)
        elif field == 'stddev' and value is not None:
            ok = close(have, value, rel=1e-6)
        elif is_number(value):
            ok = close(have, value)
        elif isinstance(value, dict) and field == 'aggregate':
            ok = (isinstance(have, dict) and have.keys() == value.keys()
                  and all(close(have[k], v, rel=1e-6) for k, v in
                          value.items()))
        elif isinstance(value, dict):
            ok = isinstance(have, dict) and same_json(have, value)
        else:
            ok = have == value
        assert ok, f'{field}: got {have!r}, expected {value!r} ({stat})'


def all_stored(connection):
    return list(connection.get_samples())


# --- the fresh store and the schema ---------------------------------------

def test_fresh_store_is_empty(connection):
    assert list(connection.get_samples()) == []
    assert list(connection.query_samples()) == []
    assert list(connection.get_meters()) == []
    assert list(connection.get_resources()) == []
    assert list(connection.get_statistics(base.SampleFilter())) == []
    assert list(connection.get_inventory()) == []
    assert list(connection.get_links()) == []
    assert list(connection.get_channels()) == []
    assert list(connection.get_subscriptions()) == []
    assert connection.get_polling_overrides() == {}


def test_ping_answers(connection):
    assert connection.ping() is None


def test_upgrade_is_idempotent_and_keeps_data(connection):
    connection.upgrade()
    said = connection.upgrade()
    assert isinstance(said, str) and 'up to date' in said
    samples = [make_sample(i, timestamp=at(i)) for i in range(3)]
    connection.record_samples(samples)
    connection.upsert_inventory([inventory_object('i-1')])
    connection.upgrade()
    assert got_msg_ids(connection.get_samples()) == msg_ids(0, 1, 2)
    assert [mapping(o)['id'] for o in connection.get_inventory()] == ['i-1']
    assert {r.resource_id for r in connection.get_resources()} == {
        'vm-0', 'vm-1', 'vm-2'}


def test_store_failure_raises_storage_error(connection_factory):
    # ``connection_factory.broken()``: a connection of the same driver to a
    # store that fails (a server that does not answer, a file that is not
    # a database); making it may raise already.
    with pytest.raises(base.StorageError):
        broken = connection_factory.broken()
        try:
            broken.record_samples([make_sample(1)])
        finally:
            broken.close()


# --- record_samples -------------------------------------------------------

def test_record_samples_returns_record_result(connection):
    samples = [make_sample(i, timestamp=at(i)) for i in range(3)]
    result = connection.record_samples(samples)
    assert isinstance(result, base.RecordResult)
    assert result.stored == 3
    assert list(result.rejected) == []
    got = all_stored(connection)
    assert len(got) == 3
    assert_samples_match(got, samples)


def test_large_batch(connection, connection_factory):
    # More rows than one SQL statement takes parameters for (PostgreSQL:
    # 65535, SQLite: 32766); ``large_batch`` on the factory lowers it for a
    # slow fake.
    size = getattr(connection_factory, 'large_batch', 5000)
    samples = [make_sample(i, resource_id=f'vm-{i % 7}',
                           timestamp=at(i, i), volume=i % 10)
               for i in range(size)]
    result = connection.record_samples(samples)
    assert (result.stored, list(result.rejected)) == (size, [])
    (stat,) = connection.get_statistics(base.SampleFilter(), aggregates=[
        'count', 'sum', ('cardinality', 'resource_id')])
    check_stat(stat, count=size, sum=sum(i % 10 for i in range(size)),
               aggregate={'count': size,
                          'sum': sum(i % 10 for i in range(size)),
                          'cardinality/resource_id': 7})
    assert len(list(connection.get_samples(limit=size + 1))) == size
    assert connection.record_samples(samples).rejected == []
    (stat,) = connection.get_statistics(base.SampleFilter())
    check_stat(stat, count=size)


def test_record_empty_batch(connection):
    result = connection.record_samples([])
    assert isinstance(result, base.RecordResult)
    assert (result.stored, list(result.rejected)) == (0, [])


def test_record_samples_returns_samples(connection):
    connection.record_samples([make_sample(1)])
    (got,) = connection.get_samples()
    assert isinstance(got, sample_mod.Sample), type(got)


def test_redelivered_batch_changes_nothing(connection):
    batch = [make_sample(i, timestamp=at(i * MINUTE)) for i in range(5)]
    connection.record_samples(batch)
    before = sorted(map(comparable, all_stored(connection)),
                    key=lambda s: s['id'])
    stats_before = connection.get_statistics(base.SampleFilter(meter='cpu'))
    again = connection.record_samples(batch)
    assert isinstance(again, base.RecordResult)
    assert list(again.rejected) == []
    after = sorted(map(comparable, all_stored(connection)),
                   key=lambda s: s['id'])
    assert len(after) == 5
    assert after == before
    (stats,) = connection.get_statistics(base.SampleFilter(meter='cpu'))
    check_stat(stats, count=5, sum=stats_before[0].sum)


def test_redelivered_sample_with_other_content_changes_nothing(connection):
    original = make_sample(0, timestamp=at(0), volume=1.0,
                           resource_metadata={'state': 'first'})
    connection.record_samples([original])
    # Same id (message id, meter, resource), different content and a later
    # timestamp: the stored sample and the resource record stay as they
    # were.
    other = make_sample(0, timestamp=at(HOUR), volume=99.0,
                        resource_metadata={'state': 'second'})
    assert other.id == original.id
    connection.record_samples([other])
    (got,) = all_stored(connection)
    assert sample_differences(got, original) == []
    (resource,) = connection.get_resources()
    assert instant(resource.last_sample_timestamp) == instant(at(0))
    assert resource.metadata == {'state': 'first'}
    (stats,) = connection.get_statistics(base.SampleFilter())
    check_stat(stats, count=1, sum=1.0)


def test_duplicate_ids_in_one_batch_store_one_sample(connection):
    first = make_sample(0, timestamp=at(0), volume=1.0)
    second = make_sample(0, timestamp=at(0), volume=2.0)
    result = connection.record_samples([first, second, make_sample(1)])
    assert list(result.rejected) == []
    got = all_stored(connection)
    assert sorted(sample_dict(s)['id'] for s in got) == sorted(
        [first.id, make_sample(1).id])


def invalid_samples():
    """Samples every store must reject, by case name."""
    cases = {}

    def case(label, index, **fields):
        cases[label] = make_sample(index, **fields)
        return cases[label]

    case('no id', 100).id = None
    case('empty id', 101).id = ''
    case('no name', 102, name=None)
    case('empty name', 103, name='')
    case('no resource', 104, resource_id=None)
    case('unknown type', 105, type='counter')
    case('string volume', 106, volume='1.5')
    case('no volume', 107, volume=None)
    case('NaN volume', 108, volume=float('nan'))
    case('infinite volume', 109, volume=float('inf'))
    case('bool volume', 110, volume=True)
    case('list volume', 111, volume=[1.0])
    case('bad timestamp', 112, timestamp='yesterday')
    case('no timestamp', 113, timestamp=None)
    case('epoch timestamp', 114, timestamp=1714564800)
    case('impossible date', 115, timestamp='2024-13-01T00:00:00')
    case('metadata list', 116, resource_metadata=['a'])
    return cases


def test_invalid_samples_are_rejected_with_reasons(connection):
    cases = invalid_samples()
    for name, sample in cases.items():
        assert base.validate_sample(sample), f'suite bug: {name} is valid'
    valid = [make_sample(i, timestamp=at(i)) for i in range(4)]
    batch = valid[:2] + list(cases.values()) + valid[2:]
    result = connection.record_samples(batch)
    assert isinstance(result, base.RecordResult)
    assert result.stored == len(valid)
    assert len(result.rejected) == len(cases), result.rejected
    for entry in result.rejected:
        reason = rejected_reason(entry)
        assert isinstance(reason, str) and reason, entry
    got = all_stored(connection)
    assert got_msg_ids(got) == msg_ids(0, 1, 2, 3)
    assert_samples_match(got, valid)
    assert {r.resource_id for r in connection.get_resources()} == {
        'vm-0', 'vm-1', 'vm-2', 'vm-3'}
    assert {(m.name, m.resource_id) for m in connection.get_meters()} == {
        ('cpu', f'vm-{i}') for i in range(4)}


@pytest.mark.parametrize('name', sorted(invalid_samples()))
def test_each_invalid_sample_is_rejected(connection, name):
    sample = invalid_samples()[name]
    result = connection.record_samples([sample, make_sample(1)])
    assert result.stored == 1
    assert len(result.rejected) == 1, result.rejected
    reason = rejected_reason(result.rejected[0])
    assert isinstance(reason, str) and reason
    assert got_msg_ids(all_stored(connection)) == msg_ids(1)


def test_integer_volume_is_stored(connection):
    connection.record_samples([make_sample(1, volume=7)])
    (got,) = all_stored(connection)
    assert close(got.volume, 7.0)


def test_timestamps_are_stored_as_instants(connection):
    samples = [
        make_sample(1, timestamp='2024-05-01T14:00:00+02:00'),  # 12:00Z
        make_sample(2, timestamp='2024-05-01T12:30:00Z'),
        make_sample(3, timestamp='2024-05-01T12:15:00'),  # naive: UTC
        make_sample(4, timestamp='2024-05-01T11:00:00.000001-01:00'),
        make_sample(5, timestamp=datetime.datetime(
            2024, 5, 1, 13, 0, tzinfo=datetime.timezone(
                datetime.timedelta(hours=5)))),  # 08:00Z
    ]
    connection.record_samples(samples)
    got = connection.get_samples(orderby=[('timestamp', 'asc')])
    assert [s.message_id for s in got] == ['n-5', 'n-1', 'n-4', 'n-3',
                                          'n-2']
    assert_samples_match(got, samples)
    got = connection.get_samples(base.SampleFilter(
        start_timestamp='2024-05-01T12:00:00.000001Z'))
    assert got_msg_ids(got) == msg_ids(4, 3, 2)
    got = connection.get_samples(base.SampleFilter(
        end_timestamp='2024-05-01T14:00:00+02:00', end_timestamp_op='le'))
    assert got_msg_ids(got) == msg_ids(5, 1)


def test_microseconds_are_kept(connection):
    samples = [make_sample(i, timestamp=at(0, i)) for i in (1, 2, 3)]
    connection.record_samples(samples)
    got = connection.get_samples(orderby=[('timestamp', 'asc')])
    assert [instant(s.timestamp) for s in got] == [
        instant(at(0, i)) for i in (1, 2, 3)]
    assert got_msg_ids(connection.get_samples(base.SampleFilter(
        start_timestamp=at(0, 1), start_timestamp_op='gt',
        end_timestamp=at(0, 3)))) == msg_ids(2)
    assert got_msg_ids(connection.get_samples(base.SampleFilter(
        start_timestamp=at(0, 2), end_timestamp=at(0, 3),
        end_timestamp_op='le'))) == msg_ids(2, 3)
    assert got_msg_ids(connection.query_samples(
        {'=': {'timestamp': at(0, 2)}})) == msg_ids(2)


METADATA = {
    'state': 'active', 'flavor': {'name': 'm1.small', 'vcpus': 1,
                                  'extra': {'deep': [1, 'two', None]}},
    'enabled': True, 'disabled': False, 'size': 5, 'ratio': 0.25,
    'nothing': None, 'empty': {}, 'tags': ['a', 'b'],
    'os-type:x@y': 'linux', 'unicode': 'caf\u00e9 \u2603',
    'quote': 'it\'s "quoted" \\ back', 'big': 2 ** 40, 'negative': -3.5,
}


def test_metadata_round_trips(connection):
    sample = make_sample(1, resource_metadata=METADATA)
    connection.record_samples([sample])
    (got,) = all_stored(connection)
    assert same_json(got.resource_metadata, METADATA), got.resource_metadata
    (resource,) = connection.get_resources()
    assert same_json(resource.metadata, METADATA), resource.metadata


def test_metadata_keys_with_dots_and_dollars_round_trip(connection):
    # Nova image properties have such keys (org.openstack__1__os_distro).
    metadata = {'image_meta': {'org.openstack__1__architecture': 'x86_64',
                               'a.b.c': 1}, 'x.y': 'z', '$set': 1,
                'pct%2E': 'p', '%': {'.': {'$': 'deep'}}}
    connection.record_samples([make_sample(1, resource_metadata=metadata)])
    (got,) = all_stored(connection)
    assert same_json(got.resource_metadata, metadata), got.resource_metadata


def test_empty_metadata(connection):
    connection.record_samples([make_sample(1, resource_metadata={})])
    (got,) = all_stored(connection)
    assert got.resource_metadata in ({}, None)


def test_recorded_at_is_set_by_the_store(connection):
    before = datetime.datetime.now(UTC)
    connection.record_samples([make_sample(1)])
    after = datetime.datetime.now(UTC)
    (got,) = all_stored(connection)
    assert got.recorded_at is not None
    assert (before - datetime.timedelta(seconds=1)
            <= instant(got.recorded_at)
            <= after + datetime.timedelta(seconds=1)), got.recorded_at
    assert got_msg_ids(connection.query_samples(
        {'>=': {'recorded_at': before - datetime.timedelta(seconds=1)}})
    ) == msg_ids(1)


# --- the resource record ---------------------------------------------------

def test_resource_record_with_batches_out_of_order(connection):
    def sample(index, seconds, state, name='cpu'):
        return make_sample(index, name=name, resource_id='vm-x',
                           timestamp=at(seconds),
                           resource_metadata={'state': state})

    connection.record_samples([sample(2, 2 * HOUR, 'two')])
    connection.record_samples([sample(3, 3 * HOUR, 'three')])
    connection.record_samples([sample(1, 1 * HOUR, 'one', 'memory')])
    (resource,) = connection.get_resources()
    assert isinstance(resource, base.Resource)
    assert resource.resource_id == 'vm-x'
    assert instant(resource.first_sample_timestamp) == instant(at(HOUR))
    assert instant(resource.last_sample_timestamp) == instant(at(3 * HOUR))
    assert resource.metadata == {'state': 'three'}
    assert meter_names(resource) == {'cpu', 'memory'}
    assert (resource.project_id, resource.user_id, resource.source) == (
        'project-1', 'user-1', 'openstack')


def test_resource_record_within_one_batch_out_of_order(connection):
    connection.record_samples([
        make_sample(i, resource_id='vm-x', timestamp=at(seconds),
                    resource_metadata={'n': i})
        for i, seconds in ((1, 2 * HOUR), (2, 3 * HOUR), (3, HOUR))])
    (resource,) = connection.get_resources()
    assert instant(resource.first_sample_timestamp) == instant(at(HOUR))
    assert instant(resource.last_sample_timestamp) == instant(at(3 * HOUR))
    assert same_json(resource.metadata, {'n': 2})


# --- a small data set with literal answers ---------------------------------

def dataset():
    cpu = dict(name='cpu', type='cumulative', unit='ns')
    memory = dict(name='memory', type='gauge', unit='MB')
    return [
        make_sample(1, **cpu, resource_id='vm-1', user_id='u-1',
                    project_id='p-1', timestamp=at(0), volume=10.0,
                    resource_metadata={
                        'state': 'active', 'enabled': True, 'size': 5,
                        'flavor': {'name': 'm1.small', 'vcpus': 1}}),
        make_sample(2, **cpu, resource_id='vm-2', user_id='u-2',
                    project_id='p-2', timestamp=at(HOUR), volume=20.0,
                    resource_metadata={
                        'state': 'ACTIVE', 'enabled': False, 'size': '5',
                        'flavor': {'name': 'm1.large', 'vcpus': 4}}),
        make_sample(3, **cpu, resource_id='vm-3', user_id='u-1',
                    project_id='p-3', source='cord', timestamp=at(2 * HOUR),
                    volume=-5.0,
                    resource_metadata={
                        'state': 'error', 'size': 5.5,
                        'flavor': {'name': 'm1.small', 'vcpus': 1}}),
        make_sample(4, **memory, resource_id='vm-1', user_id='u-1',
                    project_id='p-1', timestamp=at(3 * HOUR), volume=512,
                    resource_metadata={
                        'state': 'active', 'enabled': 1,
                        'flavor': {'name': 'm1.small', 'vcpus': 1}}),
        make_sample(5, **memory, resource_id='vm-2', user_id='u-2',
                    project_id='p-2', source='cord', timestamp=at(4 * HOUR),
                    volume=2048.0,
                    resource_metadata={'state': 'act%ve', 'enabled': True,
                                       'tags': ['a', 'b']}),
        make_sample(6, name='disk.read.bytes', type='delta', unit='B',
                    resource_id='vm-1', user_id=None, project_id='p-1',
                    timestamp=at(5 * HOUR), volume=0.0,
                    resource_metadata={'disk': 'vda'}),
    ]


@pytest.fixture
def loaded(connection):
    samples = dataset()
    result = connection.record_samples(samples)
    assert result.stored == len(samples)
    return connection


FILTER_CASES = [
    ('no filter', {}, (1, 2, 3, 4, 5, 6)),
    ('user', {'user_id': 'u-1'}, (1, 3, 4)),
    ('users list', {'user_id': ['u-2', 'nobody']}, (2, 5)),
    ('project', {'project_id': 'p-1'}, (1, 4, 6)),
    ('project set', {'project_id': {'p-1', 'p-2'}}, (1, 2, 4, 5, 6)),
    ('project frozenset', {'project_id': frozenset({'p-3'})}, (3,)),
    ('project tuple', {'project_id': ('p-3', 'p-9')}, (3,)),
    ('project list', {'project_id': ['p-2']}, (2, 5)),
    ('unknown project', {'project_id': 'p-9'}, ()),
    ('resource', {'resource_id': 'vm-2'}, (2, 5)),
    ('resources', {'resource_id': ['vm-2', 'vm-3']}, (2, 3, 5)),
    ('meter', {'meter': 'memory'}, (4, 5)),
    ('source', {'source': 'cord'}, (3, 5)),
    ('message id', {'message_id': 'n-3'}, (3,)),
    ('start ge', {'start_timestamp': at(HOUR)}, (2, 3, 4, 5, 6)),
    ('start gt', {'start_timestamp': at(HOUR), 'start_timestamp_op': 'gt'},
     (3, 4, 5, 6)),
    ('end lt', {'end_timestamp': at(3 * HOUR)}, (1, 2, 3)),
    ('end le', {'end_timestamp': at(3 * HOUR), 'end_timestamp_op': 'le'},
     (1, 2, 3, 4)),
    ('start gt end lt same', {'start_timestamp': at(HOUR),
                              'start_timestamp_op': 'gt',
                              'end_timestamp': at(2 * HOUR)}, ()),
    ('start ge end le same', {'start_timestamp': at(HOUR),
                              'end_timestamp': at(HOUR),
                              'end_timestamp_op': 'le'}, (2,)),
    ('start as datetime', {'start_timestamp': T0 + datetime.timedelta(
        hours=4)}, (5, 6)),
    ('start other offset', {'start_timestamp': '2024-05-01T06:00:00+02:00'},
     (5, 6)),
    ('metaquery', {'metaquery': {'resource_metadata.state': 'active'}},
     (1, 4)),
    ('metaquery api form', {'metaquery': {'metadata.flavor.name':
                                          'm1.small'}}, (1, 3, 4)),
    ('metaquery bool', {'metaquery': {'resource_metadata.enabled': True}},
     (1, 5)),
    ('metaquery number', {'metaquery': {'resource_metadata.size': 5}},
     (1,)),
    ('metaquery string number', {'metaquery': {'resource_metadata.size':
                                               '5'}}, (2,)),
    ('metaquery nested number', {'metaquery': {
        'resource_metadata.flavor.vcpus': 1}}, (1, 3, 4)),
    ('conditions', {'conditions': [('volume', '>=', 10)]}, (1, 2, 4, 5)),
    ('conditions like', {'conditions': [('resource_metadata.state', 'like',
                                         'act%')]}, (1, 4, 5)),
    ('combined', {'project_id': {'p-1', 'p-2'}, 'meter': 'cpu',
                  'start_timestamp': at(0)}, (1, 2)),
]


@pytest.mark.parametrize('kwargs,expected',
                         [c[1:] for c in FILTER_CASES],
                         ids=[c[0] for c in FILTER_CASES])
def test_get_samples_filters(loaded, kwargs, expected):
    sample_filter = base.SampleFilter(**kwargs)
    assert got_msg_ids(oracle.reference_query_samples(
        dataset(), sample_filter.expression())) == msg_ids(*expected), \
        'suite bug: the reference disagrees'
    got = list(loaded.get_samples(sample_filter))
    assert got_msg_ids(got) == msg_ids(*expected)
    assert len(got) == len(expected)
    assert_samples_match(got, dataset())


ORDER_CASES = [
    ('default: newest first', None, None, (6, 5, 4, 3, 2, 1)),
    ('volume asc', [('volume', 'asc')], None, (3, 6, 1, 2, 4, 5)),
    ('volume desc dict form', [{'volume': 'DESC'}], None,
     (5, 4, 2, 1, 6, 3)),
    ('name then newest', [('name', 'asc'), ('timestamp', 'desc')], None,
     (3, 2, 1, 6, 5, 4)),
    ('name desc then oldest', [('name', 'desc'), ('timestamp', 'asc')],
     None, (4, 5, 6, 1, 2, 3)),
    ('project then volume desc', [('project_id', 'asc'),
                                  ('volume', 'desc')], None,
     (4, 1, 6, 5, 2, 3)),
    ('limit', None, 2, (6, 5)),
    ('limit with orderby', [('volume', 'asc')], 3, (3, 6, 1)),
    ('limit above count', [('timestamp', 'asc')], 50, (1, 2, 3, 4, 5, 6)),
]


@pytest.mark.parametrize('orderby,limit,expected',
                         [c[1:] for c in ORDER_CASES],
                         ids=[c[0] for c in ORDER_CASES])
def test_get_samples_order_and_limit(loaded, orderby, limit, expected):
    got = loaded.get_samples(orderby=orderby, limit=limit)
    assert [s.message_id for s in got] == [f'n-{i}' for i in expected]
    got = loaded.query_samples(None, orderby, limit)
    assert [s.message_id for s in got] == [f'n-{i}' for i in expected]


def test_get_samples_filter_with_limit_and_order(loaded):
    got = loaded.get_samples(base.SampleFilter(project_id={'p-1', 'p-2'}),
                             limit=2, orderby=[('volume', 'asc')])
    assert [s.message_id for s in got] == ['n-6', 'n-1']


def test_bad_orderby_is_invalid_query(loaded):
    for orderby in ([('bogus', 'asc')], [('volume', 'up')],
                    [('resource_metadata.state', 'asc')], ['volume']):
        with pytest.raises(base.InvalidQuery):
            list(loaded.query_samples(None, orderby))


QUERY_CASES = [
    ('= name', {'=': {'name': 'cpu'}}, (1, 2, 3)),
    ('!= name', {'!=': {'name': 'cpu'}}, (4, 5, 6)),
    ('< volume', {'<': {'volume': 10}}, (3, 6)),
    ('<= volume', {'<=': {'volume': 10}}, (1, 3, 6)),
    ('> volume', {'>': {'volume': 20}}, (4, 5)),
    ('>= volume', {'>=': {'volume': 20.0}}, (2, 4, 5)),
    ('= volume int', {'=': {'volume': 512}}, (4,)),
    ('in resource', {'in': {'resource_id': ['vm-1', 'vm-3']}},
     (1, 3, 4, 6)),
    ('< project', {'<': {'project_id': 'p-2'}}, (1, 4, 6)),
    ('= id', {'=': {'id': make_sample(2, resource_id='vm-2').id}}, (2,)),
    ('like prefix', {'like': {'name': 'm%'}}, (4, 5)),
    ('like one char', {'like': {'name': 'c_u'}}, (1, 2, 3)),
    ('like is case-sensitive', {'like': {'name': 'CPU'}}, ()),
    ('like _ matches a dot', {'like': {'name': 'disk_read%'}}, (6,)),
    ('like middle', {'like': {'name': '%.read.%'}}, (6,)),
    ('like resource', {'like': {'resource_id': 'vm-_'}},
     (1, 2, 3, 4, 5, 6)),
    ('!= skips None user', {'!=': {'user_id': 'u-1'}}, (2, 5)),
    ('not = keeps None user', {'not': {'=': {'user_id': 'u-1'}}},
     (2, 5, 6)),
    ('>= timestamp other offset',
     {'>=': {'timestamp': '2024-05-01T03:00:00+02:00'}}, (2, 3, 4, 5, 6)),
    ('< timestamp negative offset',
     {'<': {'timestamp': '2024-04-30T22:00:00-04:00'}}, (1, 2)),
    ('= timestamp', {'=': {'timestamp': at(2 * HOUR)}}, (3,)),
    ('!= timestamp', {'!=': {'timestamp': at(2 * HOUR)}},
     (1, 2, 4, 5, 6)),
    ('in timestamp', {'in': {'timestamp': [at(0), at(5 * HOUR)]}}, (1, 6)),
    ('= metadata', {'=': {'resource_metadata.state': 'active'}}, (1, 4)),
    ('!= metadata skips missing', {'!=': {'resource_metadata.state':
                                          'active'}}, (2, 3, 5)),
    ('not = metadata keeps missing',
     {'not': {'=': {'resource_metadata.state': 'active'}}}, (2, 3, 5, 6)),
    ('< metadata number skips strings',
     {'<': {'resource_metadata.size': 6}}, (1, 3)),
    ('> metadata string skips numbers',
     {'>': {'resource_metadata.size': '4'}}, (2,)),
    ('> metadata string codepoint order',
     {'>': {'resource_metadata.state': 'Z'}}, (1, 3, 4, 5)),
    ('in metadata mixed kinds', {'in': {'resource_metadata.size': [5, '5']}},
     (1, 2)),
    ('= metadata int float', {'=': {'resource_metadata.size': 5.0}}, (1,)),
    ('= metadata bool', {'=': {'resource_metadata.enabled': True}}, (1, 5)),
    ('= metadata 1 is not true', {'=': {'resource_metadata.enabled': 1}},
     (4,)),
    ('!= metadata bool skips numbers',
     {'!=': {'resource_metadata.enabled': True}}, (2,)),
    ('in metadata bool', {'in': {'resource_metadata.enabled': [True]}},
     (1, 5)),
    ('like metadata', {'like': {'resource_metadata.state': 'act%'}},
     (1, 4, 5)),
    ('like metadata case', {'like': {'resource_metadata.state': 'ACT%'}},
     (2,)),
    ('like metadata one char', {'like': {'resource_metadata.state':
                                         'act_ve'}}, (1, 4, 5)),
    ('like metadata only strings', {'like': {'resource_metadata.size':
                                             '5'}}, (2,)),
    ('like metadata object', {'like': {'resource_metadata.flavor': '%'}},
     ()),
    ('nested metadata', {'>': {'resource_metadata.flavor.vcpus': 1}}, (2,)),
    ('!= nested metadata', {'!=': {'resource_metadata.flavor.vcpus': 1}},
     (2,)),
    ('metadata path through a string',
     {'=': {'resource_metadata.flavor.name.x': 'a'}}, ()),
    ('metadata list', {'=': {'resource_metadata.tags': 'a'}}, ()),
    ('in metadata list', {'in': {'resource_metadata.tags': ['a', 'b']}},
     ()),
    ('like metadata list', {'like': {'resource_metadata.tags': '%'}}, ()),
    ('missing metadata key', {'=': {'resource_metadata.disk': 'vda'}},
     (6,)),
    ('and/or', {'and': [{'=': {'project_id': 'p-1'}},
                        {'or': [{'=': {'name': 'memory'}},
                                {'<': {'volume': 5}}]}]}, (4, 6)),
    ('not or', {'not': {'or': [{'=': {'name': 'cpu'}},
                               {'=': {'source': 'cord'}}]}}, (4, 6)),
    ('not not', {'not': {'not': {'=': {'resource_metadata.state':
                                       'error'}}}}, (3,)),
    ('or of not', {'or': [{'not': {'>': {'resource_metadata.size': 0}}},
                          {'=': {'name': 'memory'}}]}, (2, 4, 5, 6)),
    ('and of three', {'and': [{'>=': {'volume': 0}},
                              {'<': {'volume': 1000}},
                              {'like': {'resource_id': '%1'}}]}, (1, 4, 6)),
    ('not and', {'not': {'and': [{'=': {'resource_metadata.enabled': True}},
                                 {'=': {'name': 'cpu'}}]}}, (2, 3, 4, 5, 6)),
]


@pytest.mark.parametrize('expression,expected',
                         [c[1:] for c in QUERY_CASES],
                         ids=[c[0] for c in QUERY_CASES])
def test_query_samples(loaded, expression, expected):
    expression = query.validate(expression)
    assert got_msg_ids(oracle.reference_query_samples(
        dataset(), expression)) == msg_ids(*expected), \
        'suite bug: the reference disagrees'
    got = list(loaded.query_samples(expression))
    assert got_msg_ids(got) == msg_ids(*expected)
    assert len(got) == len(expected)
    assert_samples_match(got, dataset())


def test_query_samples_validates_raw_expressions(loaded):
    # The API hands over the JSON it got: string timestamps, any case.
    got = loaded.query_samples({'AND': [
        {'=': {'name': 'cpu'}},
        {'>=': {'timestamp': '2024-05-01T01:00:00Z'}}]})
    assert got_msg_ids(got) == msg_ids(2, 3)
    for bad in ({'=': {'bogus': 1}}, {'like': {'volume': '1%'}},
                {'in': {'name': []}}, {'>': {'timestamp': 'yesterday'}},
                {'and': [{'=': {'name': 'cpu'}}]}, {'xor': []}):
        with pytest.raises(base.InvalidQuery):
            list(loaded.query_samples(bad))


def test_query_samples_order_and_limit(loaded):
    got = loaded.query_samples({'=': {'name': 'cpu'}},
                               [('volume', 'desc')], 2)
    assert [s.message_id for s in got] == ['n-2', 'n-1']


# --- meters and resources ---------------------------------------------------

def meter(name, resource_id, project_id, user_id, source='openstack'):
    kind = {'cpu': ('cumulative', 'ns'), 'memory': ('gauge', 'MB'),
            'disk.read.bytes': ('delta', 'B')}[name]
    return base.Meter(name, kind[0], kind[1], resource_id, project_id,
                      user_id, source)


def test_get_meters(loaded):
    got = list(loaded.get_meters())
    assert all(isinstance(m, base.Meter) for m in got)
    assert sorted(got, key=lambda m: (m.name, m.resource_id)) == [
        meter('cpu', 'vm-1', 'p-1', 'u-1'),
        meter('cpu', 'vm-2', 'p-2', 'u-2'),
        meter('cpu', 'vm-3', 'p-3', 'u-1', 'cord'),
        meter('disk.read.bytes', 'vm-1', 'p-1', None),
        meter('memory', 'vm-1', 'p-1', 'u-1'),
        meter('memory', 'vm-2', 'p-2', 'u-2', 'cord'),
    ]


@pytest.mark.parametrize('kwargs,expected', [
    ({'project_id': 'p-1'}, {('cpu', 'vm-1'), ('memory', 'vm-1'),
                             ('disk.read.bytes', 'vm-1')}),
    ({'project_id': {'p-2', 'p-3'}}, {('cpu', 'vm-2'), ('cpu', 'vm-3'),
                                      ('memory', 'vm-2')}),
    ({'start_timestamp': at(3 * HOUR)}, {('memory', 'vm-1'),
                                         ('memory', 'vm-2'),
                                         ('disk.read.bytes', 'vm-1')}),
    ({'metaquery': {'resource_metadata.state': 'error'}}, {('cpu',
                                                            'vm-3')}),
    ({'user_id': 'u-1', 'meter': 'cpu'}, {('cpu', 'vm-1'), ('cpu', 'vm-3')}),
    ({'source': 'nowhere'}, set()),
])
def test_get_meters_filtered(loaded, kwargs, expected):
    got = list(loaded.get_meters(base.SampleFilter(**kwargs)))
    assert {(m.name, m.resource_id) for m in got} == expected
    assert len(got) == len(expected)


def test_get_meters_unique(loaded):
    got = list(loaded.get_meters(unique=True))
    assert sorted(m.name for m in got) == ['cpu', 'disk.read.bytes',
                                           'memory']
    got = list(loaded.get_meters(base.SampleFilter(project_id='p-2'),
                                 unique=True))
    assert sorted(m.name for m in got) == ['cpu', 'memory']
    assert all(m.project_id == 'p-2' for m in got)


def test_get_meters_limit(loaded):
    got = list(loaded.get_meters(limit=2))
    assert len(got) == 2
    assert {(m.name, m.resource_id) for m in got} <= {
        (m.name, m.resource_id) for m in loaded.get_meters()}


def test_get_resources(loaded):
    got = {r.resource_id: r for r in loaded.get_resources()}
    assert sorted(got) == ['vm-1', 'vm-2', 'vm-3']
    assert all(isinstance(r, base.Resource) for r in got.values())
    expected = {
        'vm-1': (0, 5 * HOUR, {'disk': 'vda'},
                 {'cpu', 'memory', 'disk.read.bytes'}, 'p-1'),
        'vm-2': (HOUR, 4 * HOUR, dataset()[4].resource_metadata,
                 {'cpu', 'memory'}, 'p-2'),
        'vm-3': (2 * HOUR, 2 * HOUR, dataset()[2].resource_metadata,
                 {'cpu'}, 'p-3'),
    }
    for rid, (first, last, metadata, meters, project) in expected.items():
        resource = got[rid]
        assert instant(resource.first_sample_timestamp) == instant(
            at(first)), rid
        assert instant(resource.last_sample_timestamp) == instant(
            at(last)), rid
        assert same_json(resource.metadata, metadata), (rid,
                                                        resource.metadata)
        assert meter_names(resource) == meters, rid
        assert resource.project_id == project, rid
    assert got['vm-3'].source == 'cord'
    assert got['vm-2'].user_id == 'u-2'


def test_get_resources_filtered(loaded):
    def resources(**kwargs):
        return {r.resource_id: r for r in loaded.get_resources(
            base.SampleFilter(**kwargs))}

    got = resources(end_timestamp=at(3 * HOUR))
    assert sorted(got) == ['vm-1', 'vm-2', 'vm-3']
    # First and last sample timestamps within the filter.
    assert instant(got['vm-1'].last_sample_timestamp) == instant(at(0))
    assert instant(got['vm-2'].last_sample_timestamp) == instant(at(HOUR))
    got = resources(start_timestamp=at(HOUR), start_timestamp_op='gt')
    assert sorted(got) == ['vm-1', 'vm-2', 'vm-3']
    assert instant(got['vm-1'].first_sample_timestamp) == instant(
        at(3 * HOUR))
    assert sorted(resources(project_id={'p-2'})) == ['vm-2']
    assert sorted(resources(project_id=['p-2', 'p-3'])) == ['vm-2', 'vm-3']
    assert sorted(resources(user_id='u-1')) == ['vm-1', 'vm-3']
    assert sorted(resources(meter='memory')) == ['vm-1', 'vm-2']
    assert sorted(resources(source='cord')) == ['vm-2', 'vm-3']
    assert sorted(resources(
        metaquery={'resource_metadata.state': 'error'})) == ['vm-3']
    assert resources(project_id='p-9') == {}


def test_get_resources_limit(loaded):
    got = list(loaded.get_resources(limit=2))
    assert len(got) == 2
    assert {r.resource_id for r in got} <= {'vm-1', 'vm-2', 'vm-3'}


# --- statistics -------------------------------------------------------------

STAT_VALUES = [2, 4, 4, 4, 5, 5, 7, 9]


def stat_samples(offset=0.0):
    """8 cpu samples 10 minutes apart from T0, volumes STAT_VALUES."""
    samples = []
    for i, value in enumerate(STAT_VALUES):
        metadata = {'flavor': {'name': 'small' if i % 2 == 0 else 'large'}}
        if i < 3:
            metadata['state'] = 'on'
        elif i < 6:
            metadata['state'] = 'off'
        samples.append(make_sample(
            i, volume=value + offset, timestamp=at(i * 10 * MINUTE),
            project_id='p-1' if i < 4 else 'p-2',
            resource_id='vm-a' if i % 2 == 0 else 'vm-b',
            user_id='u-1' if i % 2 == 0 else 'u-2',
            source='cord' if i == 7 else 'openstack',
            resource_metadata=metadata))
    return samples


@pytest.fixture
def stats_store(connection):
    connection.record_samples(stat_samples())
    return connection


def test_statistics_default_aggregates(stats_store):
    (stat,) = stats_store.get_statistics(base.SampleFilter(meter='cpu'))
    check_stat(stat, count=8, min=2, max=9, avg=5, sum=40, stddev=None,
               aggregate={}, unit='ns', groupby=None, period=0,
               period_start=at(0), period_end=at(70 * MINUTE),
               duration_start=at(0), duration_end=at(70 * MINUTE),
               duration=4200)


@pytest.mark.parametrize('aggregate,field,value', [
    ('avg', 'avg', 5), ('sum', 'sum', 40), ('min', 'min', 2),
    ('max', 'max', 9), ('count', 'count', 8), ('stddev', 'stddev', 2.0),
    (('avg', None), 'avg', 5), (['stddev', None], 'stddev', 2.0),
])
def test_statistics_each_aggregate(stats_store, aggregate, field, value):
    (stat,) = stats_store.get_statistics(base.SampleFilter(),
                                         aggregates=[aggregate])
    others = {f: None for f in ('count', 'min', 'max', 'avg', 'sum',
                                'stddev') if f != field}
    check_stat(stat, **{field: value}, **others,
               aggregate={field: value}, unit='ns', duration=4200)


def test_statistics_cardinality(stats_store):
    (stat,) = stats_store.get_statistics(
        base.SampleFilter(),
        aggregates=[('cardinality', 'resource_id'),
                    ('cardinality', 'user_id'),
                    ('cardinality', 'project_id'),
                    ('cardinality', 'source'), 'count'])
    check_stat(stat, count=8, aggregate={
        'cardinality/resource_id': 2, 'cardinality/user_id': 2,
        'cardinality/project_id': 2, 'cardinality/source': 2, 'count': 8})
    (stat,) = stats_store.get_statistics(
        base.SampleFilter(project_id='p-1'),
        aggregates=[('cardinality', 'project_id'),
                    ('cardinality', 'resource_id')])
    check_stat(stat, aggregate={'cardinality/project_id': 1,
                                'cardinality/resource_id': 2}, count=None)


def test_statistics_cardinality_ignores_none(connection):
    connection.record_samples([make_sample(1, user_id=None),
                               make_sample(2, user_id='u-1'),
                               make_sample(3, user_id='u-1')])
    (stat,) = connection.get_statistics(
        base.SampleFilter(), aggregates=[('cardinality', 'user_id')])
    check_stat(stat, aggregate={'cardinality/user_id': 1})


def test_statistics_stddev_is_population(connection):
    connection.record_samples([make_sample(i, volume=v, timestamp=at(i))
                               for i, v in enumerate([1, 2])])
    (stat,) = connection.get_statistics(base.SampleFilter(),
                                        aggregates=['stddev'])
    check_stat(stat, stddev=0.5)
    connection.record_samples([make_sample(9, volume=1, timestamp=at(9))])
    (stat,) = connection.get_statistics(base.SampleFilter(meter='cpu'),
                                        aggregates=['stddev', 'avg'])
    check_stat(stat, stddev=math.sqrt(2 / 9), avg=4 / 3)


def test_statistics_stddev_of_one_sample_is_zero(connection):
    connection.record_samples([make_sample(1, volume=123456789.125)])
    (stat,) = connection.get_statistics(base.SampleFilter(),
                                        aggregates=['stddev'])
    assert stat.stddev == 0 or close(stat.stddev, 0.0), stat.stddev


def test_statistics_stddev_of_large_close_values(connection):
    # Cumulative counters are large and close together: a sum-of-squares
    # formula loses every digit here.
    connection.record_samples(stat_samples(offset=1e9))
    (stat,) = connection.get_statistics(base.SampleFilter(),
                                        aggregates=['stddev', 'avg'])
    check_stat(stat, stddev=2.0, avg=1e9 + 5)
    connection.record_samples([make_sample(20 + i, volume=1e12 + 0.5,
                                           name='big', timestamp=at(i))
                               for i in range(3)])
    (stat,) = connection.get_statistics(base.SampleFilter(meter='big'),
                                        aggregates=['stddev'])
    assert stat.stddev == 0 or close(stat.stddev, 0.0, abs_=1e-6), \
        stat.stddev


def test_statistics_period_from_filter_start(stats_store):
    got = stats_store.get_statistics(
        base.SampleFilter(start_timestamp=at(-10 * MINUTE)), period=1800)
    assert len(got) == 3, got
    for stat, (start, first, last, values) in zip(got, [
            (-10, 0, 10, [2, 4]), (20, 20, 40, [4, 4, 5]),
            (50, 50, 70, [5, 7, 9])], strict=True):
        check_stat(stat, period=1800, period_start=at(start * MINUTE),
                   period_end=at((start + 30) * MINUTE),
                   duration_start=at(first * MINUTE),
                   duration_end=at(last * MINUTE),
                   duration=(last - first) * MINUTE, count=len(values),
                   sum=sum(values), min=min(values), max=max(values),
                   avg=sum(values) / len(values), unit='ns')


def test_statistics_period_from_first_sample(stats_store):
    got = stats_store.get_statistics(base.SampleFilter(meter='cpu'),
                                     period=1800)
    assert [(instant(s.period_start), s.count) for s in got] == [
        (instant(at(0)), 3), (instant(at(30 * MINUTE)), 3),
        (instant(at(60 * MINUTE)), 2)]
    check_stat(got[2], period_end=at(90 * MINUTE), duration=600, sum=16)


def test_statistics_period_origin_is_first_matching_sample(stats_store):
    got = stats_store.get_statistics(
        base.SampleFilter(project_id='p-2'), period=1200)
    # p-2 samples at 40, 50, 60, 70 minutes: origin 40.
    assert [(instant(s.period_start), s.count) for s in got] == [
        (instant(at(40 * MINUTE)), 2), (instant(at(60 * MINUTE)), 2)]


def test_statistics_period_from_exclusive_start(stats_store):
    got = stats_store.get_statistics(
        base.SampleFilter(start_timestamp=at(0), start_timestamp_op='gt'),
        period=1800)
    assert [(instant(s.period_start), s.count, s.sum) for s in got] == [
        (instant(at(0)), 2, 8), (instant(at(30 * MINUTE)), 3, 14),
        (instant(at(60 * MINUTE)), 2, 16)]


def test_statistics_period_skips_empty_buckets(connection):
    connection.record_samples([make_sample(1, timestamp=at(0), volume=1),
                               make_sample(2, timestamp=at(3 * HOUR + 1),
                                           volume=2)])
    got = connection.get_statistics(base.SampleFilter(), period=HOUR)
    assert [(instant(s.period_start), s.count) for s in got] == [
        (instant(at(0)), 1), (instant(at(3 * HOUR)), 1)]
    check_stat(got[1], duration_start=at(3 * HOUR + 1), duration=0,
               period_end=at(4 * HOUR))


def test_statistics_period_zero_is_no_period(stats_store):
    (stat,) = stats_store.get_statistics(base.SampleFilter(), period=0)
    check_stat(stat, count=8, period=0, period_start=at(0),
               period_end=at(70 * MINUTE))


def test_statistics_with_end_bound(stats_store):
    (stat,) = stats_store.get_statistics(
        base.SampleFilter(end_timestamp=at(30 * MINUTE)))
    check_stat(stat, count=3, sum=10, duration_end=at(20 * MINUTE))


# Without a period there is one period (every group covers the whole
# range): groups come in the order of their values.
@pytest.mark.parametrize('field,groups', [
    ('project_id', [('p-1', [2, 4, 4, 4]), ('p-2', [5, 5, 7, 9])]),
    ('resource_id', [('vm-a', [2, 4, 5, 7]), ('vm-b', [4, 4, 5, 9])]),
    ('user_id', [('u-1', [2, 4, 5, 7]), ('u-2', [4, 4, 5, 9])]),
    ('source', [('cord', [9]), ('openstack', [2, 4, 4, 4, 5, 5, 7])]),
    ('resource_metadata.flavor.name', [('large', [4, 4, 5, 9]),
                                       ('small', [2, 4, 5, 7])]),
])
def test_statistics_groupby(stats_store, field, groups):
    got = stats_store.get_statistics(base.SampleFilter(), groupby=[field])
    assert [s.groupby for s in got] == [{field: g} for g, _ in groups]
    for stat, (_, values) in zip(got, groups, strict=True):
        check_stat(stat, count=len(values), sum=sum(values),
                   min=min(values), max=max(values),
                   avg=sum(values) / len(values), period=0)


def test_statistics_groupby_sorted_by_value_within_a_period(connection):
    connection.record_samples([
        make_sample(1, project_id='p-b', timestamp=at(0)),
        make_sample(2, project_id='p-c', timestamp=at(10)),
        make_sample(3, project_id='p-a', timestamp=at(20))])
    got = connection.get_statistics(base.SampleFilter(), period=HOUR,
                                    groupby=['project_id'])
    assert [s.groupby['project_id'] for s in got] == ['p-a', 'p-b', 'p-c']


def test_statistics_groupby_metadata_missing_is_none(stats_store):
    got = stats_store.get_statistics(
        base.SampleFilter(), groupby=['resource_metadata.state'])
    by_group = {s.groupby['resource_metadata.state']: s for s in got}
    assert set(by_group) == {'on', 'off', None}
    assert len(got) == 3
    check_stat(by_group['on'], count=3, sum=10)
    check_stat(by_group['off'], count=3, sum=14)
    check_stat(by_group[None], count=2, sum=16, duration_start=at(60 *
                                                                  MINUTE))


def test_statistics_groupby_two_fields(stats_store):
    got = stats_store.get_statistics(
        base.SampleFilter(), groupby=['project_id', 'resource_id'],
        aggregates=['count'])
    assert [(s.groupby, s.count) for s in got] == [
        ({'project_id': 'p-1', 'resource_id': 'vm-a'}, 2),
        ({'project_id': 'p-1', 'resource_id': 'vm-b'}, 2),
        ({'project_id': 'p-2', 'resource_id': 'vm-a'}, 2),
        ({'project_id': 'p-2', 'resource_id': 'vm-b'}, 2)]


def test_statistics_groupby_with_period_sorted(stats_store):
    got = stats_store.get_statistics(base.SampleFilter(), period=1800,
                                     groupby=['project_id'])
    assert [(instant(s.period_start), s.groupby['project_id'], s.count)
            for s in got] == [
        (instant(at(0)), 'p-1', 3), (instant(at(30 * MINUTE)), 'p-1', 1),
        (instant(at(30 * MINUTE)), 'p-2', 2),
        (instant(at(60 * MINUTE)), 'p-2', 2)]
    check_stat(got[2], duration_start=at(40 * MINUTE),
               duration_end=at(50 * MINUTE), duration=600,
               period_end=at(60 * MINUTE))


def test_statistics_groupby_metadata_kinds(connection):
    flags = [True, 1, '1', None, 1.0, False]
    connection.record_samples([
        make_sample(i, volume=i, timestamp=at(i),
                    resource_metadata={} if flag is None else {'flag': flag})
        for i, flag in enumerate(flags)])
    got = connection.get_statistics(base.SampleFilter(),
                                    groupby=['resource_metadata.flag'])
    counts = {oracle.group_key(s.groupby['resource_metadata.flag']):
              (s.count, s.sum) for s in got}
    assert counts == {('bool', True): (1, 0), ('number', 1.0): (2, 5),
                      ('string', '1'): (1, 2), None: (1, 3),
                      ('bool', False): (1, 5)}, got


def test_statistics_groupby_true_and_one_apart(connection):
    # Nothing sorts between 1 and true (BSON orders numbers, strings,
    # booleans), and 1 == True in Python.
    connection.record_samples([
        make_sample(1, volume=1, resource_metadata={'flag': True}),
        make_sample(2, volume=2, resource_metadata={'flag': 1}),
        make_sample(3, volume=4, resource_metadata={'flag': 0})])
    got = connection.get_statistics(base.SampleFilter(),
                                    groupby=['resource_metadata.flag'])
    sums = {oracle.group_key(s.groupby['resource_metadata.flag']): s.sum
            for s in got}
    assert sums == {('bool', True): 1, ('number', 1.0): 2,
                    ('number', 0.0): 4}, got


def test_statistics_groupby_none_user(connection):
    connection.record_samples([make_sample(1, user_id=None, volume=1),
                               make_sample(2, user_id='u-1', volume=2)])
    got = connection.get_statistics(base.SampleFilter(),
                                    groupby=['user_id'])
    assert {s.groupby['user_id']: s.count for s in got} == {None: 1,
                                                            'u-1': 1}


def test_statistics_per_unit(connection):
    connection.record_samples([
        make_sample(1, unit='ns', volume=1, timestamp=at(0)),
        make_sample(2, unit='ns', volume=3, timestamp=at(60)),
        make_sample(3, unit='ms', volume=10, timestamp=at(30))])
    got = connection.get_statistics(base.SampleFilter(meter='cpu'))
    by_unit = {s.unit: s for s in got}
    assert len(got) == 2 and set(by_unit) == {'ns', 'ms'}
    check_stat(by_unit['ns'], count=2, avg=2, duration=60)
    check_stat(by_unit['ms'], count=1, avg=10, duration=0)


def test_statistics_respect_the_filter(stats_store):
    (stat,) = stats_store.get_statistics(base.SampleFilter(
        project_id={'p-2', 'p-9'},
        metaquery={'resource_metadata.state': 'off'}))
    check_stat(stat, count=2, sum=10)
    assert stats_store.get_statistics(base.SampleFilter(meter='nope')) == []
    assert stats_store.get_statistics(base.SampleFilter(meter='nope'),
                                      period=60,
                                      groupby=['project_id']) == []


@pytest.mark.parametrize('kwargs', [
    {'period': -1}, {'period': '60'}, {'period': True},
    {'period': base.MAX_PERIOD + 1}, {'period': 10 ** 20},
    {'period': float('inf')},
    {'groupby': ['volume']}, {'groupby': ['name']}, {'groupby': ['bogus']},
    {'groupby': ['resource_metadata.']},
    {'groupby': ['resource_metadata.a b']},
    {'groupby': ['project_id', 'project_id']},
    {'aggregates': ['median']}, {'aggregates': [('cardinality', 'name')]},
    {'aggregates': ['cardinality']}, {'aggregates': [('avg', 'volume')]},
], ids=repr)
def test_statistics_invalid_arguments(stats_store, kwargs):
    with pytest.raises(base.InvalidQuery):
        stats_store.get_statistics(base.SampleFilter(), **kwargs)


# --- expiry -----------------------------------------------------------------

def test_clear_expired_samples(connection):
    now = datetime.datetime.now(UTC)

    def ago(seconds):
        return (now - datetime.timedelta(seconds=seconds)).isoformat()

    connection.record_samples([
        make_sample(1, resource_id='old', timestamp=ago(3 * DAY)),
        make_sample(2, resource_id='old', timestamp=ago(2 * DAY)),
        make_sample(3, resource_id='mixed', timestamp=ago(2 * DAY)),
        make_sample(4, resource_id='mixed', timestamp=ago(HOUR)),
        make_sample(5, resource_id='new', timestamp=ago(10),
                    name='memory'),
    ])
    assert connection.clear_expired_samples(DAY) == 3
    assert got_msg_ids(all_stored(connection)) == msg_ids(4, 5)
    assert connection.clear_expired_samples(DAY) == 0
    # Resources and meters are those having samples.
    assert {r.resource_id for r in connection.get_resources()} == {
        'mixed', 'new'}
    assert {(m.name, m.resource_id) for m in connection.get_meters()} == {
        ('cpu', 'mixed'), ('memory', 'new')}
    (stat,) = connection.get_statistics(base.SampleFilter(meter='cpu'))
    check_stat(stat, count=1)


# --- inventory and links ----------------------------------------------------

def inventory_object(oid, type='instance', project_id='p-1',
                     last_event_at=None, **fields):
    obj = {'id': oid, 'type': type, 'name': f'name-{oid}',
           'project_id': project_id, 'parent_id': 'host-1',
           'parent_type': 'host', 'id_path': f'/host-1/{oid}',
           'name_path': f'/host-1/name-{oid}', 'environment': 'env',
           'host': 'host-1', 'state': 'active',
           'attributes': {'flavor': {'name': 'm1.small'}, 'n': 1},
           'created_at': at(0),
           'last_event_at': last_event_at or at(HOUR)}
    obj.update(fields)
    return obj


def inventory(connection, **kwargs):
    return {mapping(o)['id']: mapping(o)
            for o in connection.get_inventory(**kwargs)}


def test_inventory_crud(connection):
    objects = [inventory_object('i-1'), inventory_object('i-2',
                                                         project_id='p-2'),
               inventory_object('net-1', type='network', project_id='p-2')]
    assert connection.upsert_inventory(objects) == 3
    got = inventory(connection)
    assert sorted(got) == ['i-1', 'i-2', 'net-1']
    for obj in objects:
        stored = got[obj['id']]
        for field, value in obj.items():
            if field in ('created_at', 'last_event_at'):
                assert instant(stored[field]) == instant(value), field
            else:
                assert same_json(stored[field], value), (field,
                                                         stored[field])
    assert sorted(inventory(connection, ids=['i-2', 'nope'])) == ['i-2']
    assert sorted(inventory(connection, types=['network'])) == ['net-1']
    assert sorted(inventory(connection, types=['instance', 'network'])) == [
        'i-1', 'i-2', 'net-1']
    assert sorted(inventory(connection, project_ids=['p-2'])) == [
        'i-2', 'net-1']
    assert sorted(inventory(connection, project_ids=['p-2'],
                            types=['instance'])) == ['i-2']
    assert len(list(connection.get_inventory(limit=2))) == 2
    assert inventory(connection, ids=['nope']) == {}


def test_inventory_ignores_older_events(connection):
    connection.upsert_inventory([inventory_object(
        'i-1', last_event_at='2024-05-01T12:00:00+00:00', state='active')])
    newer = inventory_object('i-1', last_event_at='2024-05-01T12:00:01Z',
                             state='paused', attributes={'n': 2})
    assert connection.upsert_inventory([newer]) == 1
    got = inventory(connection)['i-1']
    assert (got['state'], got['attributes']) == ('paused', {'n': 2})
    older = inventory_object('i-1', last_event_at='2024-05-01T11:59:59Z',
                             state='building')
    assert connection.upsert_inventory([older]) == 0
    # Later as text, earlier as an instant (11:30Z).
    older_offset = inventory_object(
        'i-1', last_event_at='2024-05-01T13:30:00+02:00', state='deleted')
    assert connection.upsert_inventory([older_offset]) == 0
    got = inventory(connection)['i-1']
    assert got['state'] == 'paused'
    assert instant(got['last_event_at']) == instant('2024-05-01T12:00:01Z')
    assert len(inventory(connection)) == 1


def test_inventory_older_event_in_the_same_batch(connection):
    written = connection.upsert_inventory([
        inventory_object('i-1', last_event_at=at(2 * HOUR), state='two'),
        inventory_object('i-1', last_event_at=at(HOUR), state='one')])
    assert written in (1, 2)
    assert inventory(connection)['i-1']['state'] == 'two'


def test_delete_inventory_deletes_links(connection):
    connection.upsert_inventory([inventory_object('i-1'),
                                 inventory_object('i-2'),
                                 inventory_object('v-1', type='vnic')])
    connection.upsert_links([link('i-1', 'v-1', 'instance-vnic'),
                             link('v-1', 'net-1', 'vnic-network'),
                             link('i-2', 'host-1', 'instance-host')])
    assert connection.delete_inventory(['v-1', 'nope']) == 1
    assert sorted(inventory(connection)) == ['i-1', 'i-2']
    assert [link_triple(lk) for lk in connection.get_links()] == [
        ('i-2', 'host-1', 'instance-host')]
    assert connection.delete_inventory(['v-1']) == 0


def link(source, target, link_type, project_id='p-1', **attributes):
    return {'source_id': source, 'target_id': target,
            'link_type': link_type, 'project_id': project_id,
            'attributes': attributes}


def link_triple(item):
    item = mapping(item)
    return (item['source_id'], item['target_id'], item['link_type'])


def triples(links):
    return sorted(link_triple(lk) for lk in links)


def test_links_crud(connection):
    connection.upsert_links([
        link('i-1', 'v-1', 'instance-vnic', mac='aa'),
        link('v-1', 'net-1', 'vnic-network'),
        link('i-2', 'v-2', 'instance-vnic', project_id='p-2'),
        link('i-1', 'host-1', 'instance-host')])
    assert len(list(connection.get_links())) == 4
    assert triples(connection.get_links(source_id='i-1')) == [
        ('i-1', 'host-1', 'instance-host'), ('i-1', 'v-1', 'instance-vnic')]
    assert triples(connection.get_links(target_id='net-1')) == [
        ('v-1', 'net-1', 'vnic-network')]
    assert triples(connection.get_links(link_type='instance-vnic')) == [
        ('i-1', 'v-1', 'instance-vnic'), ('i-2', 'v-2', 'instance-vnic')]
    assert triples(connection.get_links(project_ids=['p-2'])) == [
        ('i-2', 'v-2', 'instance-vnic')]
    assert triples(connection.get_links(source_id='i-1',
                                        link_type='instance-host')) == [
        ('i-1', 'host-1', 'instance-host')]
    (stored,) = connection.get_links(source_id='i-1', target_id='v-1')
    assert mapping(stored)['attributes'] == {'mac': 'aa'}
    assert mapping(stored)['project_id'] == 'p-1'


def test_links_are_unique_per_triple(connection):
    connection.upsert_links([link('i-1', 'v-1', 'instance-vnic', mac='aa')])
    connection.upsert_links([link('i-1', 'v-1', 'instance-vnic', mac='bb'),
                             link('i-1', 'v-1', 'other')])
    got = list(connection.get_links(source_id='i-1'))
    assert triples(got) == [('i-1', 'v-1', 'instance-vnic'),
                            ('i-1', 'v-1', 'other')]
    (vnic,) = connection.get_links(link_type='instance-vnic')
    assert mapping(vnic)['attributes'] == {'mac': 'bb'}


def test_delete_links(connection):
    connection.upsert_links([link('i-1', 'v-1', 'instance-vnic'),
                             link('i-1', 'host-1', 'instance-host'),
                             link('v-1', 'net-1', 'vnic-network')])
    assert connection.delete_links(source_id='i-1',
                                   link_type='instance-host') == 1
    assert connection.delete_links(target_id='net-1') == 1
    assert connection.delete_links(source_id='nope') == 0
    assert triples(connection.get_links()) == [
        ('i-1', 'v-1', 'instance-vnic')]
    with pytest.raises((ValueError, TypeError, base.StorageError)):
        connection.delete_links()
    assert len(list(connection.get_links())) == 1


# --- inventory graph reads --------------------------------------------------

def ids_of(objects):
    return [mapping(o)['id'] for o in objects]


@pytest.fixture
def small_graph(connection):
    """Two projects' objects (one tombstone), a host, and their links
    (one closed)."""
    connection.upsert_inventory([
        inventory_object('i-1', name='web', state='ACTIVE'),
        inventory_object('i-2', name='db', state='SHUTOFF'),
        inventory_object('i-3', project_id='p-2', host='host-2',
                         state='ACTIVE'),
        inventory_object('i-gone', state='deleted',
                         deleted_at=at(2 * HOUR)),
        inventory_object('net-1', type='network', parent_id='p-1',
                         parent_type='project', host=None),
        inventory_object('host-1', type='host', project_id=None,
                         parent_id='az-1', parent_type='availability_zone',
                         host='host-1', state='DOWN')])
    connection.upsert_links([
        link('i-1', 'host-1', 'instance-host'),
        link('i-2', 'host-1', 'instance-host'),
        link('i-3', 'host-1', 'instance-host', project_id='p-2'),
        link('i-1', 'v-1', 'instance-vnic'),
        link('v-1', 'net-1', 'vnic-network'),
        {**link('i-gone', 'host-1', 'instance-host'), 'state': 'deleted',
         'deleted_at': at(2 * HOUR)}])
    return connection


def test_list_inventory_filters(small_graph):
    store = small_graph
    assert ids_of(store.list_inventory()) == [
        'host-1', 'i-1', 'i-2', 'i-3', 'net-1']
    assert ids_of(store.list_inventory(deleted=True)) == [
        'host-1', 'i-1', 'i-2', 'i-3', 'i-gone', 'net-1']
    assert ids_of(store.list_inventory(types=['instance'])) == [
        'i-1', 'i-2', 'i-3']
    assert ids_of(store.list_inventory(project_ids=['p-2'])) == ['i-3']
    assert ids_of(store.list_inventory(project_ids=['p-1', 'p-2'],
                                       types=['network'])) == ['net-1']
    assert ids_of(store.list_inventory(parent_id='host-1')) == [
        'i-1', 'i-2', 'i-3']
    assert ids_of(store.list_inventory(host='host-2')) == ['i-3']
    assert ids_of(store.list_inventory(name='web')) == ['i-1']
    assert ids_of(store.list_inventory(state='SHUTOFF')) == ['i-2']
    assert ids_of(store.list_inventory(state='deleted')) == []
    assert ids_of(store.list_inventory(state='deleted', deleted=True)) == [
        'i-gone']
    assert ids_of(store.list_inventory(ids=['i-2', 'net-1', 'nope'])) == [
        'i-2', 'net-1']
    assert ids_of(store.list_inventory(ids=[])) == []
    assert store.list_inventory(limit=0) == []
    (got,) = store.list_inventory(ids=['i-1'])
    assert mapping(got)['attributes'] == {'flavor': {'name': 'm1.small'},
                                          'n': 1}


def test_list_inventory_pages_by_marker(small_graph):
    seen, marker = [], None
    while True:
        page = ids_of(small_graph.list_inventory(limit=2, marker=marker,
                                                 deleted=True))
        if not page:
            break
        assert len(page) <= 2
        seen += page
        marker = page[-1]
    assert seen == ids_of(small_graph.list_inventory(deleted=True))
    assert ids_of(small_graph.list_inventory(marker='i-2')) == [
        'i-3', 'net-1']
    # A marker need not be a stored id: paging is by order.
    assert ids_of(small_graph.list_inventory(marker='i-10')) == [
        'i-2', 'i-3', 'net-1']


def test_adjacent_links(small_graph):
    store = small_graph
    assert triples(store.adjacent_links(['host-1'])) == [
        ('i-1', 'host-1', 'instance-host'),
        ('i-2', 'host-1', 'instance-host'),
        ('i-3', 'host-1', 'instance-host')]
    assert triples(store.adjacent_links(['host-1'], deleted=True)) == [
        ('i-1', 'host-1', 'instance-host'),
        ('i-2', 'host-1', 'instance-host'),
        ('i-3', 'host-1', 'instance-host'),
        ('i-gone', 'host-1', 'instance-host')]
    assert triples(store.adjacent_links(['i-1'])) == [
        ('i-1', 'host-1', 'instance-host'), ('i-1', 'v-1', 'instance-vnic')]
    assert triples(store.adjacent_links(
        ['i-1', 'v-1'], outgoing=['instance-vnic', 'vnic-network'],
        incoming=[])) == [('i-1', 'v-1', 'instance-vnic'),
                          ('v-1', 'net-1', 'vnic-network')]
    assert triples(store.adjacent_links(
        ['v-1'], outgoing=[], incoming=['instance-vnic'])) == [
        ('i-1', 'v-1', 'instance-vnic')]
    # Both ends in the set: the link comes once.
    assert triples(store.adjacent_links(['i-1', 'v-1'])) == [
        ('i-1', 'host-1', 'instance-host'), ('i-1', 'v-1', 'instance-vnic'),
        ('v-1', 'net-1', 'vnic-network')]
    assert store.adjacent_links([]) == []
    assert store.adjacent_links(['host-1'], outgoing=[], incoming=[]) == []
    # Leaving out the links back to a traversal's previous level.
    assert triples(store.adjacent_links(['i-1'], exclude=['host-1'])) == [
        ('i-1', 'v-1', 'instance-vnic')]
    assert triples(store.adjacent_links(['host-1'],
                                        exclude=['i-1', 'i-3'])) == [
        ('i-2', 'host-1', 'instance-host')]
    # An excluded id among ids is still expanded.
    assert triples(store.adjacent_links(['i-1', 'v-1'],
                                        exclude=['v-1', 'net-1'])) == [
        ('i-1', 'host-1', 'instance-host'), ('i-1', 'v-1', 'instance-vnic')]
    assert store.adjacent_links(['nope']) == []


def test_adjacent_links_of_a_large_frontier(connection):
    ids = [f'i-{n:05d}' for n in range(3000)]
    connection.upsert_links([link(i, 'host-1', 'instance-host')
                             for i in ids])
    got = connection.adjacent_links(ids + ['unknown'],
                                    outgoing=['instance-host'])
    assert [mapping(x)['source_id'] for x in got] == ids


def test_adjacent_links_in_code_point_order(connection):
    """The order is Python's string order on every driver (not a
    locale's: upper case before lower, accents after ASCII), each link
    once when both of its ends are asked for in both directions."""
    ends = ['hub', 'Zeta', 'alpha', 'Alpha', '\u00e9t\u00e9', 'b-1', 'b_1',
            'b1', '\u4e2d']
    connection.upsert_links([link(i, 'hub', 'instance-host') for i in ends
                             if i != 'hub'] +
                            [link('hub', i, 'host-vnic') for i in ends
                             if i != 'hub'])
    expected = sorted({(i, 'hub', 'instance-host') for i in ends
                       if i != 'hub'} |
                      {('hub', i, 'host-vnic') for i in ends if i != 'hub'})
    for got in (connection.adjacent_links(ends),
                connection.adjacent_links(['hub'], outgoing=['host-vnic'],
                                          incoming=['instance-host']),
                connection.adjacent_links(list(reversed(ends)))):
        assert [link_triple(x) for x in got] == expected
    outgoing = connection.adjacent_links(['hub'], outgoing=None,
                                         incoming=[])
    assert [link_triple(x) for x in outgoing] == [
        t for t in expected if t[0] == 'hub']


# --- channels and subscriptions ---------------------------------------------

def channel(cid, **fields):
    data = {'id': cid, 'name': f'channel {cid}',
            'tenant_list': ['p-1', 'p-2'],
            'proxy_url': 'http://127.0.0.1:9001', 'port': 9001,
            'token_hash': 'sha256:abc', 'state': 'active',
            'created_at': at(0)}
    data.update(fields)
    return data


def subscription(sid, channel_id, **fields):
    data = {'id': sid, 'app_id': f'app-{sid}', 'channel_id': channel_id,
            'target': 'http://127.0.0.1:9999/hook',
            'meters': ['cpu', 'disk.*'],
            'query': {'in': {'project_id': ['p-1', 'p-2']}},
            'created_at': at(0)}
    data.update(fields)
    return data


def check_record(stored, expected):
    stored = mapping(stored)
    for field, value in expected.items():
        if field == 'created_at':
            assert instant(stored[field]) == instant(value)
        else:
            assert same_json(stored[field], value), (field, stored[field],
                                                     value)


def test_channels_crud(connection):
    created = connection.create_channel(channel('ch-1'))
    connection.create_channel(channel('ch-2', tenant_list=['p-3']))
    assert created == connection.get_channels(['ch-1'])[0]
    got = {mapping(c)['id']: c for c in connection.get_channels()}
    assert sorted(got) == ['ch-1', 'ch-2']
    check_record(got['ch-1'], channel('ch-1'))
    check_record(got['ch-2'], channel('ch-2', tenant_list=['p-3']))
    assert [mapping(c)['id'] for c in connection.get_channels(
        ids=['ch-2', 'nope'])] == ['ch-2']
    with pytest.raises(base.StorageError):
        connection.create_channel(channel('ch-1', name='again'))
    check_record(next(iter(connection.get_channels(ids=['ch-1']))),
                 channel('ch-1'))
    updated = connection.update_channel('ch-1', {'state': 'stopped',
                                                 'tenant_list': ['p-9']})
    check_record(updated, channel('ch-1', state='stopped',
                                  tenant_list=['p-9']))
    check_record(next(iter(connection.get_channels(ids=['ch-1']))),
                 channel('ch-1', state='stopped', tenant_list=['p-9']))
    assert connection.update_channel('nope', {'state': 'x'}) is None
    assert connection.delete_channel('ch-1') is True
    assert connection.delete_channel('ch-1') is False
    assert [mapping(c)['id'] for c in connection.get_channels()] == ['ch-2']


def test_subscriptions_crud(connection):
    connection.create_channel(channel('ch-1'))
    connection.create_channel(channel('ch-2'))
    subs = [subscription('s-1', 'ch-1'), subscription('s-2', 'ch-1'),
            subscription('s-3', 'ch-2', meters=['memory'])]
    for sub in subs:
        connection.create_subscription(sub)
    got = {mapping(s)['id']: s for s in connection.get_subscriptions()}
    assert sorted(got) == ['s-1', 's-2', 's-3']
    for sub in subs:
        check_record(got[sub['id']], sub)
    assert sorted(mapping(s)['id'] for s in connection.get_subscriptions(
        channel_id='ch-1')) == ['s-1', 's-2']
    assert sorted(mapping(s)['id'] for s in connection.get_subscriptions(
        ids=['s-3', 'nope'])) == ['s-3']
    assert connection.delete_subscription('s-2') is True
    assert connection.delete_subscription('s-2') is False
    assert sorted(mapping(s)['id'] for s in
                  connection.get_subscriptions()) == ['s-1', 's-3']
    # Deleting a channel deletes its subscriptions.
    assert connection.delete_channel('ch-1') is True
    assert sorted(mapping(s)['id'] for s in
                  connection.get_subscriptions()) == ['s-3']


def test_polling_overrides(connection):
    before = datetime.datetime.now(UTC)
    set_cpu = connection.set_polling_override(
        'cpu_source', {'interval': 30, 'meters': ['cpu', '!cpu_util']})
    connection.set_polling_override('net', {'enabled': False})
    got = connection.get_polling_overrides()
    assert sorted(got) == ['cpu_source', 'net']
    assert got['cpu_source'] == set_cpu
    assert {k: v for k, v in got['cpu_source'].items()
            if k != 'updated_at'} == {'interval': 30,
                                      'meters': ['cpu', '!cpu_util']}
    assert got['net']['enabled'] is False and len(got['net']) == 2
    for override in got.values():
        assert base.parse_timestamp(override['updated_at']) >= before
    # A change merges into the override; None drops one field.
    merged = connection.set_polling_override(
        'cpu_source', {'interval': 60, 'meters': None, 'enabled': True})
    assert {k: v for k, v in merged.items() if k != 'updated_at'} == {
        'interval': 60, 'enabled': True}
    assert connection.get_polling_overrides()['cpu_source'] == merged
    assert base.parse_timestamp(merged['updated_at']) >= \
        base.parse_timestamp(set_cpu['updated_at'])
    # Dropping every field removes the override.
    assert connection.set_polling_override(
        'net', {'enabled': None}) is None
    assert sorted(connection.get_polling_overrides()) == ['cpu_source']
    assert connection.set_polling_override('never', {'interval': None}) \
        is None
    assert sorted(connection.get_polling_overrides()) == ['cpu_source']
    with pytest.raises(ValueError, match='resources'):
        connection.set_polling_override('net', {'resources': ['x']})
    assert sorted(connection.get_polling_overrides()) == ['cpu_source']


def test_subscriptions_version_changes_with_every_change(connection):
    connection.create_channel(channel('ch-1'))
    seen = [connection.subscriptions_version()]
    connection.create_subscription(subscription('s-1', 'ch-1'))
    seen.append(connection.subscriptions_version())
    assert connection.subscriptions_version() == seen[-1]
    connection.create_subscription(subscription('s-2', 'ch-1'))
    seen.append(connection.subscriptions_version())
    connection.delete_subscription('s-1')
    seen.append(connection.subscriptions_version())
    connection.delete_subscription('s-1')
    assert connection.subscriptions_version() == seen[-1]
    connection.delete_channel('ch-1')
    seen.append(connection.subscriptions_version())
    assert len(set(seen)) == len(seen), seen


def test_subscription_counters_add_up(connection):
    connection.create_channel(channel('ch-1'))
    connection.create_subscription(subscription('s-1', 'ch-1'))
    connection.create_subscription(subscription('s-2', 'ch-1'))
    assert connection.get_subscription_counters() == {}
    connection.add_subscription_counters({
        's-1': {'delivered': 3, 'dropped': 0, 'last_error': None},
        's-2': {'delivered': 0, 'dropped': 2, 'last_error': 'refused'},
        'gone': {'delivered': 9, 'dropped': 9, 'last_error': 'x'}})
    connection.add_subscription_counters({
        's-1': {'delivered': 4, 'dropped': 1, 'last_error': 'timeout'},
        's-2': {'delivered': 1, 'dropped': 0, 'last_error': None}})
    assert connection.get_subscription_counters() == {
        's-1': {'delivered': 7, 'dropped': 1, 'last_error': 'timeout'},
        's-2': {'delivered': 1, 'dropped': 2, 'last_error': 'refused'}}
    assert list(connection.get_subscription_counters(ids=['s-2'])) == [
        's-2']
    # A subscription made again (replaced) starts from zero.
    connection.delete_subscription('s-1')
    connection.create_subscription(subscription('s-1', 'ch-1'))
    assert 's-1' not in connection.get_subscription_counters()
    connection.delete_channel('ch-1')
    assert connection.get_subscription_counters() == {}


# --- property tests: every driver answers as the reference -----------------

NAMES = {'cpu': ('ns', 'cumulative'), 'memory': ('MB', 'gauge'),
         'disk.read.bytes': ('B', 'delta'), 'net_in': ('B/s', 'gauge')}
UNITS = ('ns', 'MB', 'B')
PROJECTS = ('p-1', 'p-2', 'P-1', 'p_3')
USERS = ('u-1', 'u-2', 'U-1', None)
RESOURCES = ('vm-1', 'vm-10', 'vm-2', 'VM-1', 'host_a.example', 'vm%1')
SOURCES = ('openstack', 'cord', 'open_stack')
META_STRINGS = ('active', 'ACTIVE', 'act%ve', 'a_b', 'x.y*z[1]?',
                'back\\slash', 'caf\u00e9', '', '5', '1', 'true', "it's")
META_NUMBERS = (0, 1, 2, 5, -3, 2.5, -0.5, 1.0, 1e6, 10)
FLAVORS = ('m1.small', 'm1.large', 'M1.small')
# Offsets (microseconds) that land on period boundaries and filter bounds.
SPECIAL_OFFSETS = (0, 1, HOUR * 10**6, HOUR * 10**6 - 1, DAY * 10**6,
                   DAY * 10**6 + 1, 1800 * 10**6)
SPAN = 3 * DAY * 10**6
TZ_STYLES = ('utc', 'z', 'naive', '+02:00', '-05:30', 'datetime')
GROUPBY_CHOICES = ('user_id', 'project_id', 'resource_id', 'source',
                   'resource_metadata.state', 'resource_metadata.size',
                   'resource_metadata.enabled',
                   'resource_metadata.flavor.name',
                   'resource_metadata.os-type:x@y',
                   'resource_metadata.nul', 'resource_metadata.absent')
ORDERABLE = ('timestamp', 'volume', 'name', 'resource_id', 'project_id',
             'source', 'unit', 'type', 'message_id', 'id')
META_FIELDS = ('resource_metadata.state', 'resource_metadata.size',
               'resource_metadata.enabled', 'resource_metadata.flavor.name',
               'resource_metadata.flavor.vcpus', 'resource_metadata.flavor',
               'resource_metadata.os-type:x@y', 'resource_metadata.tags',
               'resource_metadata.nul', 'resource_metadata.absent',
               'resource_metadata.flavor.name.x')

meta_scalars = st.one_of(st.sampled_from(META_STRINGS),
                         st.sampled_from(META_NUMBERS), st.booleans())


def render_time(ts, style):
    if style == 'datetime':
        return ts
    if style == 'naive':
        return ts.replace(tzinfo=None).isoformat()
    if style == 'z':
        return ts.isoformat().replace('+00:00', 'Z')
    if style == 'utc':
        return ts.isoformat()
    hours, minutes = style[1:].split(':')
    delta = datetime.timedelta(hours=int(hours), minutes=int(minutes))
    zone = datetime.timezone(delta if style[0] == '+' else -delta)
    return ts.astimezone(zone).isoformat()


instants = st.one_of(st.integers(0, SPAN), st.sampled_from(
    SPECIAL_OFFSETS)).map(lambda us: T0 + datetime.timedelta(
        microseconds=us))


@st.composite
def timestamps(draw):
    return render_time(draw(instants), draw(st.sampled_from(TZ_STYLES)))


volumes = st.one_of(st.integers(-4000, 4000).map(lambda v: v / 4),
                    st.integers(-1000, 1000))

metadata_st = st.fixed_dictionaries({}, optional={
    'state': meta_scalars,
    'size': meta_scalars,
    'enabled': st.one_of(st.booleans(), st.sampled_from([0, 1, '1'])),
    'flavor': st.one_of(
        st.fixed_dictionaries({}, optional={
            'name': st.sampled_from(FLAVORS),
            'vcpus': st.sampled_from([1, 2, 4, '4'])}),
        st.just('m1.tiny')),
    'os-type:x@y': st.sampled_from(['linux', 'windows']),
    'tags': st.lists(st.sampled_from(['a', 'b']), max_size=2),
    'nul': st.none(),
})


class ShownSample(sample_mod.Sample):
    """A Sample whose repr shows every field (falsifying examples)."""

    __slots__ = ()

    def __repr__(self):
        fields = ', '.join(f'{f}={getattr(self, f)!r}' for f in self.FIELDS
                           if f not in ('id', 'recorded_at'))
        return f'Sample({fields})'


@st.composite
def sample_st(draw, index):
    name = draw(st.sampled_from(sorted(NAMES)))
    unit, kind = NAMES[name]
    if draw(st.integers(0, 7)) == 0:
        unit = draw(st.sampled_from(UNITS))
    return ShownSample(
        name=name, type=kind, unit=unit, volume=draw(volumes),
        user_id=draw(st.sampled_from(USERS)),
        project_id=draw(st.sampled_from(PROJECTS)),
        resource_id=draw(st.sampled_from(RESOURCES)),
        timestamp=draw(timestamps()),
        resource_metadata=draw(metadata_st),
        source=draw(st.sampled_from(SOURCES)), message_id=f'm-{index}')


@st.composite
def stores(draw, max_samples=30):
    """(samples, batches): the samples, and the batches that deliver them
    (out of order, some redelivered)."""
    count = draw(st.integers(0, max_samples))
    samples = [draw(sample_st(i)) for i in range(count)]
    order = draw(st.permutations(range(count)))
    batches, start = [], 0
    while start < count:
        size = draw(st.integers(1, max(1, count - start)))
        batches.append([samples[i] for i in order[start:start + size]])
        start += size
    if batches and draw(st.booleans()):
        batches.append(batches[draw(st.integers(0, len(batches) - 1))])
    return samples, batches


def record_all(connection, batches):
    for batch in batches:
        result = connection.record_samples(batch)
        assert list(result.rejected) == [], result.rejected


STRING_POOLS = {
    'name': tuple(NAMES) + ('nope',), 'type': sample_mod.TYPES,
    'unit': UNITS + ('B/s',), 'user_id': USERS[:-1] + ('u-9',),
    'project_id': PROJECTS + ('p-9',), 'resource_id': RESOURCES,
    'source': SOURCES, 'message_id': ('m-0', 'm-1', 'm-5', 'x'),
}


def value_pools(samples):
    """Field -> the values the samples hold (scalars only), so that
    generated filters select some of them."""
    pools = {}
    for item in samples:
        data = item.as_dict()
        for field in tuple(STRING_POOLS) + ('volume',) + META_FIELDS:
            value = query.field_value(data, field)
            if isinstance(value, (str, int, float, bool)):
                pools.setdefault(field, set()).add(value)
        pools.setdefault('timestamp', set()).add(instant(data['timestamp']))
    return {field: sorted(values, key=repr)
            for field, values in pools.items()}


def _present_or(pools, field, fallback):
    present = pools.get(field)
    if not present:
        return fallback
    return st.one_of(st.sampled_from(present), fallback)


@st.composite
def filter_instants(draw, pools):
    """A timestamp near a sample's (often exactly on it), rendered in some
    time zone."""
    present = pools.get('timestamp')
    if present and draw(st.integers(0, 4)):
        ts = draw(st.sampled_from(present)) + datetime.timedelta(
            microseconds=draw(st.one_of(
                st.sampled_from([0, 0, 1, -1]),
                st.integers(-2 * HOUR * 10**6, 2 * HOUR * 10**6))))
    else:
        ts = draw(instants)
    return render_time(ts, draw(st.sampled_from(TZ_STYLES)))


@st.composite
def like_patterns(draw, pool):
    text = draw(pool)
    how = draw(st.sampled_from(['exact', 'prefix', 'suffix', 'one char',
                                'upper', 'any', 'inner']))
    if how == 'prefix':
        return text[:draw(st.integers(0, len(text)))] + '%'
    if how == 'suffix':
        return '%' + text[draw(st.integers(0, len(text))):]
    if how == 'one char' and text:
        i = draw(st.integers(0, len(text) - 1))
        return text[:i] + '_' + text[i + 1:]
    if how == 'upper':
        return text.upper()
    if how == 'any':
        return '%'
    if how == 'inner' and len(text) > 2:
        return '%' + text[1:-1] + '%'
    return text


def _strings(pools, field, fallback):
    present = [v for v in pools.get(field, ()) if isinstance(v, str)]
    fallback = st.sampled_from(fallback)
    return st.one_of(st.sampled_from(present), fallback) if present \
        else fallback


@st.composite
def leaves(draw, pools):
    """(op, field, value): one valid term of the complex query, its value
    often one the samples hold."""
    kind = draw(st.sampled_from(['string', 'string', 'volume', 'timestamp',
                                 'metadata', 'metadata', 'metadata']))
    if kind == 'string':
        field = draw(st.sampled_from(sorted(STRING_POOLS)))
        op = draw(st.sampled_from(query.LEAF_OPS))
        values = _strings(pools, field, STRING_POOLS[field])
        if op == 'like':
            return op, field, draw(like_patterns(values))
    elif kind == 'volume':
        field = 'volume'
        op = draw(st.sampled_from(query.COMPARISONS + ('in',)))
        values = _present_or(pools, field, st.one_of(
            volumes, st.sampled_from([0, 0.25, -1.5])))
    elif kind == 'timestamp':
        field = 'timestamp'
        op = draw(st.sampled_from(query.COMPARISONS + ('in',)))
        values = filter_instants(pools)
    else:
        field = draw(st.sampled_from(META_FIELDS))
        op = draw(st.sampled_from(query.LEAF_OPS))
        if op == 'like':
            return op, field, draw(like_patterns(_strings(
                pools, field, META_STRINGS + FLAVORS)))
        values = _present_or(pools, field, st.one_of(
            meta_scalars, st.sampled_from(FLAVORS)))
    if op == 'in':
        return op, field, draw(st.lists(values, min_size=1, max_size=3))
    return op, field, draw(values)


def expressions(pools):
    return st.recursive(
        leaves(pools).map(lambda t: {t[0]: {t[1]: t[2]}}),
        lambda children: st.one_of(
            st.lists(children, min_size=2, max_size=3).map(
                lambda e: {'and': e}),
            st.lists(children, min_size=2, max_size=3).map(
                lambda e: {'or': e}),
            children.map(lambda e: {'not': e})),
        max_leaves=5)


orderbys = st.one_of(st.none(), st.lists(
    st.tuples(st.sampled_from(ORDERABLE), st.sampled_from(['asc', 'desc'])),
    min_size=1, max_size=3, unique_by=lambda item: item[0]))

limits = st.one_of(st.none(), st.integers(1, 8))


@st.composite
def sample_filters(draw, pools, sparse=False):
    """SampleFilter keyword arguments (``sparse``: fewer terms)."""
    kwargs = {}
    rare = 9 if sparse else 4
    for field, key in (('user_id', 'user_id'),
                       ('project_id', 'project_id'),
                       ('resource_id', 'resource_id'),
                       ('meter', 'name'), ('source', 'source')):
        how = draw(st.sampled_from(['none'] * (rare + 1) + ['one', 'many']))
        values = _strings(pools, key, STRING_POOLS[key])
        if how == 'one':
            kwargs[field] = draw(values)
        elif how == 'many':
            chosen = draw(st.lists(values, min_size=1, max_size=3,
                                   unique=True))
            kwargs[field] = draw(st.sampled_from(
                [list, tuple, set, frozenset]))(chosen)
    if draw(st.integers(0, 9)) == 0:
        kwargs['message_id'] = draw(_strings(pools, 'message_id',
                                             STRING_POOLS['message_id']))
    if draw(st.booleans()):
        kwargs['start_timestamp'] = draw(filter_instants(pools))
        kwargs['start_timestamp_op'] = draw(st.sampled_from(['ge', 'gt']))
    if draw(st.booleans()):
        kwargs['end_timestamp'] = draw(filter_instants(pools))
        kwargs['end_timestamp_op'] = draw(st.sampled_from(['le', 'lt']))
        start = kwargs.get('start_timestamp')
        if start is not None and instant(start) > instant(
                kwargs['end_timestamp']) and draw(st.integers(0, 3)):
            kwargs['start_timestamp'], kwargs['end_timestamp'] = (
                kwargs['end_timestamp'], start)
    if draw(st.integers(0, rare)) == 0:
        key = draw(st.sampled_from(['resource_metadata.state',
                                    'metadata.size', 'metadata.enabled',
                                    'resource_metadata.flavor.name']))
        field = 'resource_metadata.' + key.split('.', 1)[1]
        kwargs['metaquery'] = {key: draw(_present_or(pools, field, st.one_of(
            meta_scalars, st.sampled_from(FLAVORS))))}
    if draw(st.integers(0, rare)) == 0:
        kwargs['conditions'] = [(field, op, value) for op, field, value in
                                draw(st.lists(leaves(pools), min_size=1,
                                              max_size=2))]
    return kwargs


def order_key(item, orderby):
    """The tuple a result is sorted by (directions folded away)."""
    data = sample_dict(item)
    fields = query.validate_orderby(orderby) or [('timestamp', 'desc')]
    return tuple(oracle._order_value(data, f) for f, _ in fields)


def check_query_result(got, samples, expression, orderby, limit):
    """``got`` is what query_samples must return over ``samples``: the
    matching samples, in order; with a limit, a prefix of that order (ties
    at the cut may be broken either way)."""
    got = list(got)
    assert all(isinstance(s, sample_mod.Sample) for s in got)
    assert_samples_match(got, samples)
    expected = oracle.reference_query_samples(samples, expression, orderby)
    matching = {s['id'] for s in expected}
    extra = [sample_dict(s)['id'] for s in got
             if sample_dict(s)['id'] not in matching]
    assert not extra, f'returned samples that do not match: {extra}'
    want = expected if limit is None else expected[:limit]
    assert len(got) == len(want), (
        f'{len(got)} samples, expected {len(want)}: missing '
        f'{sorted(matching - {sample_dict(s)["id"] for s in got})}')
    got_keys = [order_key(s, orderby) for s in got]
    want_keys = [order_key(s, orderby) for s in want]
    assert got_keys == want_keys, 'not in the asked order'


@PROPERTY
@given(store=stores(), data=st.data())
def test_property_query_samples(connection_factory, store, data):
    samples, batches = store
    pools = value_pools(samples)
    expression = (data.draw(expressions(pools), label='expression')
                  if data.draw(st.integers(0, 9), label='filtered') else
                  None)
    orderby = data.draw(orderbys, label='orderby')
    limit = data.draw(limits, label='limit')
    connection = connection_factory()
    record_all(connection, batches)
    expression = query.validate(expression) if expression else None
    got = connection.query_samples(expression, orderby, limit)
    check_query_result(got, samples, expression, orderby, limit)


def _unique(values):
    values = set(values)
    return next(iter(values)) if len(values) == 1 else _AMBIGUOUS


_AMBIGUOUS = object()


def project_scope(expression):
    """The top-level conjuncts of ``expression`` on project_id (None when
    it does not limit the projects): what a caller limited to some
    projects adds to its filters."""
    if expression is None:
        return None
    ((op, operand),) = expression.items()
    conjuncts = operand if op == 'and' else [expression]
    terms = [term for term in conjuncts
             if set(next(iter(term.values()))) == {'project_id'}
             and next(iter(term)) in ('=', 'in')]
    if not terms:
        return None
    return terms[0] if len(terms) == 1 else {'and': terms}


def check_resources(got, samples, expression):
    """get_resources' answer over ``samples`` for a filter. A filter
    limited to projects sees nothing of other projects' samples: every
    field of a resource comes from the samples in those projects."""
    got = list(got)
    matching = [s for s in map(sample_dict, samples)
                if query.matches(expression, s)]
    scope = project_scope(expression)
    every = [s for s in map(sample_dict, samples)
             if query.matches(scope, s)]
    by_resource = {}
    for s in matching:
        by_resource.setdefault(s['resource_id'], []).append(s)
    got_ids = [r.resource_id for r in got]
    assert sorted(got_ids) == sorted(by_resource), 'resources'
    for resource in got:
        assert isinstance(resource, base.Resource)
        rid = resource.resource_id
        mine = by_resource[rid]
        all_mine = [s for s in every if s['resource_id'] == rid]
        times = [instant(s['timestamp']) for s in mine]
        assert instant(resource.first_sample_timestamp) == min(times), rid
        assert instant(resource.last_sample_timestamp) == max(times), rid
        # Latest metadata: of the latest sample (matching, or of all:
        # the interface does not say); unknown on a tie.
        candidates = []
        for group in (mine, all_mine):
            latest = max(instant(s['timestamp']) for s in group)
            tied = [s for s in group if instant(s['timestamp']) == latest]
            if len(tied) > 1:
                candidates = None
                break
            candidates.append(tied[0]['resource_metadata'])
        if candidates is not None:
            assert any(same_json(resource.metadata or {}, c)
                       for c in candidates), (rid, resource.metadata,
                                              candidates)
        names = meter_names(resource)
        assert {s['name'] for s in mine} <= names <= {
            s['name'] for s in all_mine}, (rid, names)
        for field in ('project_id', 'user_id', 'source'):
            value = _unique(s[field] for s in all_mine)
            if value is not _AMBIGUOUS:
                assert getattr(resource, field) == value, (rid, field)


METER_FIELDS = ('name', 'type', 'unit', 'resource_id', 'project_id',
                'user_id', 'source')


def check_meters(got, unique_got, samples, expression):
    """get_meters: one Meter per distinct (name, type, unit, resource,
    project, user, source) of the matching samples; unique: one per
    name, one of those."""
    got, unique_got = list(got), list(unique_got)
    assert all(isinstance(m, base.Meter) for m in got + unique_got)
    matching = [s for s in map(sample_dict, samples)
                if query.matches(expression, s)]
    expected = {tuple(s[f] for f in METER_FIELDS) for s in matching}
    got_tuples = [tuple(getattr(m, f) for f in METER_FIELDS) for m in got]
    assert len(got_tuples) == len(set(got_tuples)), 'duplicate meters'
    assert set(got_tuples) == expected, (
        f'meters: {sorted(set(got_tuples) - expected, key=repr)} more, '
        f'{sorted(expected - set(got_tuples), key=repr)} missing')
    names = [m.name for m in unique_got]
    assert sorted(names) == sorted({s['name'] for s in matching}), \
        'unique meters'
    for m in unique_got:
        assert tuple(getattr(m, f) for f in METER_FIELDS) in expected, m


@PROPERTY
@given(store=stores(), data=st.data())
def test_property_sample_filter(connection_factory, store, data):
    samples, batches = store
    filter_kwargs = data.draw(sample_filters(value_pools(samples)),
                              label='SampleFilter')
    orderby = data.draw(orderbys, label='orderby')
    limit = data.draw(limits, label='limit')
    connection = connection_factory()
    record_all(connection, batches)
    sample_filter = base.SampleFilter(**filter_kwargs)
    expression = sample_filter.expression()
    got = connection.get_samples(sample_filter, limit=limit,
                                 orderby=orderby)
    check_query_result(got, samples, expression, orderby, limit)
    check_resources(connection.get_resources(sample_filter), samples,
                    expression)
    check_meters(connection.get_meters(sample_filter),
                 connection.get_meters(sample_filter, unique=True),
                 samples, expression)


# --- resources seen from some projects ---------------------------------------
# A project may write any resource id, so ids collide across projects; a
# reader limited to some projects must see each resource exactly as a store
# holding only those projects' samples shows it.

def resource_view(resource):
    """Everything a Resource says, comparable across stores."""
    return {
        'resource_id': resource.resource_id,
        'project_id': resource.project_id, 'user_id': resource.user_id,
        'source': resource.source,
        'first': instant(resource.first_sample_timestamp),
        'last': instant(resource.last_sample_timestamp),
        'metadata': resource.metadata or {},
        'meters': sorted((tuple(getattr(m, f) for f in METER_FIELDS)
                          for m in resource.meters or ()), key=repr),
    }


def same_views(got, want):
    assert [v['resource_id'] for v in got] == [
        v['resource_id'] for v in want], 'resources'
    for mine, reference in zip(got, want, strict=True):
        for field in mine:
            same = (same_json(mine[field], reference[field])
                    if field == 'metadata' else
                    mine[field] == reference[field])
            assert same, (mine['resource_id'], field, mine[field],
                          reference[field])


def scoped_reads(connection, projects, filter_kwargs, ids):
    """Every way to read resources limited to ``projects``: the list
    (bare and filtered) and each id as an item (a list of one)."""
    reads = {'list': base.SampleFilter(project_id=projects),
             'filtered': base.SampleFilter(**{**filter_kwargs,
                                              'project_id': projects})}
    for rid in ids:
        reads[f'item {rid}'] = base.SampleFilter(resource_id=rid,
                                                 project_id=projects)
    return {route: [resource_view(r) for r in connection.get_resources(
        sample_filter, limit=1 if route.startswith('item') else None)]
        for route, sample_filter in reads.items()}


@PROPERTY
@given(store=stores(), data=st.data())
def test_property_resources_of_some_projects(connection_factory, store,
                                             data):
    samples, batches = store
    projects = data.draw(st.one_of(
        st.sampled_from(PROJECTS),
        st.lists(st.sampled_from(PROJECTS + ('p-9',)), min_size=1,
                 max_size=3, unique=True)), label='projects')
    filter_kwargs = data.draw(sample_filters(value_pools(samples),
                                             sparse=True), label='filter')
    filter_kwargs.pop('project_id', None)
    allowed = {projects} if isinstance(projects, str) else set(projects)
    ids = RESOURCES + ('nope',)
    connection = connection_factory()
    record_all(connection, batches)
    got = scoped_reads(connection, projects, filter_kwargs, ids)
    for route, views in got.items():
        assert all(v['project_id'] in allowed for v in views), route
    own = [s for s in samples if s.project_id in allowed]
    connection = connection_factory()
    record_all(connection, [[s for s in batch if s.project_id in allowed]
                            for batch in batches])
    want = scoped_reads(connection, projects, filter_kwargs, ids)
    for route in got:
        same_views(got[route], want[route])
    # The item answers what the list shows of that id.
    listed = {v['resource_id']: v for v in got['list']}
    for rid in ids:
        same_views(got[f'item {rid}'], [listed[rid]] if rid in listed
                   else [])
    assert sorted(listed) == sorted({s.resource_id for s in own})


def test_resource_of_some_projects_ignores_other_projects(connection):
    """A foreign project writes on an allowed resource's id: first and
    last, the latest sample's fields and the meters stay the allowed
    project's, in the list and the item."""
    connection.record_samples([
        make_sample(0, resource_id='vm-1', project_id='p-1',
                    user_id='u-1', timestamp=at(HOUR),
                    resource_metadata={'state': 'mine'}),
        make_sample(1, resource_id='vm-1', project_id='p-evil',
                    user_id='u-evil', timestamp=at(0), name='secret',
                    resource_metadata={'state': 'theirs-first'}),
        make_sample(2, resource_id='vm-1', project_id='p-evil',
                    user_id='u-evil', timestamp=at(2 * HOUR),
                    name='secret', source='evil',
                    resource_metadata={'state': 'theirs-last'}),
    ])
    for sample_filter in (
            base.SampleFilter(project_id='p-1'),
            base.SampleFilter(project_id={'p-1', 'p-2'}),
            base.SampleFilter(project_id=['p-1'], resource_id='vm-1'),
            base.SampleFilter(project_id='p-1', meter='cpu')):
        (resource,) = connection.get_resources(sample_filter)
        assert resource.project_id == 'p-1'
        assert resource.user_id == 'u-1'
        assert instant(resource.first_sample_timestamp) == instant(at(HOUR))
        assert instant(resource.last_sample_timestamp) == instant(at(HOUR))
        assert resource.metadata == {'state': 'mine'}
        assert meter_names(resource) == {'cpu'}
        assert {m.project_id for m in resource.meters} == {'p-1'}
    (union,) = connection.get_resources()
    assert meter_names(union) == {'cpu', 'secret'}
    assert connection.get_resources(base.SampleFilter(
        project_id='p-2', resource_id='vm-1')) == []


def stat_key(stat, groupby):
    period_start = stat['period_start']
    group = stat['groupby'] or {}
    return (instant(period_start),
            tuple(oracle.group_key(group.get(f)) for f in groupby),
            stat['unit'])


def stat_differences(got, want):
    problems = []
    for field in base.Statistics.__slots__:
        g, w = got[field], want[field]
        if field in STAT_TIME_FIELDS:
            ok = g is not None and instant(g) == instant(w)
        elif field == 'groupby':
            ok = (g is None and w is None) or (
                isinstance(g, dict) and isinstance(w, dict)
                and g.keys() == w.keys() and all(
                    oracle.group_key(g[k]) == oracle.group_key(w[k])
                    for k in w))
        elif field == 'aggregate':
            ok = isinstance(g, dict) and g.keys() == w.keys()
            for key in w if ok else ():
                tolerance = 1e-6 if key == 'stddev' else 1e-9
                ok = ok and close(g[key], w[key], rel=tolerance)
        elif w is None:
            ok = g is None
        elif field == 'stddev':
            ok = close(g, w, rel=1e-6)
        elif field in STAT_NUMBER_FIELDS:
            ok = close(g, w)
        else:
            ok = g == w
        if not ok:
            problems.append(f'{field}: got {g!r}, expected {w!r}')
    return problems


def check_statistics(got, samples, sample_filter, period, groupby,
                     aggregates):
    got = list(got)
    assert all(isinstance(s, base.Statistics) for s in got)
    want = oracle.reference_statistics(samples, sample_filter, period,
                                        groupby, aggregates)
    _, groupby, _ = base.check_statistics_args(period, groupby, aggregates)
    got_dicts = [s.as_dict() for s in got]
    assert all(s['period_start'] is not None for s in got_dicts), got
    got_by_key = {}
    for stat in got_dicts:
        key = stat_key(stat, groupby)
        assert key not in got_by_key, f'two statistics for {key}'
        got_by_key[key] = stat
    want_by_key = {stat_key(s, groupby): s for s in want}
    assert sorted(got_by_key, key=repr) == sorted(want_by_key, key=repr), (
        'periods/groups/units differ: got '
        f'{sorted(set(got_by_key) - set(want_by_key), key=repr)} more, '
        f'{sorted(set(want_by_key) - set(got_by_key), key=repr)} missing')
    for key, stat in got_by_key.items():
        problems = stat_differences(stat, want_by_key[key])
        assert not problems, f'statistics {key}: {problems}'
    check_statistics_order(got_dicts, groupby, period)


def check_statistics_order(stats, groupby, period):
    """Sorted by period_start then group values with a period, by group
    values without. The order of values of different kinds is open (SQL
    and BSON differ), so only single-kind values are checked; so is the
    order of units within a group."""
    period = base.check_statistics_args(period, None, None)[0]
    buckets = [instant(s['period_start']) if period else None
               for s in stats]
    if period:
        assert buckets == sorted(buckets), 'not sorted by period_start'
    for bucket in set(buckets):
        keys = [stat_key(s, groupby)[1:] for s, b in zip(stats, buckets,
                                                          strict=True)
                if b == bucket]
        kinds = [{group[i][0] for group, _ in keys if group[i] is not None}
                 for i in range(len(groupby))]
        if any(len(k) > 1 for k in kinds):
            continue
        order = [tuple((0,) if k is None else (1, k[1]) for k in group)
                 for group, _ in keys]
        assert order == sorted(order), (
            f'not sorted by group values: {order}')


aggregate_choices = st.one_of(
    st.sampled_from(['avg', 'sum', 'min', 'max', 'count', 'stddev']),
    st.sampled_from(['avg', 'sum', 'min', 'max', 'count', 'stddev']).map(
        lambda f: (f, None)),
    st.sampled_from(base.CARDINALITY_FIELDS).map(
        lambda f: ('cardinality', f)))


@PROPERTY
@given(store=stores(), data=st.data(),
       period=st.sampled_from([None, 0, 1, 60, 1800, HOUR, 5400.5, DAY,
                               10**6]),
       groupby=st.lists(st.sampled_from(GROUPBY_CHOICES), max_size=2,
                        unique=True),
       aggregates=st.one_of(st.none(), *[st.lists(
           aggregate_choices, min_size=1, max_size=4)] * 2))
def test_property_statistics(connection_factory, store, data, period,
                             groupby, aggregates):
    samples, batches = store
    filter_kwargs = data.draw(sample_filters(value_pools(samples),
                                             sparse=True),
                              label='SampleFilter')
    connection = connection_factory()
    record_all(connection, batches)
    sample_filter = base.SampleFilter(**filter_kwargs)
    got = connection.get_statistics(sample_filter, period=period,
                                    groupby=groupby, aggregates=aggregates)
    check_statistics(got, samples, sample_filter, period, groupby,
                     aggregates)


# --- apply_inventory: the rules of calipso_agent.inventory ------------------

def obj_at(type, oid, second, **fields):
    return inventory_mod.make_object(type, oid, at(second), **fields)


def graph(connection, created=True):
    """(objects by id, links by triple) as stored; without created_at
    unless ``created`` (without a source's creation time, it is the first
    event applied: it depends on the arrival order)."""
    def kept(item):
        item = dict(mapping(item))
        if not created:
            item.pop('created_at', None)
        return item
    return ({o['id']: kept(o) for o in connection.get_inventory()},
            {link_triple(lk): kept(lk) for lk in connection.get_links()})


def host_tree(second=0):
    return [obj_at('region', 'region-one', second),
            obj_at('availability_zone', 'az-nova', second, name='nova',
                   parent_id='region-one'),
            obj_at('host', 'compute-1', second, parent_id='az-nova'),
            obj_at('host', 'compute-2', second, parent_id='az-nova')]


def instance_at(second, host='compute-1', state='active'):
    return obj_at('instance', 'vm-1', second, name='web', project_id='p-1',
                  parent_id=host, host=host, state=state)


def vnic_at(second, host='compute-1'):
    return obj_at('vnic', 'vm-1-tapabc', second, project_id='p-1',
                  parent_id='vm-1', host=host)


def instance_host(second, host='compute-1'):
    return inventory_mod.make_link('instance', 'vm-1', 'host', host,
                                   at(second), project_id='p-1')


def test_apply_inventory_redelivery_changes_nothing(connection):
    objects = host_tree() + [instance_at(10), vnic_at(10)]
    links = [instance_host(10)]
    assert connection.apply_inventory(objects, links) == len(objects) + 1
    first = graph(connection)
    assert connection.apply_inventory(objects, links) == 0
    assert connection.apply_inventory(list(reversed(objects)), links) == 0
    assert graph(connection) == first
    vm = first[0]['vm-1']
    assert vm['id_path'] == '/region-one/az-nova/compute-1/vm-1'
    assert vm['name_path'] == '/region-one/nova/compute-1/web'
    assert vm['state'] == 'ACTIVE'
    assert instant(vm['last_event_at']) == instant(at(10))


def test_apply_inventory_older_event_changes_nothing(connection):
    connection.apply_inventory([instance_at(20, state='paused')])
    before = graph(connection)
    assert connection.apply_inventory([instance_at(10, state='active')]) == 0
    assert graph(connection) == before
    assert before[0]['vm-1']['state'] == 'PAUSED'
    assert connection.apply_inventory([instance_at(30, state='active')]) == 1
    assert graph(connection)[0]['vm-1']['state'] == 'ACTIVE'



def test_apply_inventory_reads_back_what_it_wrote(connection):
    """What a batch reads back is what it wrote (integers exact, floats
    floats): a redelivery changes nothing, and queries answer the same
    values. The SQL stores keep an integer beyond 64 bits exact; BSON
    has none, so MongoDB keeps it as a float (impl_mongodb._clean)."""
    wide = 2 ** 70 + 1
    attributes = {'bytes': 2 ** 62 + 1, 'wide': wide, 'ratio': 0.1,
                  'nested': {'n': [1]}}
    vm = obj_at('instance', 'vm-big', 10, attributes=attributes)
    assert connection.apply_inventory([vm]) == 1
    assert connection.apply_inventory([vm]) == 0
    stored = graph(connection)[0]['vm-big']['attributes']
    sql = getattr(connection, 'backend', None) in ('sqlite', 'postgresql')
    assert stored == dict(attributes, wide=wide if sql else float(wide))
    assert type(stored['bytes']) is int

def test_apply_inventory_tombstone_blocks_resurrection(connection):
    connection.apply_inventory(host_tree() + [instance_at(10)])
    connection.apply_inventory([inventory_mod.tombstone(
        'instance', 'vm-1', at(30), project_id='p-1', parent_id='compute-1')])
    for late in (instance_at(20, state='active'), instance_at(10)):
        connection.apply_inventory([late])
        vm = graph(connection)[0]['vm-1']
        assert vm['state'] == 'deleted'
        assert instant(vm['deleted_at']) == instant(at(30))
        assert instant(vm['last_event_at']) == instant(at(30))
    # The tombstone kept what the delete did not say.
    assert (vm['name'], vm['host']) == ('web', 'compute-1')
    # A delete seen first: the create that comes late is not applied.
    fresh = inventory_mod.tombstone('network', 'net-9', at(50),
                                    project_id='p-1', parent_id='p-1')
    connection.apply_inventory([fresh])
    connection.apply_inventory([obj_at('network', 'net-9', 40, name='lan',
                                       project_id='p-1', parent_id='p-1')])
    net = graph(connection)[0]['net-9']
    assert (net['state'], net['name']) == ('deleted', 'lan')
    assert instant(net['last_event_at']) == instant(at(50))


def test_apply_inventory_delete_closes_links(connection):
    connection.apply_inventory(
        host_tree() + [instance_at(10), vnic_at(10)],
        [instance_host(10), inventory_mod.make_link(
            'instance', 'vm-1', 'vnic', 'vm-1-tapabc', at(10),
            project_id='p-1')])
    connection.apply_inventory([inventory_mod.tombstone(
        'instance', 'vm-1', at(40), project_id='p-1', parent_id='compute-1')])
    objects, links = graph(connection)
    for triple in (('vm-1', 'compute-1', 'instance-host'),
                   ('vm-1', 'vm-1-tapabc', 'instance-vnic')):
        assert links[triple]['state'] == 'deleted', triple
        assert instant(links[triple]['deleted_at']) == instant(at(40))
    # The instance's vNIC goes with it.
    assert objects['vm-1-tapabc']['state'] == 'deleted'
    assert objects['vm-1-tapabc']['deleted_by'] == 'vm-1'
    # A link that arrives late to the deleted instance is born closed.
    connection.apply_inventory([], [inventory_mod.make_link(
        'volume', 'vol-1', 'instance', 'vm-1', at(20), project_id='p-1')])
    links = graph(connection)[1]
    assert links[('vol-1', 'vm-1', 'volume-instance')]['state'] == 'deleted'
    # ... but a link newer than the deletion is not.
    connection.apply_inventory([], [inventory_mod.make_link(
        'volume', 'vol-1', 'host', 'compute-1', at(20))])
    assert graph(connection)[1][('vol-1', 'compute-1', 'volume-host')][
        'state'] == 'ACTIVE'


def port_at(pid, second, network='net-1'):
    return obj_at('port', pid, second, project_id='p-1', parent_id=network,
                  state='active')


def test_apply_inventory_network_delete_marks_its_ports(connection):
    connection.apply_inventory(
        [obj_at('network', 'net-1', 1, project_id='p-1', parent_id='p-1'),
         obj_at('network', 'net-2', 1, project_id='p-1', parent_id='p-1'),
         port_at('port-1', 5), port_at('port-2', 5, network='net-2'),
         obj_at('subnet', 'sub-1', 5, project_id='p-1', parent_id='net-1')],
        [inventory_mod.make_link('port', 'port-1', 'network', 'net-1',
                                 at(5), project_id='p-1')])
    connection.apply_inventory([inventory_mod.tombstone(
        'network', 'net-1', at(60), project_id='p-1', parent_id='p-1')])
    objects, links = graph(connection)
    for oid in ('port-1', 'sub-1'):
        assert objects[oid]['state'] == 'deleted', oid
        assert objects[oid]['deleted_by'] == 'net-1'
        assert instant(objects[oid]['deleted_at']) == instant(at(60))
    assert objects['port-2']['state'] == 'ACTIVE'
    assert links[('port-1', 'net-1', 'port-network')]['state'] == 'deleted'
    # A port event older than the network's deletion, arriving late: born
    # deleted; the port's own delete is kept as its own.
    connection.apply_inventory([port_at('port-3', 30)])
    assert graph(connection)[0]['port-3']['deleted_by'] == 'net-1'
    connection.apply_inventory([inventory_mod.tombstone(
        'port', 'port-1', at(50), project_id='p-1', parent_id='net-1')])
    port = graph(connection)[0]['port-1']
    assert (port['deleted_by'], instant(port['deleted_at'])) == (
        None, instant(at(50)))


def test_apply_inventory_parent_appears_later(connection):
    connection.apply_inventory([instance_at(10), vnic_at(10)],
                               [instance_host(10)])
    objects = graph(connection)[0]
    assert objects['vm-1']['id_path'] == '/compute-1/vm-1'
    assert objects['vm-1-tapabc']['id_path'] == '/compute-1/vm-1/vm-1-tapabc'
    # The host comes from a scan; its zone and region from later ones.
    connection.apply_inventory([obj_at('host', 'compute-1', 0,
                                       parent_id='az-nova')])
    assert graph(connection)[0]['vm-1']['id_path'] == (
        '/az-nova/compute-1/vm-1')
    connection.apply_inventory(host_tree()[:2])
    objects = graph(connection)[0]
    assert objects['vm-1']['id_path'] == '/region-one/az-nova/compute-1/vm-1'
    assert objects['vm-1-tapabc']['id_path'] == (
        '/region-one/az-nova/compute-1/vm-1/vm-1-tapabc')
    assert objects['vm-1-tapabc']['name_path'] == (
        '/region-one/nova/compute-1/web/vm-1-tapabc')
    # The event's own fields are untouched by the fix.
    assert instant(objects['vm-1']['last_event_at']) == instant(at(10))


def test_apply_inventory_live_migration_moves_instance_and_vnics(
        connection):
    connection.apply_inventory(host_tree() + [instance_at(10), vnic_at(10)],
                               [instance_host(10)])
    connection.apply_inventory([instance_at(20, host='compute-2')],
                               [instance_host(20, host='compute-2')])
    objects, links = graph(connection)
    vm, vnic = objects['vm-1'], objects['vm-1-tapabc']
    assert (vm['parent_id'], vm['host']) == ('compute-2', 'compute-2')
    assert vm['id_path'] == '/region-one/az-nova/compute-2/vm-1'
    assert vnic['host'] == 'compute-2'
    assert vnic['id_path'] == '/region-one/az-nova/compute-2/vm-1/vm-1-tapabc'
    old = links[('vm-1', 'compute-1', 'instance-host')]
    assert (old['state'], old['deleted_by']) == ('deleted', 'compute-2')
    assert links[('vm-1', 'compute-2', 'instance-host')]['state'] == 'ACTIVE'
    # The migration's events replayed late change nothing.
    before = graph(connection)
    connection.apply_inventory([instance_at(10)], [instance_host(10)])
    assert graph(connection) == before


def test_apply_inventory_refuses_invalid_input(connection):
    good = instance_at(10)
    for bad in ({'id': 'x', 'type': 'spaceship', 'last_event_at': at(1)},
                {'id': 'x', 'type': 'host', 'last_event_at': 'yesterday'},
                {'id': '', 'type': 'host', 'last_event_at': at(1)},
                {'id': 'x', 'type': 'host'}):
        with pytest.raises(ValueError):
            connection.apply_inventory([good, bad])
    with pytest.raises(ValueError):
        connection.apply_inventory([good], [{'source_id': 'a'}])
    assert graph(connection) == ({}, {})


def _timeline():
    """Changes of one small cloud, each with its instant: the order they
    happened in."""
    network = ('network', 'net-1')
    return [
        *host_tree(),
        obj_at(*network, 1, project_id='p-1', parent_id='p-1'),
        port_at('port-1', 2),
        port_at('port-2', 3),
        instance_at(4),
        vnic_at(4),
        instance_host(4),
        inventory_mod.make_link('vnic', 'vm-1-tapabc', 'port', 'port-1',
                                at(4), project_id='p-1'),
        inventory_mod.make_link('port', 'port-1', 'network', 'net-1', at(2),
                                project_id='p-1'),
        instance_at(6, state='shutoff'),
        instance_at(8, host='compute-2'),
        instance_host(8, host='compute-2'),
        inventory_mod.tombstone('port', 'port-2', at(9), project_id='p-1',
                                parent_id='net-1'),
        instance_at(10, host='compute-1'),
        instance_host(10, host='compute-1'),
        inventory_mod.tombstone('instance', 'vm-1', at(12),
                                project_id='p-1', parent_id='compute-1',
                                host='compute-1'),
        inventory_mod.tombstone(*network, at(14), project_id='p-1',
                                parent_id='p-1'),
    ]


def _apply_one(connection, change):
    if 'link_type' in change:
        return connection.apply_inventory([], [change])
    return connection.apply_inventory([change])


@PROPERTY
@given(order=st.permutations(range(len(_timeline()))),
       batch=st.integers(1, 5))
def test_property_apply_inventory_any_order_same_graph(
        connection_factory, order, batch):
    expected_store = connection_factory()
    for change in _timeline():
        _apply_one(expected_store, change)
    expected = graph(expected_store, created=False)
    connection = connection_factory()
    changes = [_timeline()[i] for i in order]
    for start in range(0, len(changes), batch):
        part = changes[start:start + batch]
        connection.apply_inventory(
            [c for c in part if 'link_type' not in c],
            [c for c in part if 'link_type' in c])
    # Redelivered in between: nothing changes either.
    connection.apply_inventory(
        [c for c in changes[:3] if 'link_type' not in c],
        [c for c in changes[:3] if 'link_type' in c])
    assert graph(connection, created=False) == expected


def test_apply_inventory_concurrent_batches_follow_the_rules(connection):
    """Batches applied at once by several threads end as if applied one
    after the other: a delete and a create of the same instant, in
    either order, leave the tombstone."""
    import threading

    ids = [f'vm-{i}' for i in range(200)]
    creates = [obj_at('instance', i, 10, project_id='p-1') for i in ids]
    deletes = [inventory_mod.tombstone('instance', i, at(10),
                                       project_id='p-1') for i in ids]
    errors = []
    start_together = threading.Barrier(4)

    def run(changes):
        start_together.wait()
        try:
            for start in range(0, len(changes), 5):
                connection.apply_inventory(changes[start:start + 5])
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(changes,))
               for changes in (creates, deletes, creates, deletes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    objects = graph(connection)[0]
    assert {objects[i]['state'] for i in ids} == {'deleted'}


FIXTURE_CHANGES = None


def fixture_changes():
    """The inventory changes of every fixture the endpoint handles, in
    the order they were sent (create, update, delete)."""
    global FIXTURE_CHANGES
    if FIXTURE_CHANGES is None:
        FIXTURE_CHANGES = [inventory_helpers.changes_of(n)
                           for _, n in inventory_helpers.handled_fixtures()]
    return FIXTURE_CHANGES


def apply_notifications(connection, notifications, batch):
    for start in range(0, len(notifications), batch):
        changes = [c for n in notifications[start:start + batch] for c in n]
        connection.apply_inventory(*inventory_helpers.split(changes))


@PROPERTY
@given(data=st.data(), batch=st.integers(1, 8))
def test_property_fixtures_in_any_order_give_the_same_graph(
        connection_factory, data, batch):
    in_order = fixture_changes()
    order = data.draw(st.permutations(range(len(in_order))), label='order')
    expected_store = connection_factory()
    apply_notifications(expected_store, in_order, 1)
    expected = inventory_helpers.graph(expected_store, created=False)
    assert len(expected[0]) > 20 and len(expected[1]) > 20
    connection = connection_factory()
    apply_notifications(connection, [in_order[i] for i in order], batch)
    assert inventory_helpers.graph(connection, created=False) == expected
    # Everything redelivered once more: nothing changes.
    apply_notifications(connection, in_order, batch)
    assert inventory_helpers.graph(connection, created=False) == expected


# What ``import *`` gives an instantiating module: the tests and the
# fixtures they use besides ``connection``.
__all__ = sorted([name for name in dir() if name.startswith('test_')]
                 + ['loaded', 'small_graph', 'stats_store'])
