"""The SQL driver on SQLite, and the checks it must pass on any engine.

``SQLChecks`` holds what depends on the SQL the driver generates (metadata
kind rules, LIKE, NULLs, string order, the resource/meter tables,
statistics in SQL); tests/functional/storage runs it on PostgreSQL too.
"""

import collections
import datetime
import logging
import random
import sqlite3
import threading

import pytest
import sqlalchemy as sa

from calipso_agent import storage
from calipso_agent.storage import base, query
from calipso_agent.storage.sql import schema, sqlite
from tests.helpers import basics
from tests.helpers.basics import make_sample

T0 = datetime.datetime(2024, 5, 1, tzinfo=datetime.UTC)
HOUR = 3600


def at(seconds=0, microseconds=0):
    return (T0 + datetime.timedelta(seconds=seconds,
                                    microseconds=microseconds)).isoformat()


def indexes(samples):
    """The make_sample indexes of samples (message ids n-<index>)."""
    return sorted(int(s.message_id.split('-')[1]) for s in samples)


def table_rows(store, table, order):
    with store.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(
            sa.select(table).order_by(order))]


# --- a seeded comparison with query.matches ---------------------------------

STRINGS = ('a', 'a\n', 'A', 'ab', 'aB', 'a%b', 'a_b', 'a*b', 'a?b', 'a[b',
           'a\\b', 'caf\u00e9', 'Z', '', '10', 'a\nb', '[x]', 'vm-1')
META_FIELDS = ('resource_metadata.a', 'resource_metadata.b',
               'resource_metadata.a.b', 'resource_metadata.a.0',
               'resource_metadata.0', 'resource_metadata.x-y',
               'resource_metadata.k:1@z')
LIKE_PATTERNS = ('a%', '%b', 'a_b', '%', 'A%', 'a*b', 'a[b', 'a\\b', '_',
                 'a?b', '1%', 'c_f%', '%\n%')


def random_value(rnd):
    return rnd.choice([
        lambda: rnd.choice([0, 1, -1, 2, 10, 2 ** 40]),
        lambda: rnd.choice([0.0, 0.5, 1.0, -2.5, 1e10, 0.1]),
        lambda: rnd.choice([True, False]),
        lambda: None,
        lambda: [1, 'a'],
        lambda: rnd.choice(STRINGS),
        lambda: rnd.choice(STRINGS),
    ])()


def random_metadata(rnd, depth=0):
    metadata = {}
    for key in rnd.sample(['a', 'b', '0', 'x-y', 'k:1@z'], rnd.randrange(4)):
        if depth < 2 and rnd.random() < 0.3:
            metadata[key] = random_metadata(rnd, depth + 1)
        elif rnd.random() < 0.1:
            metadata[key] = [random_value(rnd), {'a': random_value(rnd)}]
        else:
            metadata[key] = random_value(rnd)
    return metadata


def random_samples(rnd, count):
    return [make_sample(
        i, name=rnd.choice(['cpu', 'mem', 'Cpu', 'c%u']),
        unit=rnd.choice(['ns', None, 'B']),
        user_id=rnd.choice(['u1', None, 'U1']),
        project_id=rnd.choice(['p1', 'p2', None]),
        source=rnd.choice(['openstack', None]),
        volume=rnd.choice([0.0, 1.0, 2.5, -1.0, 1e10, float(i)]),
        timestamp=at(rnd.randrange(100), rnd.randrange(3)),
        resource_id=f'vm-{rnd.randrange(6)}',
        resource_metadata=random_metadata(rnd)) for i in range(count)]


def random_leaf(rnd):
    field = rnd.choice(('name', 'unit', 'user_id', 'project_id', 'volume',
                        'timestamp') + META_FIELDS)
    op = rnd.choice(query.LEAF_OPS)
    if field == 'volume':
        op = '=' if op == 'like' else op
        value = rnd.choice([0.0, 1.0, 2.5, -1.0, 1e10, 5])
    elif field == 'timestamp':
        op = '>' if op == 'like' else op
        value = at(rnd.randrange(100))
    elif op == 'like':
        value = rnd.choice(LIKE_PATTERNS if field in META_FIELDS
                           else ('c%', 'C%', 'c_u', 'c%u', '%', 'u_', 'p%'))
    elif field in META_FIELDS:
        value = rnd.choice([0, 1, 2.5, 1e10, True, False,
                            rnd.choice(STRINGS)])
    else:
        value = rnd.choice(['cpu', 'Cpu', 'mem', 'ns', 'u1', 'p1', 'p2',
                            'B', 'c%u', 'openstack'])
    if op == 'in':
        value = [value, rnd.choice(['a', 1, True, value])]
        if field in ('volume', 'timestamp') or field not in META_FIELDS:
            value = [value[0], value[0]]
    return {op: {field: value}}


def random_expression(rnd, depth=0):
    roll = rnd.random()
    if depth > 3 or roll < 0.5:
        return random_leaf(rnd)
    if roll < 0.65:
        return {'not': random_expression(rnd, depth + 1)}
    return {rnd.choice(['and', 'or']): [random_expression(rnd, depth + 1)
                                        for _ in range(rnd.randrange(2, 4))]}


class SQLChecks:
    """Tests of the generated SQL; subclasses give a ``store`` fixture (a
    fresh, empty Connection)."""

    # --- writing ---------------------------------------------------------
    def test_redelivered_batch_stores_nothing_and_keeps_records(
            self, store):
        batch = [make_sample(i, resource_id=f'vm-{i % 2}', timestamp=at(i))
                 for i in range(6)]
        assert store.record_samples(batch).stored == 6
        records = [table_rows(store, table, table.c[key]) for table, key in
                   ((schema.SAMPLE, 'id'),
                    (schema.RESOURCE, 'resource_id'),
                    (schema.METER, 'key'))]
        again = store.record_samples(list(reversed(batch)))
        assert (again.stored, again.rejected) == (0, [])
        assert [table_rows(store, table, table.c[key]) for table, key in
                ((schema.SAMPLE, 'id'),
                 (schema.RESOURCE, 'resource_id'),
                 (schema.METER, 'key'))] == records

    def test_partly_new_batch_counts_only_new_samples(self, store):
        store.record_samples([make_sample(i) for i in range(3)])
        result = store.record_samples([make_sample(i) for i in range(5)])
        assert result.stored == 2
        assert indexes(store.get_samples()) == [0, 1, 2, 3, 4]

    def test_partly_known_batch_records_only_its_new_samples(self, store):
        """PostgreSQL: the COPY of the batch fails on the known id, and
        the batch is merged again, skipping it."""
        store.record_samples([
            make_sample(i, resource_id='vm', timestamp=at(10 + i),
                        resource_metadata={'n': i}) for i in range(3)])
        before = table_rows(store, schema.SAMPLE,
                            schema.SAMPLE.c.id)
        # Known id, other content: the latest sample and a meter of its
        # own, were it stored.
        known = make_sample(1, resource_id='vm', unit='other',
                            timestamp=at(100), resource_metadata={'n': 'x'})
        batch = [make_sample(3, resource_id='vm', timestamp=at(0),
                             resource_metadata={'n': 3}),
                 known,
                 make_sample(4, resource_id='vm', timestamp=at(20),
                             resource_metadata={'n': 4}),
                 make_sample(5, resource_id='vm-new', timestamp=at(5))]
        assert store.record_samples(batch).stored == 3
        assert store.record_samples(batch[::-1]).stored == 0
        after = table_rows(store, schema.SAMPLE,
                           schema.SAMPLE.c.id)
        assert [row for row in after if row[0] in {r[0] for r in before}
                ] == before
        assert indexes(store.get_samples()) == [0, 1, 2, 3, 4, 5]
        vm, vm_new = store.get_resources()
        assert (vm.resource_id, vm_new.resource_id) == ('vm', 'vm-new')
        assert vm.first_sample_timestamp == base.parse_timestamp(at(0))
        assert vm.last_sample_timestamp == base.parse_timestamp(at(20))
        assert vm.metadata == {'n': 4}
        assert {(m.resource_id, m.unit) for m in store.get_meters()} == {
            ('vm', 'ns'), ('vm-new', 'ns')}
        self.assert_records_agree(store, base.SampleFilter(
            start_timestamp=at(-1)))

    def test_rejected_samples_keep_their_order(self, store):
        """Samples are written in id order; the rejected ones come back
        in the order given."""
        batch = [make_sample(i, volume='bad') if i % 2 else make_sample(i)
                 for i in range(20)]
        result = store.record_samples(batch)
        assert result.stored == 10
        assert [s for s, _ in result.rejected] == batch[1::2]

    def test_rejected_samples_are_logged_and_counted(self, store, caplog):
        bad_type = make_sample(1, type='counter')
        bad_user = make_sample(2, user_id=42)
        bad_recorded = make_sample(3, recorded_at='last week')
        bad_text = make_sample(4, project_id='p\udc80')
        circular = {}
        circular['self'] = circular
        bad_metadata = make_sample(5, resource_metadata=circular)
        bad_metadata_text = make_sample(6, resource_metadata={'x': '\udc80'})
        # A set is stored as its string, a 70-bit integer as a number.
        odd_metadata = make_sample(7, resource_metadata={'set': {1},
                                                         'big': 2 ** 70})
        batch = [make_sample(0), bad_type, bad_user, bad_recorded, bad_text,
                 bad_metadata, bad_metadata_text, odd_metadata]
        # DEBUG: the writers log each rejection with its notification's id.
        with caplog.at_level(logging.DEBUG):
            result = store.record_samples(batch)
        assert result.stored == 2
        reasons = {sample.message_id: reason
                   for sample, reason in result.rejected}
        assert set(reasons) == {'n-1', 'n-2', 'n-3', 'n-4', 'n-5', 'n-6'}
        assert 'counter' in reasons['n-1']
        assert 'user_id' in reasons['n-2']
        assert 'recorded_at' in reasons['n-3']
        assert 'project_id' in reasons['n-4']
        assert 'resource_metadata' in reasons['n-5']
        assert 'resource_metadata' in reasons['n-6']
        for sample, reason in result.rejected:
            assert any(sample.id in r.getMessage() and reason in
                       r.getMessage() for r in caplog.records)
        assert indexes(store.get_samples()) == [0, 7]
        (odd,) = store.get_samples(base.SampleFilter(message_id='n-7'))
        assert odd.resource_metadata == {'set': '{1}', 'big': 2 ** 70}

    def test_samples_off_the_common_shape_are_stored(self, store):
        """Unicode text, an int volume and a mapping that is not a plain
        dict take the long way through the checks, and are stored."""
        unicode_text = make_sample(1, name='caf\u00e9', unit='\u00b5s',
                                   project_id='p\u20ac',
                                   resource_id='vm-\U0001f600')
        int_volume = make_sample(2, volume=3)
        mapping = make_sample(3, resource_metadata=collections.OrderedDict(
            [('b', 1), ('a', 'x')]))
        result = store.record_samples([unicode_text, int_volume, mapping])
        assert (result.stored, result.rejected) == (3, [])
        got = {s.message_id: s for s in store.get_samples()}
        assert (got['n-1'].name, got['n-1'].unit, got['n-1'].project_id,
                got['n-1'].resource_id) == ('caf\u00e9', '\u00b5s', 'p\u20ac',
                                            'vm-\U0001f600')
        assert got['n-2'].volume == 3.0
        assert got['n-3'].resource_metadata == {'b': 1, 'a': 'x'}
        assert {m.name for m in store.get_meters()} == {'caf\u00e9', 'cpu'}

    def test_recorded_at_given_is_kept(self, store):
        store.record_samples([make_sample(1, recorded_at=at(5))])
        (got,) = store.get_samples()
        assert got.recorded_at == at(5)

    def test_returned_timestamps_are_utc_iso(self, store):
        store.record_samples([
            make_sample(1, timestamp='2024-05-01T14:00:00.000250+02:00'),
            make_sample(2, timestamp='2024-05-01T12:00:00Z')])
        got = {s.message_id: s.timestamp for s in store.get_samples()}
        assert got == {'n-1': '2024-05-01T12:00:00.000250+00:00',
                       'n-2': '2024-05-01T12:00:00+00:00'}

    # --- the complex query ---------------------------------------------------
    def test_matches_the_reference(self, store):
        rnd = random.Random(20240501)
        samples = random_samples(rnd, 80)
        assert store.record_samples(samples).stored == 80
        stored = [s.as_dict() for s in store.get_samples()]
        for _ in range(250):
            expression = query.validate(random_expression(rnd))
            want = {s['id'] for s in stored if query.matches(expression, s)}
            got = {s.id for s in store.query_samples(expression)}
            assert got == want, expression

    def test_metadata_terms_match_only_their_kind(self, store):
        values = [1, 1.0, '1', True, None, [1], {'v': 1}, 2.5, 'b']
        store.record_samples(
            [make_sample(i, resource_metadata={'v': v})
             for i, v in enumerate(values)]
            + [make_sample(9, resource_metadata={})])

        def found(expression):
            return indexes(store.query_samples(expression))

        assert found({'=': {'resource_metadata.v': 1}}) == [0, 1]
        assert found({'=': {'resource_metadata.v': '1'}}) == [2]
        assert found({'=': {'resource_metadata.v': True}}) == [3]
        assert found({'!=': {'resource_metadata.v': 1}}) == [7]
        assert found({'>': {'resource_metadata.v': 'a'}}) == [8]
        assert found({'>=': {'resource_metadata.v': False}}) == [3]
        assert found({'in': {'resource_metadata.v': [True, '1']}}) == [2, 3]
        assert found({'like': {'resource_metadata.v': '%'}}) == [2, 8]
        # Missing, null, lists and objects match nothing, so "not"
        # selects them.
        assert found({'not': {'=': {'resource_metadata.v': 1}}}) == [
            2, 3, 4, 5, 6, 7, 8, 9]
        assert found({'=': {'resource_metadata.v.v': 1}}) == [6]

    def test_metadata_paths_walk_only_mappings(self, store):
        store.record_samples([
            make_sample(0, resource_metadata={'a': [5, 6]}),
            make_sample(1, resource_metadata={'a': {'0': 5, '-1': 6}}),
            make_sample(2, resource_metadata={'a-b': {'c:d@e': 'x'}})])

        def found(expression):
            return indexes(store.query_samples(expression))

        assert found({'=': {'resource_metadata.a.0': 5}}) == [1]
        assert found({'=': {'resource_metadata.a.-1': 6}}) == [1]
        assert found({'!=': {'resource_metadata.a.0': 7}}) == [1]
        assert found({'=': {'resource_metadata.a-b.c:d@e': 'x'}}) == [2]
        got = store.get_statistics(base.SampleFilter(),
                                   groupby=['resource_metadata.a.0'])
        assert [(s.groupby['resource_metadata.a.0'], s.count)
                for s in got] == [(None, 2), (5, 1)]

    def test_like_is_case_sensitive_and_only_percent_underscore(
            self, store):
        names = ['cpu', 'CPU', 'c*u', 'c?u', 'c[u]', 'c\\u', 'c%u', 'cu']
        store.record_samples([make_sample(i, name=n)
                              for i, n in enumerate(names)])

        def found(pattern):
            got = store.query_samples({'like': {'name': pattern}})
            return sorted(s.name for s in got)

        assert found('c_u') == sorted(['cpu', 'c*u', 'c?u', 'c\\u', 'c%u'])
        assert found('C%') == ['CPU']
        assert found('c*u') == ['c*u']
        assert found('c?u') == ['c?u']
        assert found('c[u]') == ['c[u]']
        assert found('c\\u') == ['c\\u']
        assert found('c%u') == sorted(['cpu', 'c*u', 'c?u', 'c\\u', 'c%u',
                                       'cu'])
        assert found('%]') == ['c[u]']

    def test_null_columns_match_no_comparison(self, store):
        store.record_samples([make_sample(0, user_id=None, unit=None),
                              make_sample(1, user_id='u', unit='ns')])

        def found(expression):
            return indexes(store.query_samples(expression))

        assert found({'!=': {'user_id': 'x'}}) == [1]
        assert found({'<': {'unit': 'zz'}}) == [1]
        assert found({'not': {'=': {'user_id': 'u'}}}) == [0]
        assert found({'not': {'in': {'unit': ['ns']}}}) == [0]
        assert found({'not': {'like': {'user_id': '%'}}}) == [0]
        assert found({'not': {'and': [{'=': {'user_id': 'u'}},
                                      {'=': {'unit': 'ns'}}]}}) == [0]

    def test_strings_compare_and_sort_by_code_point(self, store):
        names = ['a', 'B', 'caf\u00e9', 'cafe', 'Z', 'z', '\u00e9']
        store.record_samples([make_sample(i, name=n)
                              for i, n in enumerate(names)])
        got = store.query_samples(orderby=[('name', 'asc')])
        assert [s.name for s in got] == sorted(names)
        got = store.query_samples({'>': {'name': 'Z'}})
        assert sorted(s.name for s in got) == sorted(
            n for n in names if n > 'Z')

    def test_order_puts_null_lowest_and_breaks_ties_by_id(self, store):
        store.record_samples([make_sample(0, user_id='b'),
                              make_sample(1, user_id=None),
                              make_sample(2, user_id='a')])
        asc = store.query_samples(orderby=[('user_id', 'asc')])
        assert [s.user_id for s in asc] == [None, 'a', 'b']
        desc = store.query_samples(orderby=[{'user_id': 'desc'}])
        assert [s.user_id for s in desc] == ['b', 'a', None]
        same_time = store.query_samples()
        assert [s.id for s in same_time] == sorted(s.id for s in same_time)

    def test_limit(self, store):
        store.record_samples([make_sample(i, timestamp=at(i))
                              for i in range(4)])
        assert indexes(store.query_samples(limit=2)) == [2, 3]
        assert store.query_samples(limit=0) == []
        for bad in (-1, 1.5, True, '2'):
            with pytest.raises(base.InvalidQuery):
                store.query_samples(limit=bad)

    # --- resource and meter records ------------------------------------------
    def test_records_agree_with_the_samples(self, store):
        rnd = random.Random(7)
        samples = random_samples(rnd, 60)
        rnd.shuffle(samples)
        for start in range(0, 60, 7):
            store.record_samples(samples[start:start + 7])
        everything = base.SampleFilter(start_timestamp=at(-HOUR))
        self.assert_records_agree(store, everything)
        assert store.clear_expired_samples(1) == 60
        assert store.get_resources() == []
        assert store.get_meters() == []

    @staticmethod
    def assert_records_agree(store, everything):
        """The resource and meter tables (no filter) answer as a scan of
        the samples (a filter every sample passes) does."""
        fast = [r.as_dict() for r in store.get_resources()]
        scan = [r.as_dict() for r in store.get_resources(everything)]
        assert fast == scan and fast
        for resource_id in {r['resource_id'] for r in fast}:
            one = base.SampleFilter(resource_id=resource_id)
            assert [r.as_dict() for r in store.get_resources(one)] == [
                r for r in fast if r['resource_id'] == resource_id]
        assert store.get_meters() == store.get_meters(everything)
        assert store.get_meters(unique=True) == store.get_meters(
            everything, unique=True)

    def test_resource_latest_sample_breaks_ties_by_id(self, store):
        samples = [make_sample(i, resource_id='vm', timestamp=at(0),
                               resource_metadata={'n': i})
                   for i in range(3)]
        store.record_samples(samples[:1])
        store.record_samples(samples[1:])
        latest = max(samples, key=lambda s: s.id)
        (fast,) = store.get_resources()
        (scan,) = store.get_resources(base.SampleFilter(meter='cpu'))
        assert fast.metadata == scan.metadata == latest.resource_metadata

    def test_resources_list_their_meters(self, store):
        store.record_samples([
            make_sample(0, resource_id='vm', name='cpu'),
            make_sample(1, resource_id='vm', name='memory', unit='MB',
                        type='gauge'),
            make_sample(2, resource_id='other')])
        (vm,) = store.get_resources(base.SampleFilter(resource_id='vm'))
        assert [(m.name, m.unit) for m in vm.meters] == [('cpu', 'ns'),
                                                          ('memory', 'MB')]
        assert all(isinstance(m, base.Meter) for m in vm.meters)

    def test_meters_unique_and_limit(self, store):
        store.record_samples([
            make_sample(0, resource_id='b'), make_sample(1, resource_id='a'),
            make_sample(2, name='mem', resource_id='a')])
        assert [(m.name, m.resource_id) for m in store.get_meters()] == [
            ('cpu', 'a'), ('cpu', 'b'), ('mem', 'a')]
        assert [(m.name, m.resource_id) for m in store.get_meters(
            unique=True)] == [('cpu', 'a'), ('mem', 'a')]
        assert len(store.get_meters(limit=1)) == 1
        assert [m.name for m in store.get_meters(limit=1, unique=True)] == [
            'cpu']

    def test_expiry_updates_resources_and_meters(self, store):
        now = datetime.datetime.now(datetime.UTC)

        def ago(hours):
            return (now - datetime.timedelta(hours=hours)).isoformat()

        store.record_samples([
            make_sample(0, resource_id='vm', timestamp=ago(30)),
            make_sample(1, resource_id='vm', timestamp=ago(20),
                        name='old-meter'),
            make_sample(2, resource_id='vm', timestamp=ago(2)),
            make_sample(3, resource_id='gone', timestamp=ago(40))])
        assert store.clear_expired_samples(10 * HOUR) == 3
        (vm,) = store.get_resources()
        assert vm.first_sample_timestamp == base.parse_timestamp(ago(2))
        assert [m.name for m in store.get_meters()] == ['cpu']
        self.assert_records_agree(store, base.SampleFilter(
            start_timestamp=ago(1000)))

    # --- statistics ----------------------------------------------------------
    def test_statistics_run_in_sql(self, store):
        store.record_samples([make_sample(i, timestamp=at(i * 60),
                                          volume=i) for i in range(50)])
        statements = []

        def count(conn, cursor, statement, *args):
            if statement.lstrip().upper().startswith('SELECT'):
                statements.append(statement)

        sa.event.listen(store.engine, 'before_cursor_execute', count)
        try:
            got = store.get_statistics(base.SampleFilter(), period=600,
                                       aggregates=['stddev', 'count'])
            assert [s.count for s in got] == [10] * 5
            assert len(statements) == 2  # origin, then the aggregates
            statements.clear()
            store.get_statistics(base.SampleFilter(start_timestamp=at(0)),
                                 period=600)
            assert len(statements) == 1
        finally:
            sa.event.remove(store.engine, 'before_cursor_execute', count)

    def test_statistics_fractional_period(self, store):
        store.record_samples([make_sample(i, timestamp=at(0, i * 250000))
                              for i in range(4)])
        got = store.get_statistics(base.SampleFilter(), period=0.5)
        assert [(s.period_start, s.period_end, s.count) for s in got] == [
            (base.parse_timestamp(at(0)), base.parse_timestamp(at(0, 500000)),
             2),
            (base.parse_timestamp(at(0, 500000)),
             base.parse_timestamp(at(1)), 2)]
        with pytest.raises(base.InvalidQuery):
            store.get_statistics(base.SampleFilter(), period=1e-7)

    def test_statistics_group_by_metadata_values(self, store):
        values = [True, 1, 1.0, '1', None, {'x': 1}, 'b']
        store.record_samples(
            [make_sample(i, volume=i, resource_metadata={'v': v})
             for i, v in enumerate(values)]
            + [make_sample(9, volume=9, resource_metadata={})])
        got = store.get_statistics(base.SampleFilter(),
                                   groupby=['resource_metadata.v'],
                                   aggregates=['sum'])
        groups = [(s.groupby['resource_metadata.v'], s.sum) for s in got]
        # None (missing or null) first, then booleans, numbers, strings.
        assert groups[0] == (None, 13.0)
        assert groups[1][0] is True and groups[1][1] == 0.0
        assert groups[2] == (1, 3.0)
        assert groups[3:5] == [('1', 3.0), ('b', 6.0)]
        assert groups[5] == ({'x': 1}, 5.0)
        assert len(groups) == 6

    def test_statistics_duplicate_aggregates(self, store):
        store.record_samples([make_sample(i, volume=i, user_id=None)
                              for i in range(3)])
        (stat,) = store.get_statistics(
            base.SampleFilter(),
            aggregates=['avg', 'avg', ('cardinality', 'user_id'),
                        ('cardinality', 'user_id'), 'stddev'])
        assert stat.aggregate == {'avg': 1.0, 'cardinality/user_id': 0,
                                  'stddev': pytest.approx(0.816496580927)}

    # --- inventory, links, channels ----------------------------------------
    def test_inventory_event_order(self, store):
        def obj(state, when, **fields):
            return dict({'id': 'i-1', 'type': 'instance', 'state': state,
                         'last_event_at': when}, **fields)

        assert store.upsert_inventory([obj('a', at(10))]) == 1
        assert store.upsert_inventory([obj('b', at(10))]) == 1
        assert store.upsert_inventory([obj('c', at(9))]) == 0
        assert store.upsert_inventory([obj('d', at(9)),
                                       obj('e', at(11))]) == 1
        (got,) = store.get_inventory()
        assert got['state'] == 'e'
        with pytest.raises(ValueError, match='last_event_at'):
            store.upsert_inventory([obj('f', None)])
        with pytest.raises(ValueError, match='type'):
            store.upsert_inventory([{'id': 'x', 'last_event_at': at(1)}])

    def test_records_keep_json_values(self, store):
        created = datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.UTC)
        store.create_channel({'id': 'c', 'name': 'n', 'tenant_list': ['p'],
                              'created_at': created})
        (channel,) = store.get_channels()
        assert channel['created_at'] == created.isoformat()
        updated = store.update_channel('c', {'id': 'other', 'port': 9})
        assert (updated['id'], updated['port']) == ('c', 9)
        assert store.get_channels(ids=['c']) == [updated]
        with pytest.raises(base.StorageError):
            store.create_channel({'id': 'c'})
        store.create_subscription({'id': 's', 'channel_id': 'c'})
        with pytest.raises(base.StorageError):
            store.create_subscription({'id': 's', 'channel_id': 'c'})
        with pytest.raises(ValueError):
            store.upsert_links([{'source_id': 'a', 'target_id': 'b'}])

    def test_database_failure_is_storage_error(self, store):
        with store.engine.begin() as conn:
            conn.execute(sa.text('DROP TABLE meter'))
        with pytest.raises(base.StorageError):
            store.record_samples([make_sample(1)])
        with pytest.raises(base.StorageError):
            store.get_meters()
        # The failed write left nothing behind.
        assert store.get_samples() == []


class TestSQLite(SQLChecks):

    @pytest.fixture
    def store(self, tmp_path):
        connection = sqlite.Connection(
            basics.make_conf(), f'sqlite:///{tmp_path}/store.sqlite')
        yield connection
        connection.close()

    def test_default_database_is_a_file_in_state_path(self, tmp_path):
        conf = basics.make_conf(state_path=str(tmp_path / 'a' / 'b'))
        connection = storage.get_connection(conf)
        try:
            assert isinstance(connection, sqlite.Connection)
            connection.record_samples([make_sample(1)])
            assert (tmp_path / 'a' / 'b' / 'calipso.sqlite').is_file()
        finally:
            connection.close()

    def test_schema_is_made_on_first_connection_and_upgrade_is_idempotent(
            self, store, tmp_path):
        path = tmp_path / 'store.sqlite'
        store.record_samples([make_sample(1)])
        store.upgrade()
        store.upgrade()
        with sqlite3.connect(path) as raw:
            tables = {name for (name,) in raw.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            versions = raw.execute(
                'SELECT version FROM calipso_schema').fetchall()
            sample_indexes = {name for (name,) in raw.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND "
                "tbl_name = 'sample' AND sql IS NOT NULL")}
            journal = raw.execute('PRAGMA journal_mode').fetchone()[0]
        assert tables == {'sample', 'resource', 'meter', 'inventory', 'link',
                          'channel', 'subscription', 'subscription_counter',
                          'subscription_version', 'polling_override',
                          'calipso_schema'}
        assert versions == [(schema.SCHEMA_VERSION,)]
        assert sample_indexes == {
            'ix_sample_name_ts', 'ix_sample_project_name_ts',
            'ix_sample_resource_ts', 'ix_sample_ts'}
        assert journal == 'wal'
        assert indexes(store.get_samples()) == [1]

    def test_version_1_gets_the_inventory_lookup_columns(self, store,
                                                          tmp_path):
        store.record_samples([make_sample(1)])
        with sqlite3.connect(tmp_path / 'store.sqlite') as raw:
            raw.execute('DROP TABLE inventory')
            raw.execute('CREATE TABLE inventory (id TEXT PRIMARY KEY, type '
                        'TEXT NOT NULL, project_id TEXT, last_event_ts '
                        'BIGINT NOT NULL, data JSON NOT NULL)')
            raw.execute('UPDATE calipso_schema SET version = 1')
        assert 'schema version 2' in store.upgrade()
        with sqlite3.connect(tmp_path / 'store.sqlite') as raw:
            columns = {row[1] for row in raw.execute(
                'PRAGMA table_info(inventory)')}
            versions = raw.execute(
                'SELECT version FROM calipso_schema').fetchall()
        assert {'parent_id', 'host', 'state', 'name'} <= columns
        assert versions == [(2,)]
        assert store.apply_inventory([{
            'id': 'vm-1', 'type': 'instance', 'parent_id': 'compute-1',
            'last_event_at': '2024-05-01T00:00:00Z'}]) == 1
        assert indexes(store.get_samples()) == [1]

    def test_newer_schema_is_refused(self, store, tmp_path):
        with sqlite3.connect(tmp_path / 'store.sqlite') as raw:
            raw.execute('UPDATE calipso_schema SET version = version + 1')
        with pytest.raises(base.StorageError, match='newer'):
            store.upgrade()

    def test_unusable_file_is_storage_error(self, tmp_path):
        (tmp_path / 'dir.sqlite').mkdir()
        with pytest.raises(base.StorageError):
            sqlite.Connection(basics.make_conf(),
                                       f'sqlite:///{tmp_path}/dir.sqlite')

    def test_not_a_sql_url(self):
        with pytest.raises(ValueError):
            sqlite.Connection(basics.make_conf(),
                                       'mysql://localhost/x')

    def test_concurrent_writers(self, store, tmp_path):
        other = sqlite.Connection(
            basics.make_conf(), f'sqlite:///{tmp_path}/store.sqlite')
        errors = []

        def write(connection, first):
            try:
                for batch in range(5):
                    start = first + batch * 20
                    # Every writer also redelivers its previous batch.
                    connection.record_samples([
                        make_sample(i, resource_id=f'vm-{i % 3}',
                                    timestamp=at(i))
                        for i in range(max(0, start - 20), start + 20)])
            except Exception as exc:
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(c, n * 100))
                   for n, c in enumerate([store, store, other, other])]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        other.close()
        assert errors == []
        assert len(store.get_samples()) == 400
        (stat,) = store.get_statistics(base.SampleFilter())
        assert stat.count == 400
        self.assert_records_agree(store, base.SampleFilter(
            start_timestamp=at(-1)))

    def test_in_memory_database_is_shared_by_threads(self):
        connection = sqlite.Connection(basics.make_conf(),
                                                'sqlite://')
        threads = [threading.Thread(
            target=connection.record_samples,
            args=([make_sample(i + n * 10) for i in range(10)],))
            for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(connection.get_samples()) == 40
        connection.close()
