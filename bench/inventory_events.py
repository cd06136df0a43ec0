"""Inventory events benchmark: port and instance notifications applied
through the inventory endpoint and the store, against a bare upsert.

``python -m bench.inventory_events`` (part of ``tox -e bench``) makes
100,000 notifications shaped like the shared fixtures (nova's versioned
``instance.create.end`` and ``instance.update`` with one interface,
neutron's ``port.create.end`` / ``port.update.end`` of an instance's
port), stamped as oslo.messaging stamps them: 25,000 instances on 500
hosts and 100 networks, each created then updated, its port created then
updated. They go, in batches as the notification agent takes them, through
the agent's dispatcher (``SampleDispatcher`` with the ``inventory``
endpoint: changes made, one ``apply_inventory`` per batch, ack) into
SQLite and PostgreSQL. An instance's four notifications fall in one batch:
the agent makes the changes of its update and of its port's update alone
(the newest of their subjects); ``--spread`` sends every instance's
creation first, then every port's, and so on, so that no batch holds two
of one subject.

The floor, in the same run: the rows that path wrote (the objects and
links of each batch, already encoded) upserted with a bare ``executemany``
of ``INSERT ... ON CONFLICT DO UPDATE`` into identical empty tables, one
transaction per batch, at the store's durability. Both sides run in
rounds, one after the other (the first alternating), each on fresh
tables; it prints the median round's events/s of both and the median of
the rounds' ratios (target: ours >= 0.5x the floor).
``--breakdown`` then runs our side once more per store, timed from inside:
building the changes, the batch's reads, its write (rows encoded and
upserted), the rules' derivation (the rest of ``inventory.apply``), and
the transaction around it (begin and commit). The timers add about a
microsecond an event.
PostgreSQL is the local server (``--pg-url``); the bench creates and
drops a database of its own. It is a measurement: the exit status is 0
whatever the figures.
"""

import argparse
import collections
import contextlib
import copy
import datetime
import gc
import os
import sqlite3
import statistics
import tempfile
import time
import uuid
from unittest import mock

import oslo_messaging
import psycopg

from bench.storage import make_conf, pg_database, say
from calipso_agent import inventory
from calipso_agent.notification import base, manager
from calipso_agent.notification import inventory as endpoint_mod
from calipso_agent.storage.sql import crud, postgresql, sqlite, values
from tests.helpers import fixtures

T0 = datetime.datetime(2026, 10, 1, tzinfo=datetime.UTC)
HOSTS = 500
NETWORKS = 100
PROJECTS = 50
OBJECT_COLUMNS = ('id', 'type', 'project_id', 'parent_id', 'host', 'name',
                  'state', 'last_event_ts', 'data')
LINK_COLUMNS = ('source_id', 'target_id', 'link_type', 'project_id', 'state',
                'last_event_ts', 'data')
TARGET = 0.5


def make_notifications(count, spread=False):
    """``count`` notifications: per instance, its creation, its port's
    creation, its update and its port's update, one second apart; with
    ``spread``, every instance's creation first, then every port's, and
    so on (a batch then never holds two of one subject)."""
    instance_template = base.from_envelope(fixtures.load_envelope(
        'nova_versioned__nova-doc__instance-create-end'))[1]
    port_template = base.from_envelope(fixtures.load_envelope(
        'neutron__calipso__port_instance_add'))[1]
    notifications = []
    instances = max(1, count // 4)
    for index in range(instances):
        vm = str(uuid.UUID(int=index + 1))
        port = str(uuid.UUID(int=10**9 + index))
        host = f'compute-{index % HOSTS}'
        network = str(uuid.UUID(int=10**12 + index % NETWORKS))
        project = f'project-{index % PROJECTS}'
        at = T0 + datetime.timedelta(seconds=index)
        for step in range(4):
            # As oslo.messaging stamps a notification: str(utcnow()).
            when = str((at + datetime.timedelta(milliseconds=step)).replace(
                tzinfo=None))
            if step % 2 == 0:
                n = copy.deepcopy(instance_template)
                n['event_type'] = ('instance.create.end' if step == 0
                                   else 'instance.update')
                data = n['payload']['nova_object.data']
                data.update(uuid=vm, host=host, node=host, tenant_id=project,
                            display_name=f'vm-{index}',
                            state='building' if step == 0 else 'active')
                address = data['ip_addresses'][0]['nova_object.data']
                address['port_uuid'] = port
                address['device_name'] = inventory.tap_name(port)
            else:
                n = copy.deepcopy(port_template)
                n['event_type'] = ('port.create.end' if step == 1
                                   else 'port.update.end')
                item = n['payload']['port']
                item.update(id=port, device_id=vm, network_id=network,
                            tenant_id=project, status='DOWN' if step == 1
                            else 'ACTIVE')
                item['binding:host_id'] = host
            n['metadata'] = {'message_id': str(uuid.uuid4()),
                             'timestamp': when}
            notifications.append(n)
    if spread:
        notifications = [n for step in range(4)
                         for n in notifications[step::4]]
    return notifications[:count]


class NoPipeline:
    sinks = ()

    def publish_samples(self, samples):
        pass


def run_ours(store, notifications, batch):
    dispatcher = manager.SampleDispatcher(
        [endpoint_mod.InventoryEndpoint(make_conf())], NoPipeline(),
        inventory_store=store)
    start = time.perf_counter()
    for first in range(0, len(notifications), batch):
        result = dispatcher.info(notifications[first:first + batch])
        if result != oslo_messaging.NotificationResult.HANDLED:
            raise RuntimeError(f'batch at {first} not handled: {result}')
    return time.perf_counter() - start


def floor_rows(notifications, batch):
    """Per batch, the (object rows, link rows) the path writes: the final
    rows of the batch's objects and links, encoded as the store does."""
    endpoint = endpoint_mod.InventoryEndpoint(make_conf())
    batches = []
    for first in range(0, len(notifications), batch):
        objects, links = {}, {}
        for n in notifications[first:first + batch]:
            for change in endpoint.inventory_changes(n):
                if 'link_type' in change:
                    links[inventory.link_key(change)] = change
                else:
                    objects[change['id']] = change
        batches.append((
            [(o['id'], o['type'], o['project_id'], o['parent_id'],
              o['host'], o['name'], o['state'],
              values.to_us(o['last_event_at']), values.dumps(o))
             for o in objects.values()],
            [(lk['source_id'], lk['target_id'], lk['link_type'],
              lk['project_id'], lk['state'],
              values.to_us(lk['last_event_at']), values.dumps(lk))
             for lk in links.values()]))
    return batches


def upsert_sql(placeholder, table, columns, keys):
    updates = ', '.join(f'{c} = excluded.{c}' for c in columns
                        if c not in keys)
    return (f'INSERT INTO {table} ({", ".join(columns)}) VALUES '
            f'({", ".join([placeholder] * len(columns))}) ON CONFLICT '
            f'({", ".join(keys)}) DO UPDATE SET {updates} WHERE '
            f'excluded.last_event_ts >= {table}.last_event_ts')


def run_floor(cursor_of, commit, placeholder, batches, prefix=''):
    objects_sql = upsert_sql(placeholder, f'{prefix}inventory',
                             OBJECT_COLUMNS, ('id',))
    links_sql = upsert_sql(placeholder, f'{prefix}link', LINK_COLUMNS,
                           ('source_id', 'target_id', 'link_type'))
    start = time.perf_counter()
    for object_rows, link_rows in batches:
        cursor = cursor_of()
        cursor.executemany(objects_sql, object_rows)
        cursor.executemany(links_sql, link_rows)
        commit()
    return time.perf_counter() - start


def timed(run):
    """Seconds of ``run()``, garbage of the previous round collected
    first (the collector's pauses are then the round's own)."""
    gc.collect()
    return run()


def sqlite_sides(tmp, notifications, batch, rows, index):
    """(ours, floor) of one round: a fresh store each, in files of their
    own (one side's WAL is not the other's to checkpoint)."""
    paths = [f'{tmp}/{side}-{index}.sqlite' for side in ('ours', 'floor')]
    for path in paths:
        store = sqlite.Connection(make_conf(), f'sqlite:///{path}')
        store.upgrade()
        store.close()

    def ours():
        store = sqlite.Connection(make_conf(), f'sqlite:///{paths[0]}')
        try:
            return run_ours(store, notifications, batch)
        finally:
            store.close()

    def floor():
        bare = sqlite3.connect(paths[1])
        # The store's durability (sqlite.py): WAL, synced at checkpoints.
        bare.execute('PRAGMA synchronous=NORMAL')
        try:
            return run_floor(bare.cursor, bare.commit, '?', rows)
        finally:
            bare.close()

    return ours, floor, paths[0]


def stored_objects(store):
    try:
        return len(store.get_inventory())
    finally:
        store.close()


def bench_sqlite(notifications, batch, rows, rounds):
    timings = []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(rounds):
            ours, floor, path = sqlite_sides(tmp, notifications, batch,
                                             rows, index)
            timings.append(interleaved(ours, floor, index))
        stored = stored_objects(sqlite.Connection(make_conf(),
                                                  f'sqlite:///{path}'))
    return timings, stored


def interleaved(ours, floor, index):
    """(ours, floor) seconds of one round; the side going first
    alternates, so neither always gets the warmer or the quieter slot."""
    if index % 2:
        floor_s = timed(floor)
        return timed(ours), floor_s
    ours_s = timed(ours)
    return ours_s, timed(floor)


def bench_pg(notifications, batch, rows, admin_url, rounds):
    timings = []
    for index in range(rounds):
        url, drop = pg_database(admin_url)
        try:
            store = postgresql.Connection(make_conf(), url)
            store.upgrade()
            with psycopg.connect(url) as conn:
                for table in ('inventory', 'link'):
                    conn.execute(f'CREATE TABLE bare_{table} '
                                 f'(LIKE {table} INCLUDING ALL)')
                conn.commit()

                def floor(conn=conn):
                    return run_floor(conn.cursor, conn.commit, '%s', rows,
                                     'bare_')

                def ours(store=store):
                    return run_ours(store, notifications, batch)

                timings.append(interleaved(ours, floor, index))
            stored = stored_objects(store)
        finally:
            drop()
    return timings, stored


@contextlib.contextmanager
def timers():
    """{part: seconds} of our side's parts while the block runs (the
    methods timed are put back after it)."""
    spent = collections.defaultdict(float)
    clock = time.perf_counter

    def clocked(part, original, listed=False):
        def timed_call(*args):
            start = clock()
            try:
                result = original(*args)
                return list(result) if listed else result
            finally:
                spent[part] += clock() - start
        return timed_call

    targets = [('changes', manager.SampleDispatcher, 'item_of', False),
               ('changes', manager, '_made', False),
               *(('reads', crud._InventoryBatch, read, True) for read in (
                   'objects', 'children', 'links_from', 'links_of')),
               ('write', crud._InventoryBatch, 'write', False),
               ('apply', inventory, 'apply', False),
               *(('transaction', store, 'apply_inventory', False)
                 for store in (sqlite.Connection, postgresql.Connection))]
    with contextlib.ExitStack() as patches:
        for part, owner, name, listed in targets:
            patches.enter_context(mock.patch.object(
                owner, name, clocked(part, getattr(owner, name), listed)))
        yield spent


def breakdown(engine, store, notifications, batch):
    """Our side once more on ``store`` (fresh), its parts per event."""
    with timers() as spent:
        total = timed(lambda: run_ours(store, notifications, batch))
    per_event = {part: seconds / len(notifications) * 1e6
                 for part, seconds in spent.items()}
    parts = [('building the changes', per_event['changes']),
             ('reads', per_event['reads']),
             ('rules', per_event['apply'] - per_event['reads']
              - per_event['write']),
             ('write (encode, upsert)', per_event['write']),
             ('begin and commit', per_event['transaction']
              - per_event['apply']),
             ('the rest (dispatch, ack)', total / len(notifications) * 1e6
              - per_event['changes'] - per_event['transaction'])]
    say(f'  {engine:<10} our side, timed from inside: '
        f'{total / len(notifications) * 1e6:.1f} us an event: '
        + ', '.join(f'{name} {value:.1f}' for name, value in parts))


def breakdown_runs(args, notifications):
    if args.only != 'postgresql':
        with tempfile.TemporaryDirectory() as tmp:
            path = f'{tmp}/breakdown.sqlite'
            store = sqlite.Connection(make_conf(), f'sqlite:///{path}')
            store.upgrade()
            try:
                breakdown('SQLite', store, notifications, args.batch)
            finally:
                store.close()
    if args.only != 'sqlite':
        url, drop = pg_database(args.pg_url)
        try:
            store = postgresql.Connection(make_conf(), url)
            store.upgrade()
            try:
                breakdown('PostgreSQL', store, notifications, args.batch)
            finally:
                store.close()
        finally:
            drop()


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m bench.inventory_events',
                                     description=__doc__.split('\n\n')[0])
    parser.add_argument('--events', type=int, default=100_000)
    parser.add_argument('--batch', type=int, default=100,
                        help='notifications per batch (the agent\'s '
                             '[notification] batch_size)')
    parser.add_argument('--rounds', type=int, default=5,
                        help='rounds, each timing both sides one after '
                             'the other; the median round counts (the '
                             'machine is shared)')
    parser.add_argument('--only', choices=('sqlite', 'postgresql'))
    parser.add_argument('--spread', action='store_true',
                        help='each step of every instance in turn: no '
                             'batch holds two notifications of one subject '
                             '(nothing to coalesce)')
    parser.add_argument('--breakdown', action='store_true',
                        help='then time the parts of our side from inside')
    parser.add_argument('--pg-url', default=os.environ.get(
        'CALIPSO_BENCH_PG_URL', 'postgresql://postgres@127.0.0.1:5432/test'))
    args = parser.parse_args(argv)
    notifications = make_notifications(args.events, args.spread)
    rows = floor_rows(notifications, args.batch)
    # The input is the bench's, not the agent's (which holds one batch):
    # out of the garbage collector's sight.
    gc.collect()
    gc.freeze()
    written = sum(len(o) + len(lk) for o, lk in rows)
    rounds = max(1, args.rounds)
    say(f'inventory events: {len(notifications):,} port and instance '
        f'notifications, batches of {args.batch} ({written:,} object and '
        f'link rows upserted by the floor), median of {rounds} rounds')
    runs = (('SQLite', lambda: bench_sqlite(notifications, args.batch,
                                            rows, rounds)),
            ('PostgreSQL', lambda: bench_pg(notifications, args.batch, rows,
                                            args.pg_url, rounds)))
    for engine, run in runs:
        if args.only and engine.lower() != args.only:
            continue
        timings, stored = run()
        ratios = sorted(floor_s / ours_s for ours_s, floor_s in timings)
        ours_s = statistics.median(t[0] for t in timings)
        floor_s = statistics.median(t[1] for t in timings)
        ratio = statistics.median(ratios)
        rate = len(notifications) / ours_s
        floor = len(notifications) / floor_s
        say(f'  {engine:<10} endpoint+store {rate:>9,.0f} events/s   bare '
            f'upsert {floor:>9,.0f} events/s   ours/floor {ratio:.2f} '
            f'(rounds {ratios[0]:.2f}-{ratios[-1]:.2f})   >= {TARGET}x: '
            f'{"met" if ratio >= TARGET else "NOT met"}   ({stored:,} '
            'objects stored)')
    if args.breakdown:
        breakdown_runs(args, notifications)


if __name__ == '__main__':
    main()
