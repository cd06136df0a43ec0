"""The query API's own overhead, over PostgreSQL.

``python -m bench.api`` (part of ``tox -e bench``) loads 1,000,000
samples (one meter, 1,000 resources in ten projects, 30 days) into a
PostgreSQL database of its own, starts the real ``calipso-api`` (gunicorn
gthread, noauth pipeline) on a free loopback port and measures, per
scenario:

* ``GET /v2/samples?limit=100``;
* ``GET /v2/meters/cpu_util/statistics?period=3600`` over one day (the
  1,000 resources together: 24 rows), and the same grouped by
  resource_id (one row per resource and hour, fewer requests);

p50, p99 and req/s of the API with 1 client and with 16 concurrent
clients (threads of this process, one keep-alive connection each), and
of the same storage call made in this process by 1 and by 16 threads
(statistics rows decoded). With 1 client, API requests and in-process
calls alternate; with 16, runs of each alternate. API p50 minus
in-process p50 is the API's own overhead (target: at most 2 ms). At 16,
the CPU each request took is also read from /proc for both ways: in this
process (clients, in-process calls), in the API's processes and in
PostgreSQL's; their difference is the HTTP path's extra CPU per request,
which a saturated machine multiplies by the queue ahead of each request.
The
database is dropped at the end; the exit status is 0 whatever the
figures (1 when nothing could be measured).
"""

import argparse
import datetime
import os
import sys
import tempfile
import urllib.parse

import orjson

from bench import common
from calipso_agent import storage
from calipso_agent.storage import base

PERIOD = 3600
TARGET_MS = 2.0
ROUNDS = 2


class Scenario:
    """One API request, the storage call it makes and how many of each
    to measure (``requests`` concurrently, ``serial`` alone)."""

    def __init__(self, name, path, call, requests, serial):
        self.name = name
        self.request = common.Request(name, 'GET', path)
        self.call = call
        self.requests = max(1, requests)
        self.serial = max(1, serial)


def scenarios(store, args):
    start = common.T0 + datetime.timedelta(days=args.days // 2)
    end = start + datetime.timedelta(days=1)
    day_filter = base.SampleFilter(meter='cpu_util', start_timestamp=start,
                                   end_timestamp=end)
    query = urllib.parse.urlencode([
        ('period', PERIOD),
        ('q.field', 'timestamp'), ('q.op', 'ge'),
        ('q.value', start.isoformat()),
        ('q.field', 'timestamp'), ('q.op', 'lt'),
        ('q.value', end.isoformat())])
    statistics_path = f'/v2/meters/cpu_util/statistics?{query}'

    def samples():
        return store.get_samples(base.SampleFilter(), limit=100)

    def statistics(groupby=None):
        found = store.get_statistics(day_filter, period=PERIOD,
                                     groupby=groupby)
        # Rows are decoded on first access: decode them all.
        for item in found:
            item.count  # noqa: B018
        return found

    found = [
        Scenario('samples limit=100', '/v2/samples?limit=100', samples,
                 args.requests, args.requests // 4),
        Scenario('statistics 1 day', statistics_path, statistics,
                 args.stats_requests, args.stats_requests // 4)]
    if args.groupby_requests:
        # Beyond the two scenarios: an 8.6 MB answer, to show what
        # the API's representation and JSON cost per row.
        found.append(Scenario(
            'statistics 1 day by resource',
            f'{statistics_path}&groupby=resource_id',
            lambda: statistics(['resource_id']), args.groupby_requests,
            args.groupby_requests // 2))
    return found


def check_answer(load, scenario):
    """The API and the store give as many items: (items, bytes)."""
    status, body = load.fetch(scenario.request)
    if status != 200:
        raise RuntimeError(f'{scenario.name}: API answered {status}: '
                           f'{body[:300]!r}')
    items = len(orjson.loads(body))
    expected = len(scenario.call())
    if items != expected:
        raise RuntimeError(f'{scenario.name}: API answered {items} items, '
                           f'the store {expected}')
    return items, len(body)


def alone(load, scenario):
    """One thread alternating an API request and the in-process call:
    (API, in-process) results."""
    api = load.worker(0, [scenario.request])

    def worker(i):
        if i % 2:
            scenario.call()
            return None
        return api(i)

    mixed = common.run_concurrently([worker], 2 * scenario.serial, kinds=2)
    return mixed.only(0), mixed.only(1)


def together(load, scenario, concurrency, meter):
    """``concurrency`` clients, then as many threads in process, in
    ROUNDS alternating runs: (API, in-process) results and the CPU ms
    per request of each (CpuMeter parts)."""
    api = local = None
    share = max(1, scenario.requests // ROUNDS)
    cpu = {'API': dict.fromkeys(meter.PARTS, 0.0),
           'in-process': dict.fromkeys(meter.PARTS, 0.0)}

    def call(_):
        scenario.call()

    def timed(kind, run):
        before = meter.read()
        result = run()
        used = meter.per_request(before, meter.read(), result.count)
        for part, ms in used.items():
            cpu[kind][part] += ms / ROUNDS
        return result

    for _ in range(ROUNDS):
        a = timed('API', lambda: load.run([scenario.request], share))
        b = timed('in-process', lambda: common.run_concurrently(
            [call] * concurrency, share))
        api = a if api is None else api.merge(a)
        local = b if local is None else local.merge(b)
    return api, local, cpu


def cpu_lines(cpu, concurrency):
    """The CPU per request of both ways, and the p50 difference it
    implies on this machine when the clients saturate it."""
    cores = os.cpu_count() or 1
    lines = []
    for kind, parts in cpu.items():
        detail = ', '.join(f'{part} {ms:.2f}' for part, ms in parts.items())
        lines.append(f'  CPU per request at {concurrency}, {kind}: '
                     f'{sum(parts.values()):.2f} ms ({detail})')
    extra = sum(cpu['API'].values()) - sum(cpu['in-process'].values())
    lines.append(
        f'  extra CPU per request of the HTTP path: {extra:+.2f} ms; when '
        f'{concurrency} closed-loop clients keep all {cores} CPUs busy '
        f'either way, each request waits behind the others and the p50 '
        f'grows by about {concurrency} x {extra:.2f} / {cores} = '
        f'{concurrency * extra / cores:+.1f} ms')
    return lines


def http_floor(load, count=500):
    """What any request costs: the unauthenticated versions document
    (``GET /``), which touches no storage (the healthcheck pings the
    store), by one client."""
    request = common.Request('versions', 'GET', '/')
    load.run([request], 50, concurrency=1)
    return load.run([request], count, concurrency=1)


def mean_ms(result):
    return 1000 * sum(result.latencies) / max(1, len(result.latencies))


def overhead(api, local):
    extra = api.p(50) - local.p(50)
    return (f'API p50 - in-process p50 = {extra:+.2f} ms, target <= '
            f'{TARGET_MS:g} ms: {common.verdict(extra <= TARGET_MS)} '
            f'(means: {mean_ms(api) - mean_ms(local):+.2f} ms)')


def measure(load, scenario, concurrency, meter):
    items, size = check_answer(load, scenario)
    common.say(f'{scenario.name}: GET {scenario.request.path}')
    common.say(f'  answer: {items:,} items, {size:,} bytes of JSON (as '
               'many items from the store)')
    warmup = min(scenario.serial, concurrency)
    load.run([scenario.request], warmup)
    common.run_concurrently([lambda _: scenario.call()] * concurrency,
                            warmup)
    api_1, local_1 = alone(load, scenario)
    api_n, local_n, cpu = together(load, scenario, concurrency, meter)
    common.say(common.HEADER)
    common.say(common.row('API, 1 client', api_1))
    common.say(common.row('in-process, 1 thread', local_1))
    common.say(common.row(f'API, {concurrency} clients', api_n))
    common.say(common.row(f'in-process, {concurrency} threads', local_n))
    common.say(f'  1 client:   {overhead(api_1, local_1)}')
    common.say(f'  {concurrency} clients: {overhead(api_n, local_n)}')
    for line in cpu_lines(cpu, concurrency):
        common.say(line)
    for name, result in (('API, 1 client', api_1),
                         ('in-process, 1 thread', local_1),
                         (f'API, {concurrency} clients', api_n),
                         (f'in-process, {concurrency} threads', local_n)):
        if result.errors:
            common.say(f'  {name}: first error: {result.first_error}')
    return scenario.name, api_1, local_1, api_n, local_n


def parse_args(argv):
    parser = argparse.ArgumentParser(prog='python -m bench.api',
                                     description=__doc__.split('\n\n')[0])
    common.add_layout_args(parser, samples=1_000_000)
    parser.add_argument('--requests', type=int, default=2000,
                        help='GET /v2/samples requests at --concurrency '
                             '(a quarter of it alone); default 2000')
    parser.add_argument('--stats-requests', type=int,
                        help='statistics requests at --concurrency (a '
                             'quarter of it alone); default --requests/5')
    parser.add_argument('--groupby-requests', type=int,
                        help='grouped statistics requests at '
                             '--concurrency (half of it alone; 0: leave '
                             'them out); default 32')
    parser.add_argument('--concurrency', type=int, default=16)
    parser.add_argument('--api-workers', type=int, default=2)
    parser.add_argument('--api-threads', type=int, default=4)
    parser.add_argument('--pg-url', default=common.PG_URL,
                        help='an existing database of the server, to '
                             'create and drop ours (CALIPSO_BENCH_PG_URL)')
    args = parser.parse_args(argv)
    if args.stats_requests is None:
        args.stats_requests = max(1, args.requests // 5)
    if args.groupby_requests is None:
        args.groupby_requests = 32
    if min(args.samples, args.resources, args.days, args.projects,
           args.requests, args.concurrency) < 1:
        parser.error('counts must be positive')
    return args


def main(argv=None):
    args = parse_args(argv)
    common.stop_on_sigterm()
    common.say(f'machine: {common.cpu_note()}')
    results = []
    failed = False
    try:
        with common.pg_database(args.pg_url) as url, \
                tempfile.TemporaryDirectory() as workdir:
            common.load_store_said(url, args)
            base_url, proc = common.start_api(
                workdir, url, args.api_workers, args.api_threads)
            common.say(f'calipso-api on {base_url}: gunicorn gthread, '
                       f'{args.api_workers} workers x {args.api_threads} '
                       'threads, noauth pipeline')
            common.say(f'clients: up to {args.concurrency} threads of this '
                       'process, one keep-alive http.client connection '
                       'each; in-process calls: the same storage driver '
                       'here')
            store = storage.get_connection_from_url(common.make_conf(), url)
            load = common.LoadGenerator(base_url, args.concurrency)
            meter = common.CpuMeter(proc.pid)
            try:
                floor = http_floor(load)
                common.say(f'HTTP round trip floor (GET /, no '
                           f'storage, 1 client): p50 {floor.p(50):.2f} ms, '
                           f'p99 {floor.p(99):.2f} ms')
                for scenario in scenarios(store, args):
                    results.append(measure(load, scenario,
                                           args.concurrency, meter))
            finally:
                load.close()
                store.close()
                common.stop_process(proc)
    except Exception as exc:
        common.say(f'bench failed: {type(exc).__name__}: {exc}')
        failed = True
    except KeyboardInterrupt as exc:
        common.say(f'interrupted ({exc})')
        failed = True
    finally:
        common.stop_all()
    if results:
        common.say(f'summary: API p50 - in-process p50 (target <= '
                   f'{TARGET_MS:g} ms)')
        for name, api_1, local_1, api_n, local_n in results:
            common.say(f'  {name:<30} 1 client '
                       f'{api_1.p(50) - local_1.p(50):+8.2f} ms   '
                       f'{args.concurrency} clients '
                       f'{api_n.p(50) - local_n.p(50):+8.2f} ms   '
                       f'req/s API/in-process '
                       f'{api_n.rate / local_n.rate:.2f}')
    # A measurement: 0 whatever the figures, 1 when none could be made.
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
