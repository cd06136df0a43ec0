"""The MongoDB driver on mongomock (or on the server named by
CALIPSO_TEST_MONGODB_URL): what the contract suite cannot see (indexes,
stored documents, the resource record) and the query semantics checked
against query.matches."""

import datetime
import logging
import math
import os
import statistics
import uuid

import mongomock
import pymongo
import pymongo.errors
import pytest

from calipso_agent import storage
from calipso_agent.storage import base, impl_mongodb
from calipso_agent.storage import query as query_mod
from tests.helpers.basics import make_conf, make_sample

MONGODB_URL = os.environ.get('CALIPSO_TEST_MONGODB_URL')
UTC = datetime.UTC
T0 = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def at(seconds=0, microseconds=0):
    return T0 + datetime.timedelta(seconds=seconds,
                                   microseconds=microseconds)


def iso(seconds=0, microseconds=0):
    return at(seconds, microseconds).isoformat()


@pytest.fixture
def client():
    if MONGODB_URL:
        real = pymongo.MongoClient(MONGODB_URL,
                                   serverSelectionTimeoutMS=5000)
        yield real
        real.close()
    else:
        yield mongomock.MongoClient()


@pytest.fixture
def conf():
    return make_conf(database__metering_time_to_live=-1)


@pytest.fixture
def conn(client, conf):
    name = 'calipso_test_' + uuid.uuid4().hex[:12]
    connection = impl_mongodb.Connection(conf, f'mongodb://localhost/{name}',
                                         client=client)
    connection.upgrade()
    yield connection
    connection.close()
    client.drop_database(name)


def ids(samples):
    return sorted(s.id for s in samples)


def stored(conn, collection='sample'):
    return sorted(conn.db[collection].find(), key=lambda d: d['_id'])


# --- connection and schema --------------------------------------------------

def test_entry_point_and_database_name():
    conf = make_conf(database__connection='mongodb://127.0.0.1:1/metering')
    conn = storage.get_connection(conf)
    try:
        assert isinstance(conn, impl_mongodb.Connection)
        assert conn.db.name == 'metering'
    finally:
        conn.close()
    other = impl_mongodb.Connection(conf, 'mongodb://h1,h2/?replicaSet=r',
                                    client=mongomock.MongoClient())
    assert other.db.name == impl_mongodb.DEFAULT_DATABASE


def test_upgrade_creates_indexes_and_ttl_idempotently(conn, conf):
    conf.set_override('metering_time_to_live', 3600, group='database')
    conn.upgrade()
    conn.upgrade()
    indexes = conn.db.sample.index_information()
    assert indexes['sample_name_ts']['key'] == [('name', 1), ('ts', 1)]
    assert indexes['sample_project_name_ts']['key'] == [
        ('project_id', 1), ('name', 1), ('ts', 1)]
    assert indexes['sample_resource_ts']['key'] == [('resource_id', 1),
                                                    ('ts', 1)]
    ttl = indexes[impl_mongodb.TTL_INDEX]
    assert ttl['key'] == [('timestamp', 1)]
    assert ttl['expireAfterSeconds'] == 3600
    assert conn.db.link.index_information()['link_triple']['unique']

    conf.set_override('metering_time_to_live', 60, group='database')
    conn.upgrade()
    assert conn.db.sample.index_information()[impl_mongodb.TTL_INDEX][
        'expireAfterSeconds'] == 60

    conf.set_override('metering_time_to_live', -1, group='database')
    conn.upgrade()
    conn.upgrade()
    assert impl_mongodb.TTL_INDEX not in conn.db.sample.index_information()


# --- recording --------------------------------------------------------------

def test_stored_document_and_exact_round_trip(conn):
    sample = make_sample(
        1, timestamp='2024-05-01T14:00:00.123456+02:00', volume=7,
        recorded_at='2024-05-01T12:00:01.000001Z',
        resource_metadata={'a.b': 1, '$x': [1, {'c.d': 'e'}], 'p%2E': 2,
                           'n': {'m': None, 'f': 1.5, 'b': False}})
    result = conn.record_samples([sample])
    assert (result.stored, result.rejected) == (1, [])

    (doc,) = stored(conn)
    assert doc['_id'] == sample.id
    assert doc['ts'] == 1714564800123456
    assert doc['timestamp'].replace(tzinfo=UTC) == datetime.datetime(
        2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
    assert doc['recorded_ts'] == 1714564801000001

    (got,) = conn.query_samples()
    assert got.timestamp == '2024-05-01T12:00:00.123456+00:00'
    assert got.recorded_at == '2024-05-01T12:00:01.000001+00:00'
    assert got.volume == 7.0 and isinstance(got.volume, float)
    assert got.resource_metadata == sample.resource_metadata
    for field in ('id', 'name', 'type', 'unit', 'user_id', 'project_id',
                  'resource_id', 'source', 'message_id'):
        assert getattr(got, field) == getattr(sample, field)


def test_recorded_at_defaults_to_now(conn):
    before = datetime.datetime.now(UTC)
    conn.record_samples([make_sample(1)])
    (got,) = conn.query_samples()
    assert before <= datetime.datetime.fromisoformat(got.recorded_at)


def test_metadata_values_bson_cannot_hold(conn):
    when = datetime.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    conn.record_samples([make_sample(1, resource_metadata={
        1: 'int key', 'tuple': (1, 2), 'when': when, 'big': 2 ** 70,
        'obj': uuid.UUID(int=0)})])
    (got,) = conn.query_samples()
    assert got.resource_metadata == {
        '1': 'int key', 'tuple': [1, 2], 'when': when.isoformat(),
        'big': float(2 ** 70), 'obj': str(uuid.UUID(int=0))}


def test_redelivered_batch_changes_nothing(conn):
    batch = [make_sample(i, resource_id='vm-1', timestamp=iso(i))
             for i in range(3)]
    assert conn.record_samples(batch).stored == 3
    samples, resources = stored(conn), stored(conn, 'resource')
    again = conn.record_samples(batch)
    assert (again.stored, again.rejected) == (0, [])
    assert stored(conn) == samples
    assert stored(conn, 'resource') == resources


def test_redelivery_completes_resources_from_the_stored_samples(conn):
    original = make_sample(1, resource_metadata={'v': 'stored'})
    conn.record_samples([original])
    # As if the writer died between the sample and the resource writes.
    conn.db.resource.delete_many({})
    changed = make_sample(1, volume=99.0, resource_metadata={'v': 'other'})
    assert conn.record_samples([changed]).stored == 0
    (record,) = stored(conn, 'resource')
    assert record['metadata'] == {'v': 'stored'}
    assert [s.volume for s in conn.query_samples()] == [original.volume]


def test_same_id_twice_in_a_batch_keeps_the_first(conn):
    first = make_sample(1, volume=1.0)
    second = make_sample(1, volume=2.0)
    assert first.id == second.id
    result = conn.record_samples([first, second])
    assert (result.stored, result.rejected) == (1, [])
    assert [s.volume for s in conn.query_samples()] == [1.0]


def test_invalid_samples_rejected_counted_and_logged(conn, caplog):
    good = make_sample(1)
    bad = [make_sample(2, volume='x'), make_sample(3, volume=math.nan),
           make_sample(4, timestamp='yesterday'), make_sample(5, type='x'),
           make_sample(6, user_id=42), make_sample(7, resource_id='')]
    # DEBUG: the writers log each rejection with its notification's id.
    with caplog.at_level(logging.DEBUG, impl_mongodb.__name__):
        result = conn.record_samples([bad[0], good] + bad[1:])
    assert result.stored == 1
    assert [s for s, _ in result.rejected] == bad
    assert all(reason for _, reason in result.rejected)
    assert 'user_id 42 is not a string' in result.rejected[4][1]
    for sample in bad:
        assert sample.id in caplog.text
    assert ids(conn.query_samples()) == [good.id]


def test_only_rejections_writes_nothing(conn):
    result = conn.record_samples([make_sample(1, volume=None)])
    assert (result.stored, len(result.rejected)) == (0, 1)
    assert stored(conn) == [] and stored(conn, 'resource') == []


def _resource_batches():
    old = [make_sample(i, resource_id='vm-1', timestamp=iso(i),
                       project_id='p-old', resource_metadata={'v': 'old'})
           for i in range(3)]
    new = [make_sample(10 + i, resource_id='vm-1', timestamp=iso(60 + i),
                       project_id='p-new', name='mem', unit='MB',
                       type='gauge', resource_metadata={'v': f'new{i}'})
           for i in range(2)]
    return old, new


@pytest.mark.parametrize('newest_first', [False, True])
def test_resource_record_whatever_the_batch_order(conn, newest_first):
    old, new = _resource_batches()
    batches = [new, old] if newest_first else [old, new]
    for batch in batches:
        conn.record_samples(batch[::-1] if newest_first else batch)
    (record,) = stored(conn, 'resource')
    assert record['_id'] == 'vm-1'
    assert record['first_ts'] == impl_mongodb._micros(at(0))
    assert record['last_ts'] == impl_mongodb._micros(at(61))
    assert record['metadata'] == {'v': 'new1'}
    assert record['project_id'] == 'p-new'
    assert sorted((m['name'], m['unit']) for m in record['meters']) == [
        ('cpu', 'ns'), ('mem', 'MB')]

    (resource,) = conn.get_resources()
    assert resource.first_sample_timestamp == at(0)
    assert resource.last_sample_timestamp == at(61)
    assert resource.metadata == {'v': 'new1'}
    assert resource.project_id == 'p-new'


def test_resource_latest_tie_broken_by_sample_id(conn):
    a = make_sample(1, resource_id='vm-1', resource_metadata={'v': 'a'})
    b = make_sample(2, resource_id='vm-1', resource_metadata={'v': 'b'})
    winner = max(a, b, key=lambda s: s.id).resource_metadata
    conn.record_samples([a])
    conn.record_samples([b])
    assert stored(conn, 'resource')[0]['metadata'] == winner
    assert conn.get_resources()[0].metadata == winner


# --- queries against the reference semantics --------------------------------

METADATA = [
    {'n': 5}, {'n': 5.0}, {'n': '5'}, {'n': True}, {'n': 1}, {'n': False},
    {'n': 0}, {'n': None}, {'n': [5]}, {'n': {'x': 5}}, {},
    {'n': math.nan}, {'n': -math.inf}, {'n': 7.5},
    {'a': [{'b': 1}]}, {'a': {'b': 1}}, {'a': {'b': '1'}}, {'a.b': 1},
    {'a': {'b': [1]}},
    {'s': 'abc'}, {'s': 'ABC'}, {'s': 'a.c'}, {'s': 'abc\n'},
    {'s': 'a%c'}, {'s': ['abc']}, {'s': 'xa(c'}, {'s': 'a\nc'},
    {'s': 'é_c'}, {'s': ''},
]
VALUES = [5, 5.0, '5', True, False, 1, 0, 7.5, -1, 'abc', 'a.c']
LIKES = ['abc', 'a%', 'a_c', 'A%', '%c', '_b_', 'a.c', '%', '', '__',
         'xa(%', 'a%c', 'é%', '%\n', 'ab']


def _reference_expressions():
    exprs = []
    for op in query_mod.COMPARISONS:
        for value in VALUES:
            exprs.append({op: {'resource_metadata.n': value}})
        exprs.append({op: {'resource_metadata.a.b': 1}})
        exprs.append({op: {'resource_metadata.s': 'abc'}})
        exprs.append({op: {'user_id': 'u-1'}})
        exprs.append({op: {'volume': 3}})
        exprs.append({op: {'timestamp': iso(2, 1)}})
        exprs.append({op: {'id': 'm'}})
    for pattern in LIKES:
        exprs.append({'like': {'resource_metadata.s': pattern}})
    exprs += [
        {'in': {'resource_metadata.n': [5, '5', True]}},
        {'in': {'resource_metadata.n': [0, False]}},
        {'in': {'resource_metadata.a.b': ['1']}},
        {'in': {'project_id': ['p-0', 'p-2']}},
        {'in': {'user_id': ['u-1', 'u-2']}},
        {'in': {'timestamp': [iso(1), iso(2, 1)]}},
        {'not': {'=': {'resource_metadata.n': 5}}},
        {'not': {'!=': {'resource_metadata.n': 5}}},
        {'not': {'like': {'resource_metadata.s': 'a%'}}},
        {'and': [{'>=': {'resource_metadata.n': 0}},
                 {'<': {'resource_metadata.n': 6}}]},
        {'or': [{'=': {'resource_metadata.n': True}},
                {'like': {'resource_metadata.s': '%c'}},
                {'not': {'>': {'volume': 2}}}]},
        {'like': {'user_id': 'u-%'}},
        {'like': {'id': '%a%'}},
        {'=': {'resource_metadata.a': 1}},
    ]
    return exprs


def test_queries_match_the_reference_semantics(conn):
    samples = []
    for i, metadata in enumerate(METADATA):
        samples.append(make_sample(
            i, volume=float(i % 5), timestamp=iso(i % 4, i % 3),
            user_id=None if i % 3 == 0 else f'u-{i % 4}',
            project_id=f'p-{i % 3}', resource_metadata=metadata))
    conn.record_samples(samples)
    dicts = [s.as_dict() for s in samples]
    for expression in _reference_expressions():
        normalized = query_mod.validate(expression)
        want = sorted(d['id'] for d in dicts
                      if query_mod.matches(normalized, d))
        assert ids(conn.query_samples(expression)) == want, expression


def test_missing_metadata_matches_nothing_even_for_not_equal(conn):
    with_key = make_sample(1, resource_metadata={'k': 'x'})
    without = make_sample(2, resource_metadata={})
    conn.record_samples([with_key, without])
    assert conn.query_samples({'!=': {'resource_metadata.k': 'y'}}) == [
        conn.query_samples({'=': {'resource_metadata.k': 'x'}})[0]]
    assert ids(conn.query_samples(
        {'not': {'=': {'resource_metadata.k': 'x'}}})) == [without.id]


def test_like_is_case_sensitive_sql_like(conn):
    names = ['m1.small', 'm1xsmall', 'M1.small', 'm1.tiny', 'm10.small']
    samples = [make_sample(i, resource_metadata={'flavor': name})
               for i, name in enumerate(names)]
    conn.record_samples(samples)

    def like(pattern):
        return sorted(s.resource_metadata['flavor'] for s in
                      conn.query_samples(
                          {'like': {'resource_metadata.flavor': pattern}}))

    assert like('m1.%') == ['m1.small', 'm1.tiny']
    assert like('m1_small') == ['m1.small', 'm1xsmall']
    assert like('%SMALL') == []
    assert like('m1%small') == ['m1.small', 'm10.small', 'm1xsmall']


def test_sample_filter_order_and_limit(conn):
    conn.record_samples([
        make_sample(i, volume=float(-i), timestamp=iso(i),
                    project_id=f'p-{i % 2}') for i in range(6)])
    got = conn.get_samples(base.SampleFilter(project_id=['p-0', 'p-9'],
                                             start_timestamp=iso(1),
                                             end_timestamp=iso(4)))
    assert [s.timestamp for s in got] == [iso(2)]
    newest = conn.get_samples(limit=2)
    assert [s.timestamp for s in newest] == [iso(5), iso(4)]
    by_volume = conn.query_samples(orderby=[{'volume': 'asc'}], limit=3)
    assert [s.volume for s in by_volume] == [-5.0, -4.0, -3.0]
    assert conn.query_samples(limit=0) == []
    assert conn.get_meters(limit=0) == conn.get_resources(limit=0) == []
    with pytest.raises(base.InvalidQuery):
        conn.query_samples(limit=-1)
    with pytest.raises(base.InvalidQuery):
        conn.query_samples(orderby=[('resource_metadata.x', 'asc')])
    with pytest.raises(base.InvalidQuery):
        conn.query_samples({'=': {'bogus': 1}})


# --- meters and resources ---------------------------------------------------

def test_meters(conn):
    conn.record_samples([
        make_sample(1, resource_id='vm-1', timestamp=iso(0)),
        make_sample(2, resource_id='vm-2', timestamp=iso(5)),
        make_sample(3, resource_id='vm-1', name='mem', unit='MB',
                    type='gauge', timestamp=iso(1)),
        make_sample(4, resource_id='vm-1', timestamp=iso(2)),
    ])
    meters = conn.get_meters()
    assert [(m.name, m.resource_id) for m in meters] == [
        ('cpu', 'vm-1'), ('cpu', 'vm-2'), ('mem', 'vm-1')]
    assert meters[2] == base.Meter('mem', 'gauge', 'MB', 'vm-1',
                                   'project-1', 'user-1', 'openstack')
    unique = conn.get_meters(unique=True)
    assert [(m.name, m.resource_id) for m in unique] == [
        ('cpu', 'vm-2'), ('mem', 'vm-1')]
    assert [m.name for m in conn.get_meters(limit=1)] == ['cpu']
    only = conn.get_meters(base.SampleFilter(resource_id='vm-2'))
    assert [(m.name, m.resource_id) for m in only] == [('cpu', 'vm-2')]


def test_resources_within_the_filter(conn):
    conn.record_samples([
        make_sample(i, resource_id='vm-1', timestamp=iso(i * 10),
                    resource_metadata={'step': i}) for i in range(5)]
        + [make_sample(9, resource_id='vm-2', timestamp=iso(0),
                       name='mem', unit='MB', type='gauge')])
    window = base.SampleFilter(start_timestamp=iso(10),
                               end_timestamp=iso(40))
    (resource,) = conn.get_resources(window)
    assert resource.resource_id == 'vm-1'
    assert resource.first_sample_timestamp == at(10)
    assert resource.last_sample_timestamp == at(30)
    assert resource.metadata == {'step': 3}
    assert resource.meters == [base.Meter('cpu', 'cumulative', 'ns', 'vm-1',
                                          'project-1', 'user-1',
                                          'openstack')]
    everything = conn.get_resources()
    assert [r.resource_id for r in everything] == ['vm-1', 'vm-2']
    assert everything[0].metadata == {'step': 4}
    assert [r.resource_id for r in conn.get_resources(limit=1)] == ['vm-1']
    assert conn.get_resources(base.SampleFilter(meter='disk')) == []


# --- statistics -------------------------------------------------------------

@pytest.fixture
def stats_conn(conn):
    """r1 (p1): 1 @0s, 3 @30s, 5 @70s; r2 (p2): 2 @10s, 10 @120s."""
    conn.record_samples([
        make_sample(1, volume=1, resource_id='r1', project_id='p1',
                    timestamp=iso(0), resource_metadata={'f': 'small'}),
        make_sample(2, volume=3, resource_id='r1', project_id='p1',
                    timestamp=iso(30), resource_metadata={'f': 'small'}),
        make_sample(3, volume=5, resource_id='r1', project_id='p1',
                    timestamp=iso(70), resource_metadata={}),
        make_sample(4, volume=2, resource_id='r2', project_id='p2',
                    user_id=None, timestamp=iso(10),
                    resource_metadata={'f': 'large'}),
        make_sample(5, volume=10, resource_id='r2', project_id='p2',
                    timestamp=iso(120), resource_metadata={'f': 'large'}),
    ])
    return conn


def summary(stats):
    return [(s.period_start, s.period_end, s.count, s.sum, s.min, s.max,
             s.avg) for s in stats]


def test_statistics_without_period(stats_conn):
    (s,) = stats_conn.get_statistics(base.SampleFilter(meter='cpu'))
    assert (s.count, s.sum, s.min, s.max, s.avg) == (5, 21, 1, 10, 4.2)
    assert (s.unit, s.period, s.groupby, s.aggregate) == ('ns', 0, None, {})
    assert s.stddev is None
    assert (s.period_start, s.period_end) == (at(0), at(120))
    assert (s.duration_start, s.duration_end, s.duration) == (
        at(0), at(120), 120.0)


def test_statistics_periods_from_first_sample(stats_conn):
    stats = stats_conn.get_statistics(base.SampleFilter(), period=60)
    assert summary(stats) == [
        (at(0), at(60), 3, 6, 1, 3, 2),
        (at(60), at(120), 1, 5, 5, 5, 5),
        (at(120), at(180), 1, 10, 10, 10, 10),
    ]
    first = stats[0]
    assert (first.period, first.duration_start, first.duration_end,
            first.duration) == (60, at(0), at(30), 30.0)


def test_statistics_periods_from_filter_start(stats_conn):
    window = base.SampleFilter(start_timestamp=iso(-30))
    stats = stats_conn.get_statistics(window, period=60)
    assert summary(stats) == [
        (at(-30), at(30), 2, 3, 1, 2, 1.5),
        (at(30), at(90), 2, 8, 3, 5, 4),
        (at(90), at(150), 1, 10, 10, 10, 10),
    ]


def test_statistics_bucket_bounds_are_exact_to_the_microsecond(conn):
    conn.record_samples([
        make_sample(1, timestamp=iso(0)),
        make_sample(2, timestamp=iso(9, 999999)),
        make_sample(3, timestamp=iso(10)),
    ])
    stats = conn.get_statistics(base.SampleFilter(), period=10)
    assert [(s.period_start, s.count) for s in stats] == [(at(0), 2),
                                                         (at(10), 1)]
    assert stats[0].duration == 9.999999
    half = conn.get_statistics(base.SampleFilter(), period=0.5)
    assert [(s.period_start, s.count) for s in half] == [
        (at(0), 1), (at(9, 500000), 1), (at(10), 1)]


def test_statistics_groupby(stats_conn):
    stats = stats_conn.get_statistics(base.SampleFilter(),
                                      groupby=['project_id'])
    assert [(s.groupby, s.count, s.sum, s.period_start) for s in stats] == [
        ({'project_id': 'p1'}, 3, 9, at(0)),
        ({'project_id': 'p2'}, 2, 12, at(10)),
    ]
    by_flavor = stats_conn.get_statistics(
        base.SampleFilter(), period=200,
        groupby=['resource_metadata.f', 'resource_id'])
    assert [(s.groupby, s.count) for s in by_flavor] == [
        ({'resource_metadata.f': None, 'resource_id': 'r1'}, 1),
        ({'resource_metadata.f': 'large', 'resource_id': 'r2'}, 2),
        ({'resource_metadata.f': 'small', 'resource_id': 'r1'}, 2),
    ]


def test_statistics_groupby_numbers_of_either_type_together(conn):
    conn.record_samples([
        make_sample(1, resource_metadata={'vcpus': 1}),
        make_sample(2, resource_metadata={'vcpus': 1.0}),
        make_sample(3, resource_metadata={'vcpus': '1'}),
        make_sample(4, resource_metadata={'vcpus': None}),
    ])
    stats = conn.get_statistics(base.SampleFilter(),
                                groupby=['resource_metadata.vcpus'])
    assert [(s.groupby['resource_metadata.vcpus'], s.count)
            for s in stats] == [(None, 1), (1, 2), ('1', 1)]


def test_statistics_selected_aggregates(stats_conn):
    (s,) = stats_conn.get_statistics(
        base.SampleFilter(),
        aggregates=[('stddev', None), ('max', None),
                    ('cardinality', 'resource_id'),
                    ('cardinality', 'user_id')])
    expected = statistics.pstdev([1, 3, 5, 2, 10])
    assert math.isclose(s.stddev, expected, rel_tol=1e-12)
    assert s.max == 10
    assert s.aggregate == {'stddev': s.stddev, 'max': 10,
                           'cardinality/resource_id': 2,
                           'cardinality/user_id': 1}
    assert (s.count, s.sum, s.min, s.avg) == (None, None, None, None)
    assert (s.duration_start, s.duration_end) == (at(0), at(120))


def test_statistics_stddev_of_constant_groups_is_zero(conn):
    conn.record_samples(
        [make_sample(i, resource_id='flat', volume=0.1) for i in range(7)]
        + [make_sample(10 + i, resource_id='big', volume=1e15 + i)
           for i in range(4)]
        + [make_sample(20, resource_id='one', volume=3.5)])
    stats = conn.get_statistics(base.SampleFilter(),
                                groupby=['resource_id'],
                                aggregates=[('stddev', None)])
    got = {s.groupby['resource_id']: s.stddev for s in stats}
    assert got['flat'] == 0.0 and got['one'] == 0.0


def test_statistics_stddev_of_large_values_with_small_spread(conn):
    """Deviations from the overall mean keep sum-of-squares from
    cancelling when the groups share a magnitude."""
    conn.record_samples(
        [make_sample(i, resource_id='a', volume=1e15 + i) for i in range(4)]
        + [make_sample(10 + i, resource_id='b', volume=1e15 + 10 * i)
           for i in range(3)])
    stats = conn.get_statistics(base.SampleFilter(),
                                groupby=['resource_id'],
                                aggregates=[('stddev', None)])
    assert [s.groupby['resource_id'] for s in stats] == ['a', 'b']
    assert math.isclose(stats[0].stddev, statistics.pstdev(range(4)),
                        rel_tol=1e-9)
    assert math.isclose(stats[1].stddev,
                        statistics.pstdev([0, 10, 20]), rel_tol=1e-9)


def test_statistics_one_per_unit(conn):
    conn.record_samples([make_sample(1, unit='ns'),
                         make_sample(2, unit='s', volume=4.0)])
    stats = conn.get_statistics(base.SampleFilter(meter='cpu'))
    assert [(s.unit, s.count, s.sum) for s in stats] == [('ns', 1, 1),
                                                        ('s', 1, 4)]


def test_statistics_of_nothing_and_bad_arguments(stats_conn):
    nothing = base.SampleFilter(meter='disk')
    assert stats_conn.get_statistics(nothing) == []
    assert stats_conn.get_statistics(nothing, period=60) == []
    for kwargs in ({'period': -1}, {'period': 1e-7}, {'groupby': ['volume']},
                   {'aggregates': [('median', None)]},
                   {'aggregates': [('cardinality', 'volume')]}):
        with pytest.raises(base.InvalidQuery):
            stats_conn.get_statistics(base.SampleFilter(), **kwargs)


def test_statistics_never_read_samples(stats_conn):
    def no_find(*args, **kwargs):
        raise AssertionError('statistics read samples with find')

    stats_conn.db = _Override(stats_conn.db, sample=_Override(
        stats_conn.db.sample, find=no_find, find_one=no_find))
    assert stats_conn.get_statistics(base.SampleFilter(), period=60,
                                     aggregates=[('stddev', None)])


# --- expiry -----------------------------------------------------------------

def test_clear_expired_samples(conn):
    now = datetime.datetime.now(UTC)

    def ago(minutes):
        return (now - datetime.timedelta(minutes=minutes)).isoformat()

    conn.record_samples([
        make_sample(1, resource_id='gone', timestamp=ago(120)),
        make_sample(2, resource_id='kept', timestamp=ago(90)),
        make_sample(3, resource_id='kept', timestamp=ago(10)),
        make_sample(4, resource_id='kept', timestamp=ago(5)),
    ])
    assert conn.clear_expired_samples(0) == 0
    assert conn.clear_expired_samples(3600) == 2
    assert [s.resource_id for s in conn.query_samples()] == ['kept'] * 2
    (record,) = stored(conn, 'resource')
    assert record['_id'] == 'kept'
    assert record['first_ts'] == impl_mongodb._micros(
        datetime.datetime.fromisoformat(ago(10)))
    assert conn.clear_expired_samples(3600) == 0


def test_clear_expired_removes_resources_whose_samples_vanished(conn):
    conn.record_samples([make_sample(1, resource_id='vm-1',
                                     timestamp=iso(0))])
    conn.db.sample.delete_many({})
    conn.clear_expired_samples(60)
    assert stored(conn, 'resource') == []


# --- inventory and links ----------------------------------------------------

def obj(id, when, **fields):
    return dict(id=id, type=fields.pop('type', 'instance'),
                project_id=fields.pop('project_id', 'p1'),
                last_event_at=when, **fields)


def test_inventory_ignores_older_events(conn):
    assert conn.upsert_inventory([obj('i1', iso(10), state='active'),
                                  obj('i2', iso(10), type='host')]) == 2
    assert conn.upsert_inventory([obj('i1', iso(5), state='building')]) == 0
    assert conn.upsert_inventory([obj('i1', iso(10), state='x')]) == 0
    assert conn.upsert_inventory([obj('i1', at(20), state='stopped',
                                      attributes={'a.b': {'$c': 1}})]) == 1
    (i1,) = conn.get_inventory(ids=['i1'])
    assert i1['state'] == 'stopped'
    assert i1['attributes'] == {'a.b': {'$c': 1}}
    assert i1['last_event_at'] == at(20).isoformat()
    with pytest.raises(ValueError):
        conn.upsert_inventory([{'id': 'i3', 'type': 'host'}])


def test_inventory_filters_and_delete_with_links(conn):
    conn.upsert_inventory([
        obj('h1', iso(), type='host', project_id=None),
        obj('i1', iso()), obj('i2', iso(), project_id='p2'),
    ])
    assert [o['id'] for o in conn.get_inventory()] == ['h1', 'i1', 'i2']
    assert [o['id'] for o in conn.get_inventory(types=['instance'])] == [
        'i1', 'i2']
    assert [o['id'] for o in conn.get_inventory(project_ids=['p2'])] == [
        'i2']
    assert [o['id'] for o in conn.get_inventory(limit=1)] == ['h1']
    conn.upsert_links([
        {'source_id': 'i1', 'target_id': 'h1', 'link_type': 'instance-host',
         'project_id': 'p1'},
        {'source_id': 'i2', 'target_id': 'h1', 'link_type': 'instance-host',
         'project_id': 'p2'},
    ])
    assert conn.delete_inventory(['i1', 'nope']) == 1
    assert [o['id'] for o in conn.get_inventory()] == ['h1', 'i2']
    assert [link['source_id'] for link in conn.get_links()] == ['i2']


def test_links_one_per_triple(conn):
    link = {'source_id': 'v1', 'target_id': 'n1', 'link_type': 'vnic-net',
            'project_id': 'p1', 'attributes': {'mtu': 1500}}
    assert conn.upsert_links([link]) == 1
    assert conn.upsert_links([dict(link, attributes={'mtu': 9000}),
                              dict(link, link_type='other')]) == 2
    links = conn.get_links(source_id='v1')
    assert [(x['link_type'], x['attributes']) for x in links] == [
        ('other', {'mtu': 1500}), ('vnic-net', {'mtu': 9000})]
    assert conn.get_links(target_id='n1', link_type='other')[0][
        'link_type'] == 'other'
    assert conn.get_links(project_ids=['p2']) == []
    with pytest.raises(ValueError):
        conn.delete_links()
    assert conn.delete_links(link_type='other') == 1
    assert len(conn.get_links()) == 1
    with pytest.raises(ValueError):
        conn.upsert_links([{'source_id': 'v1'}])


# --- channels and subscriptions ---------------------------------------------

def test_channels_and_subscriptions(conn):
    channel = {'id': 'c1', 'name': 'tenant', 'tenant_list': ['p1', 'p2'],
               'port': 8800, 'state': 'pending'}
    assert conn.create_channel(channel) == channel
    conn.create_channel({'id': 'c2', 'name': 'other', 'tenant_list': []})
    with pytest.raises(base.StorageError):
        conn.create_channel(channel)
    assert [c['id'] for c in conn.get_channels()] == ['c1', 'c2']
    assert conn.get_channels(ids=['c2'])[0]['name'] == 'other'

    updated = conn.update_channel('c1', {'state': 'running'})
    assert updated == dict(channel, state='running')
    assert conn.update_channel('nope', {'state': 'x'}) is None
    assert conn.update_channel('c1', {}) == updated
    with pytest.raises(ValueError):
        conn.update_channel('c1', {'id': 'c9'})

    query = {'and': [{'=': {'resource_metadata.flavor.name': 'm1'}},
                     {'in': {'project_id': ['p1']}}]}
    subscription = {'id': 's1', 'app_id': 'a', 'channel_id': 'c1',
                    'target': 'http://x', 'meters': ['cpu*'],
                    'query': query}
    conn.create_subscription(subscription)
    conn.create_subscription(dict(subscription, id='s2', channel_id='c2'))
    with pytest.raises(base.StorageError):
        conn.create_subscription(subscription)
    assert conn.get_subscriptions(channel_id='c1') == [subscription]
    assert [s['id'] for s in conn.get_subscriptions(ids=['s2'])] == ['s2']

    assert conn.delete_channel('c1') is True
    assert conn.delete_channel('c1') is False
    assert [s['id'] for s in conn.get_subscriptions()] == ['s2']
    assert conn.delete_subscription('s2') is True
    assert conn.delete_subscription('s2') is False


# --- failures ---------------------------------------------------------------

class _Unreachable:
    """A client whose every collection operation raises ``error``."""

    def __init__(self, error):
        self.error = error

    def get_database(self, name):
        return self

    def __getattr__(self, name):
        return self

    def __getitem__(self, name):
        return self

    def __call__(self, *args, **kwargs):
        raise self.error


CALLS = {
    'upgrade': lambda c: c.upgrade(),
    'record_samples': lambda c: c.record_samples([make_sample(1)]),
    'query_samples': lambda c: c.query_samples(),
    'get_meters': lambda c: c.get_meters(),
    'get_resources': lambda c: c.get_resources(),
    'get_statistics': lambda c: c.get_statistics(base.SampleFilter(),
                                                 period=60),
    'clear_expired_samples': lambda c: c.clear_expired_samples(60),
    'upsert_inventory': lambda c: c.upsert_inventory([obj('i', iso())]),
    'get_inventory': lambda c: c.get_inventory(),
    'delete_inventory': lambda c: c.delete_inventory(['i']),
    'upsert_links': lambda c: c.upsert_links([
        {'source_id': 'a', 'target_id': 'b', 'link_type': 'c'}]),
    'get_links': lambda c: c.get_links(),
    'delete_links': lambda c: c.delete_links(source_id='a'),
    'create_channel': lambda c: c.create_channel({'id': 'c'}),
    'get_channels': lambda c: c.get_channels(),
    'update_channel': lambda c: c.update_channel('c', {'a': 1}),
    'delete_channel': lambda c: c.delete_channel('c'),
    'create_subscription': lambda c: c.create_subscription({'id': 's'}),
    'get_subscriptions': lambda c: c.get_subscriptions(),
    'delete_subscription': lambda c: c.delete_subscription('s'),
}


@pytest.mark.parametrize('call', sorted(CALLS))
def test_unreachable_server_raises_storage_error(conf, call):
    client = _Unreachable(pymongo.errors.AutoReconnect('connection refused'))
    conn = impl_mongodb.Connection(conf, 'mongodb://db/x', client=client)
    with pytest.raises(base.StorageError, match='connection refused'):
        CALLS[call](conn)


def test_server_selection_timeout_raises_storage_error(conf):
    client = _Unreachable(
        pymongo.errors.ServerSelectionTimeoutError('no servers'))
    conn = impl_mongodb.Connection(conf, 'mongodb://db/x', client=client)
    with pytest.raises(base.StorageError, match='no servers'):
        conn.record_samples([make_sample(1)])


def test_write_errors_other_than_duplicates_reject_the_sample(conn):
    good, refused = make_sample(1), make_sample(2)
    samples = conn.db.sample

    def insert_many(docs, ordered=True):
        keep = [d for d in docs if d['_id'] != refused.id]
        samples.insert_many(keep, ordered=ordered)
        index = [d['_id'] for d in docs].index(refused.id)
        raise pymongo.errors.BulkWriteError({
            'writeErrors': [{'index': index, 'code': 2,
                             'errmsg': 'nesting too deep'}],
            'nInserted': len(keep)})

    conn.db = _Override(conn.db, sample=_Override(samples,
                                                  insert_many=insert_many))
    result = conn.record_samples([good, refused])
    assert result.stored == 1
    assert result.rejected == [(refused, 'nesting too deep')]
    assert [r['_id'] for r in stored(conn, 'resource')] == [good.resource_id]


def test_write_concern_errors_raise_storage_error(conn):
    def insert_many(docs, ordered=True):
        raise pymongo.errors.BulkWriteError({
            'writeErrors': [], 'nInserted': len(docs),
            'writeConcernErrors': [{'code': 64, 'errmsg': 'timeout'}]})

    conn.db = _Override(conn.db, sample=_Override(conn.db.sample,
                                                  insert_many=insert_many))
    with pytest.raises(base.StorageError):
        conn.record_samples([make_sample(1)])


class _Override:
    """``target`` with some attributes replaced (``db.sample`` and the
    like resolve through it)."""

    def __init__(self, target, **attributes):
        self._target = target
        self._attributes = attributes

    def __getattr__(self, name):
        if name in self._attributes:
            return self._attributes[name]
        return getattr(self._target, name)

    def __getitem__(self, name):
        if name in self._attributes:
            return self._attributes[name]
        return self._target[name]
