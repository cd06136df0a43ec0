"""Storage benchmarks: bulk writes and statistics, against their limits.

``python -m bench.storage`` (part of ``tox -e bench``) measures, in one run:

* bulk writes through ``record_samples`` (batches of 1,000) into SQLite and
  PostgreSQL, against the limit: the same rows, already encoded, inserted
  with a bare ``executemany`` (SQLite) or ``COPY`` (PostgreSQL) into an
  identical empty table; each batch of 1,000 updates 1,000 resource
  records (the worst case), and, on PostgreSQL, the same again with ten
  meters per resource (100 resources per batch, as a poll gives) and the
  worst case again by two writer processes taking the batches in turn (a
  collector with two workers), against a COPY by as many processes;
* ``get_statistics`` over 1,000,000 samples on PostgreSQL (one meter, 1,000
  resources, 30 days, period 3,600 s, groupby resource_id), against one
  hand-written SQL query computing the same numbers, rows fetched.

It prints rates, times and the ratios with the targets (writes on
PostgreSQL >= 50,000 samples/s; statistics <= 1.5x the hand-written query).
PostgreSQL is the local server (``--pg-url``); the bench creates and drops a
database of its own. It is a measurement: the exit status is 0 whatever the
figures.
"""

import argparse
import datetime
import multiprocessing
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid

import orjson
import psycopg
from oslo_config import cfg

from calipso_agent import opts
from calipso_agent import sample as sample_mod
from calipso_agent.storage import base
from calipso_agent.storage.sql import postgresql, sqlite, values

T0 = datetime.datetime(2026, 10, 1, tzinfo=datetime.UTC)
DAYS = 30
RESOURCES = 1000
BATCH = 1000
STATS_PERIOD = 3600
# What a poll of an instance gives: several meters at once.
POLLED_METERS = ('cpu', 'cpu_util', 'memory', 'memory.usage', 'vcpus',
                 'disk.read.bytes', 'disk.write.bytes', 'disk.root.size',
                 'network.incoming.bytes', 'network.outgoing.bytes')
COLUMNS = ('id', 'name', 'type', 'unit', 'volume', 'user_id', 'project_id',
           'resource_id', 'source', 'message_id', 'ts', 'recorded_ts',
           'resource_metadata')


def make_conf():
    conf = cfg.ConfigOpts()
    opts.register_opts(conf)
    conf([])
    return conf


def say(*args):
    print(*args, flush=True)


def make_samples(count, seed=42, meters=('cpu_util', 'memory.usage',
                                         'disk.read.bytes'), per_resource=1):
    """Realistic samples: ``count`` spread over RESOURCES resources (ten
    projects) and DAYS days, nova-like metadata. ``per_resource``
    consecutive samples (one per meter) share a resource and a time, as a
    poll of a resource gives: with 1, each batch of BATCH samples updates
    BATCH resource records (the worst case)."""
    rng = random.Random(seed)
    slots = max(1, count // per_resource)
    step = DAYS * 86400 / max(1, slots // RESOURCES)
    samples = []
    for index in range(count):
        slot = index // per_resource
        resource = slot % RESOURCES
        ts = T0 + datetime.timedelta(
            seconds=(slot // RESOURCES) * step + rng.random() * step)
        samples.append(sample_mod.Sample(
            name=meters[index % len(meters)], type='gauge', unit='%',
            volume=rng.uniform(0, 100),
            user_id=f'user-{resource % 50}',
            project_id=f'project-{resource % 10}',
            resource_id=f'instance-{resource:04d}',
            timestamp=ts.isoformat(),
            resource_metadata={
                'host': f'compute-{resource % 20}', 'flavor_id': '2',
                'flavor_name': 'm1.small', 'display_name': f'vm{resource}',
                'image_ref': 'c1d2e3f4', 'status': 'active',
                'instance_type': 'm1.small', 'memory_mb': 2048, 'vcpus': 1,
                'disk_gb': 20},
            source='openstack', message_id=str(uuid.UUID(int=index))))
    return samples


def encoded_rows(samples):
    """The rows the SQL driver stores, encoded beforehand (the limit's
    input: what any writer would have to send)."""
    now = values.to_us(datetime.datetime.now(datetime.UTC))
    return [(s.id, s.name, s.type, s.unit, s.volume, s.user_id,
             s.project_id, s.resource_id, s.source, s.message_id,
             values.to_us(base.parse_timestamp(s.timestamp)), now,
             orjson.dumps(s.resource_metadata).decode())
            for s in samples]


def timed(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def batch_starts(count):
    return range(0, count, BATCH)


def record_all(connection, samples, starts=None):
    """``samples`` through record_samples, a batch per start (every batch
    by default)."""
    for start in batch_starts(len(samples)) if starts is None else starts:
        result = connection.record_samples(samples[start:start + BATCH])
        if result.rejected:
            raise RuntimeError(f'rejected: {result.rejected[:3]}')


def copy_all(conn, rows, starts=None):
    """The limit: ``rows`` COPied into table bare, a transaction per batch
    (every batch by default)."""
    for start in batch_starts(len(rows)) if starts is None else starts:
        with conn.transaction(), conn.cursor() as cur, \
                cur.copy(f'COPY bare ({", ".join(COLUMNS)}) FROM STDIN') \
                as copy:
            for row in rows[start:start + BATCH]:
                copy.write_row(row)


def pg_database(admin_url):
    """(url of a new empty database, drop function)."""
    name = f'calipso_bench_{uuid.uuid4().hex[:12]}'
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE {name}')

    def drop():
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS {name} WITH (FORCE)')

    return admin_url.rsplit('/', 1)[0] + '/' + name, drop


def bench_sqlite_writes(samples):
    rows = encoded_rows(samples)
    with tempfile.TemporaryDirectory() as tmp:
        ours = sqlite.Connection(
            make_conf(), f'sqlite:///{tmp}/ours.sqlite')
        ours.upgrade()
        ours_s = timed(lambda: record_all(ours, samples))
        ours.close()
        bare = sqlite3.connect(f'{tmp}/ours.sqlite')
        bare.execute('CREATE TABLE bare AS SELECT * FROM sample WHERE 0')
        for index in ('name, ts', 'project_id, name, ts',
                      'resource_id, ts', 'ts'):
            bare.execute(f'CREATE INDEX "bare_{index}" ON bare ({index})')
        bare.execute('CREATE UNIQUE INDEX bare_id ON bare (id)')
        insert = (f'INSERT INTO bare ({", ".join(COLUMNS)}) '
                  f'VALUES ({", ".join("?" * len(COLUMNS))})')

        def bare_insert():
            for start in range(0, len(rows), BATCH):
                with bare:
                    bare.executemany(insert, rows[start:start + BATCH])

        bare_s = timed(bare_insert)
        bare.close()
    return ours_s, bare_s


def bench_pg_writes(samples, admin_url):
    rows = encoded_rows(samples)
    url, drop = pg_database(admin_url)
    try:
        ours = postgresql.Connection(make_conf(), url)
        ours.upgrade()
        ours_s = timed(lambda: record_all(ours, samples))
        ours.close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute('CREATE TABLE bare (LIKE sample INCLUDING ALL)')
            bare_s = timed(lambda: copy_all(conn, rows))
    finally:
        drop()
    return ours_s, bare_s


def _run_share(prepare, share, barrier):
    """In a writer process: get ready, start with the others, write."""
    write = prepare(share)
    barrier.wait(timeout=120)
    write()


def in_processes(prepare, shares):
    """``prepare(share)`` in one forked process per share, returning what
    writes the share; all start writing together. Wall seconds from the
    start to the end of the last one."""
    context = multiprocessing.get_context('fork')
    barrier = context.Barrier(len(shares) + 1)
    processes = [context.Process(target=_run_share,
                                 args=(prepare, share, barrier))
                 for share in shares]
    for process in processes:
        process.start()
    try:
        barrier.wait(timeout=120)
        start = time.perf_counter()
        for process in processes:
            process.join()
        elapsed = time.perf_counter() - start
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join()
    failed = [p.exitcode for p in processes if p.exitcode]
    if failed:
        raise RuntimeError(f'writer processes failed: exit codes {failed}')
    return elapsed


def bench_pg_parallel_writes(samples, admin_url, writers):
    """``writers`` processes sharing the batches in turn, as the workers
    of one collector share its queue (every batch still updates its
    resource records, which the writers then take in turn): (ours, bare)
    seconds; bare is a COPY of the same rows by as many processes."""
    rows = encoded_rows(samples)
    url, drop = pg_database(admin_url)
    try:
        postgresql.Connection(make_conf(), url).close()

        def ours(share):
            store = postgresql.Connection(make_conf(), url)

            def write():
                record_all(store, samples, share)
                store.close()
            return write

        def bare(share):
            conn = psycopg.connect(url, autocommit=True)

            def write():
                copy_all(conn, rows, share)
                conn.close()
            return write

        starts = batch_starts(len(samples))
        shares = [starts[k::writers] for k in range(writers)]
        ours_s = in_processes(ours, shares)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute('CREATE TABLE bare (LIKE sample INCLUDING ALL)')
        bare_s = in_processes(bare, shares)
    finally:
        drop()
    return ours_s, bare_s


HAND_WRITTEN_STATISTICS = '''
SELECT resource_id, unit, (ts - %(origin)s) / %(period)s AS bucket,
       count(*), min(volume), max(volume), avg(volume), sum(volume),
       min(ts), max(ts)
  FROM sample
 WHERE name = %(name)s AND ts >= %(start)s AND ts < %(end)s
 GROUP BY resource_id, unit, bucket
 ORDER BY bucket, resource_id
'''


def bench_pg_statistics(count, admin_url, repeat):
    samples = make_samples(count, meters=('cpu_util',))
    url, drop = pg_database(admin_url)
    try:
        store = postgresql.Connection(make_conf(), url)
        store.upgrade()
        load_s = timed(lambda: record_all(store, samples))
        say(f'  loaded {count:,} samples through record_samples in '
            f'{load_s:.1f} s ({count / load_s:,.0f}/s)')
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute('VACUUM ANALYZE sample')
        end = T0 + datetime.timedelta(days=DAYS)
        query_filter = base.SampleFilter(meter='cpu_util',
                                         start_timestamp=T0,
                                         end_timestamp=end)
        params = {'origin': values.to_us(T0),
                  'period': STATS_PERIOD * 1_000_000, 'name': 'cpu_util',
                  'start': values.to_us(T0),
                  'end': values.to_us(end)}
        ours_times, hand_times, read_times = [], [], []
        with psycopg.connect(url) as conn:
            for _ in range(repeat):
                start = time.perf_counter()
                rows = conn.execute(HAND_WRITTEN_STATISTICS,
                                    params).fetchall()
                hand_times.append(time.perf_counter() - start)
                start = time.perf_counter()
                stats = store.get_statistics(query_filter,
                                             period=STATS_PERIOD,
                                             groupby=['resource_id'])
                ours_times.append(time.perf_counter() - start)
                start = time.perf_counter()
                for item in stats:
                    item.as_dict()
                read_times.append(time.perf_counter() - start)
        if len(stats) != len(rows) or sum(s.count for s in stats) != sum(
                r[3] for r in rows):
            raise RuntimeError(f'different answers: {len(stats)} groups vs '
                               f'{len(rows)}')
        store.close()
    finally:
        drop()
    return (statistics.median(ours_times), statistics.median(hand_times),
            statistics.median(read_times), len(rows))


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m bench.storage',
                                     description=__doc__.split('\n\n')[0])
    parser.add_argument('--write-samples', type=int, default=100_000)
    parser.add_argument('--stats-samples', type=int, default=1_000_000)
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--writers', type=int, default=2,
                        help='writer processes of the parallel write run')
    parser.add_argument('--only', choices=('writes', 'statistics'))
    parser.add_argument('--pg-url', default=os.environ.get(
        'CALIPSO_BENCH_PG_URL', 'postgresql://postgres@127.0.0.1:5432/test'))
    args = parser.parse_args(argv)

    if args.only in (None, 'writes'):
        samples = make_samples(args.write_samples)
        say(f'bulk writes: {len(samples):,} samples, batches of {BATCH}')
        for engine, run in (('SQLite', bench_sqlite_writes),
                            ('PostgreSQL', lambda s: bench_pg_writes(
                                s, args.pg_url))):
            ours_s, bare_s = run(samples)
            rate = len(samples) / ours_s
            say(f'  {engine:<10} record_samples {rate:>10,.0f}/s   bare '
                f'{len(samples) / bare_s:>10,.0f}/s   ours/bare '
                f'{bare_s / ours_s:.2f}')
            if engine == 'PostgreSQL':
                met = 'met' if rate >= 50_000 else 'NOT met'
                say(f'  PostgreSQL target >= 50,000 samples/s: {met}')
        ours_s, bare_s = bench_pg_parallel_writes(samples, args.pg_url,
                                                  args.writers)
        rate = len(samples) / ours_s
        say(f'  PostgreSQL, {args.writers} writer processes (a collector '
            f'with workers = {args.writers}): record_samples {rate:,.0f}/s   '
            f'bare COPY by {args.writers} processes '
            f'{len(samples) / bare_s:,.0f}/s   ours/bare '
            f'{bare_s / ours_s:.2f}   >= 50,000/s: '
            f'{"met" if rate >= 50_000 else "NOT met"}')
        polled = make_samples(args.write_samples, meters=POLLED_METERS,
                              per_resource=len(POLLED_METERS))
        ours_s, bare_s = bench_pg_writes(polled, args.pg_url)
        say(f'  same on PostgreSQL with {len(POLLED_METERS)} meters per '
            f'resource ({BATCH // len(POLLED_METERS)} resources per batch): '
            f'record_samples {len(polled) / ours_s:,.0f}/s   bare '
            f'{len(polled) / bare_s:,.0f}/s   ours/bare '
            f'{bare_s / ours_s:.2f}')
    if args.only in (None, 'statistics'):
        say(f'statistics: {args.stats_samples:,} samples, 1 meter, '
            f'{RESOURCES} resources, {DAYS} days, period {STATS_PERIOD} s, '
            'groupby resource_id (PostgreSQL)')
        ours_s, hand_s, read_s, groups = bench_pg_statistics(
            args.stats_samples, args.pg_url, args.repeat)
        ratio = ours_s / hand_s
        say(f'  get_statistics {ours_s:.3f} s   hand-written SQL '
            f'{hand_s:.3f} s   ({groups:,} groups)   ratio {ratio:.2f}x   '
            f'target <= 1.5x: {"met" if ratio <= 1.5 else "NOT met"}')
        # The call returns rows decoded on first access; reading every
        # field of every result (what the API does) costs this on top.
        whole = (ours_s + read_s) / hand_s
        say(f'  every field of every result read: +{read_s:.3f} s, '
            f'ratio {whole:.2f}x')
    return 0


if __name__ == '__main__':
    sys.exit(main())
