"""Inventory graph traversals against one hand-written recursive query.

``python -m bench.inventory_graph`` (part of ``tox -e bench``): on SQLite
(a file) and PostgreSQL (a database of its own on the local server,
``--pg-url``, dropped afterwards), a host with 500 instances x 4 vNICs
(+ their ports, 8 networks and subnets; tests/helpers/inventory.py
big_host) is stored through ``upsert_inventory`` / ``upsert_links``, then:

* impact of the host through calipso_agent.inventory_graph.traversal
  (breadth first, one ``adjacent_links`` round trip per level, the
  objects read once, each dependent with its path of links, the edges),
  next to ONE hand-written ``WITH RECURSIVE`` query following the same
  link types in the same directions (clique_types.yaml) and returning
  the objects reached with their data, decoded as the store decodes it
  (no edges, no paths: a stricter floor than the same answer);
* clique of the host (its clique type's link types in order), next to
  one recursive query taking the link types in the same order.

Both sides must reach the same objects (checked). It prints p50 (and
p90) of ``--repeat`` runs of each, side by side, and the ratio with the
target (<= 2x the hand-written query). The runs of the two sides are
interleaved, so both see the same load of a shared machine. A
measurement: exit status 0 whatever the figures.
"""

import argparse
import gc
import statistics
import tempfile
import time

import sqlalchemy as sa

from bench.common import PG_URL, cpu_note, pg_database, say
from calipso_agent import shipped
from calipso_agent.inventory_graph import clique_types, traversal
from calipso_agent.inventory_graph import visibility as visibility_mod
from calipso_agent.storage.sql import postgresql, sqlite, values
from tests.helpers import basics
from tests.helpers import inventory as inventory_helpers

HOST = 'compute-big'
TARGET = 2.0


def _in_list(items):
    return ', '.join("'" + item.replace("'", "''") + "'"
                     for item in sorted(items))


def _live(alias, dialect):
    if dialect == 'postgresql':
        return f"{alias}.data ->> 'deleted_at' IS NULL"
    return f"json_extract({alias}.data, '$.deleted_at') IS NULL"


def _start(dialect):
    """The start id, in the collation of the id columns."""
    if dialect == 'postgresql':
        return 'CAST(:start AS TEXT) COLLATE "C"'
    return 'CAST(:start AS TEXT)'


def _objects(dialect):
    """The end of both queries: the objects reached, with their data."""
    return f"""
SELECT i.id, i.data FROM inventory i
WHERE i.id IN (SELECT id FROM walk) AND {_live('i', dialect)}
"""


def impact_query(dialect, forward, reverse, depth):
    """Every object within ``depth`` links of :start along ``forward``
    link types (source to target) and ``reverse`` ones (target to
    source)."""
    return sa.text(f"""
WITH RECURSIVE walk(id, depth) AS (
    SELECT {_start(dialect)}, 0
  UNION
    SELECT CASE WHEN l.source_id = w.id THEN l.target_id
                ELSE l.source_id END, w.depth + 1
    FROM walk w JOIN link l
      ON (l.source_id = w.id AND l.link_type IN ({_in_list(forward)}))
      OR (l.target_id = w.id AND l.link_type IN ({_in_list(reverse)}))
    WHERE w.depth < {int(depth)} AND {_live('l', dialect)}
)
{_objects(dialect)}""")


def clique_query(dialect, link_types):
    """The objects a clique gathers: step n follows link type n (either
    direction) from what the steps before it gathered."""
    steps = ' UNION ALL '.join(
        f"SELECT {n} AS n, '{link_type}' AS link_type"
        for n, link_type in enumerate(link_types, 1))
    return sa.text(f"""
WITH RECURSIVE steps(n, link_type) AS ({steps}),
walk(id, step) AS (
    SELECT {_start(dialect)}, 0
  UNION
    SELECT CASE WHEN l.source_id = w.id THEN l.target_id
                ELSE l.source_id END, s.n
    FROM walk w JOIN steps s ON s.n > w.step
    JOIN link l ON l.link_type = s.link_type
               AND (l.source_id = w.id OR l.target_id = w.id)
    WHERE {_live('l', dialect)}
)
{_objects(dialect)}""")


def timed_pair(ours, floor, repeat):
    """p50 and p90 of each, their runs interleaved (the machine's load
    changes: both sides see the same), and the last results. Each run
    starts from a collected heap (untimed): what a run allocates still
    makes the garbage collector run inside it, but not what the runs
    before it left pending."""
    times = ([], [])
    results = [None, None]
    for _ in range(repeat):
        for index, function in enumerate((ours, floor)):
            results[index] = None
            gc.collect()
            start = time.perf_counter()
            results[index] = function()
            times[index].append(time.perf_counter() - start)
    figures = []
    for series in times:
        series.sort()
        figures.append((statistics.median(series),
                        series[int(0.9 * (len(series) - 1))]))
    return figures, results


def run_on(name, store, rules, repeat):
    dialect = store.engine.dialect.name
    admin = visibility_mod.Visibility()
    (host,) = store.list_inventory(ids=[HOST])
    forward, reverse = rules.following('impact')
    (host_clique,) = rules.clique_types_of('host')

    def ours_impact():
        return traversal.impact(store, admin, rules, host)

    def ours_clique():
        return traversal.clique(store, admin, host, host_clique)

    def by_query(statement):
        """The query's rows, their JSON decoded as the store decodes
        it (psycopg decodes jsonb itself)."""
        def run():
            with store.engine.connect() as conn:
                rows = conn.execute(statement, {'start': HOST}).all()
            if dialect == 'postgresql':
                return rows
            return [(oid, values.loads(data)) for oid, data in rows]
        return run

    impact_sql = impact_query(dialect, forward, reverse, depth=4)
    clique_sql = clique_query(dialect, host_clique.link_types)
    rows = []
    for label, ours, floor in (
            ('impact', ours_impact, by_query(impact_sql)),
            ('clique', ours_clique, by_query(clique_sql))):
        ours()
        floor()
        ((ours_p50, ours_p90), (floor_p50, floor_p90)), (
            result, floor_rows) = timed_pair(ours, floor, repeat)
        if label == 'impact':
            reached = {d['id'] for d in result['dependents']} | {HOST}
        else:
            reached = {n['id'] for n in result['nodes']}
        expected = {oid for oid, _ in floor_rows}
        if reached != expected:
            raise SystemExit(f'{name} {label}: the traversals differ '
                             f'({len(reached)} objects vs {len(expected)})')
        rows.append((name, label, len(reached), ours_p50, ours_p90,
                     floor_p50, floor_p90))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--pg-url', default=PG_URL)
    parser.add_argument('--instances', type=int, default=500)
    parser.add_argument('--vnics', type=int, default=4)
    parser.add_argument('--repeat', type=int, default=15)
    args = parser.parse_args(argv)
    say(f'# inventory graph: host with {args.instances} instances x '
        f'{args.vnics} vNICs; {cpu_note()}')
    cloud = inventory_helpers.big_host(args.instances, args.vnics)
    say(f'{len(cloud.objects)} objects, {len(cloud.links)} links')
    rules = clique_types.load(f'{shipped.SOURCE_ETC}/clique_types.yaml')
    conf = basics.make_conf()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = sqlite.Connection(conf, f'sqlite:///{tmp}/graph.sqlite')
        cloud.store(store)
        rows += run_on('sqlite', store, rules, args.repeat)
        store.close()
    with pg_database(args.pg_url) as url:
        store = postgresql.Connection(conf, url)
        cloud.store(store)
        with store.engine.begin() as conn:
            conn.execute(sa.text('ANALYZE'))
        rows += run_on('postgresql', store, rules, args.repeat)
        store.close()
    say(f'{"store":<11}{"traversal":<10}{"objects":>8}{"ours p50":>11}'
        f'{"ours p90":>11}{"query p50":>11}{"query p90":>11}{"ratio":>7}'
        f'  target <= {TARGET:.0f}x')
    for name, label, count, o50, o90, f50, f90 in rows:
        say(f'{name:<11}{label:<10}{count:>8}{o50 * 1000:>9.1f}ms'
            f'{o90 * 1000:>9.1f}ms{f50 * 1000:>9.1f}ms{f90 * 1000:>9.1f}ms'
            f'{o50 / f50:>6.2f}x  '
            f'{"ok" if o50 / f50 <= TARGET else "ABOVE TARGET"}')


if __name__ == '__main__':
    main()
