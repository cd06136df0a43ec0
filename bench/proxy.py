"""Latency and throughput a channel's proxy costs.

``python -m bench.proxy`` (part of ``tox -e bench``) loads 100,000
samples (three meters, 1,000 resources in ten projects, 30 days) into a
PostgreSQL database of its own, starts the real ``calipso-api`` (noauth
pipeline) and a real ``calipso-proxy`` for a channel of three of the
projects (channel token, no service credentials: it sends no token, so
the API takes its requests as an admin's), then sends the same request
mix with 16 concurrent clients directly to the API and through the
proxy, in alternating runs:

* ``GET /v2/samples?limit=100``, ``GET /v2/meters``,
  ``GET /v2/resources``, ``GET /v2/meters/cpu_util/statistics`` (period
  3600, one day) and ``POST /v2/query/samples`` (an and/or filter);
* direct requests are the ones the proxy forwards (built by its own
  ProjectScope: the ``project_id in <channel>`` term, the complex query
  wrapped), so both sides compute the same answers; the bench checks
  that they do.

It prints p50, p99 and req/s per side and per request, and the ratios
with the targets (proxy p50 <= 1.2x direct, proxy throughput >= 80% of
direct). The database is dropped at the end; the exit status is 0
whatever the figures (1 when nothing could be compared).
"""

import argparse
import datetime
import json
import sys
import tempfile
import urllib.parse
from pathlib import Path

import orjson
import webob.multidict

from bench import common
from calipso_proxy import opts as proxy_opts
from calipso_proxy.proxy import scope as scope_mod
from calipso_proxy.proxy import tenant_auth

METERS = ('cpu_util', 'memory.usage', 'disk.read.bytes')
TOKEN = 'calipso-bench-channel-token'
P50_TARGET = 1.2
RATE_TARGET = 0.8
ROUNDS = 2
_PROXY_DEFAULTS = {o.name: o.default for o in proxy_opts.PROXY_OPTS}


def tenant_mix(days):
    """The requests a tenant sends to the proxy."""
    start = common.T0 + datetime.timedelta(days=days // 2)
    end = start + datetime.timedelta(days=1)
    statistics = urllib.parse.urlencode([
        ('period', 3600),
        ('q.field', 'timestamp'), ('q.op', 'ge'),
        ('q.value', start.isoformat()),
        ('q.field', 'timestamp'), ('q.op', 'lt'),
        ('q.value', end.isoformat())])
    query = {
        'filter': json.dumps({'and': [
            {'=': {'counter_name': 'cpu_util'}},
            {'>=': {'timestamp': start.isoformat()}},
            {'<': {'timestamp': end.isoformat()}},
            {'or': [{'>': {'counter_volume': 90}},
                    {'<': {'counter_volume': 10}}]}]}),
        'orderby': json.dumps([{'timestamp': 'desc'}]),
        'limit': 100}
    headers = {tenant_auth.TOKEN_HEADER: TOKEN}
    return [
        common.Request('samples', 'GET', '/v2/samples?limit=100',
                       headers=headers),
        common.Request('meters', 'GET', '/v2/meters', headers=headers),
        common.Request('resources', 'GET', '/v2/resources',
                       headers=headers),
        common.Request('statistics', 'GET',
                       f'/v2/meters/cpu_util/statistics?{statistics}',
                       headers=headers),
        common.Request('complex query', 'POST', '/v2/query/samples',
                       body=json.dumps(query).encode(), headers=headers),
    ]


def direct_mix(mix, projects):
    """What the proxy forwards for each request of ``mix``."""
    scope = scope_mod.ProjectScope(projects)
    direct = []
    for request in mix:
        if request.method == 'POST':
            direct.append(common.Request(
                request.kind, 'POST', request.path,
                body=scope.scoped_complex_query(request.body)))
            continue
        path, _, query = request.path.partition('?')
        params = webob.multidict.MultiDict(
            urllib.parse.parse_qsl(query, keep_blank_values=True))
        forwarded = urllib.parse.urlencode(scope.scoped_params(params))
        direct.append(common.Request(request.kind, 'GET',
                                     f'{path}?{forwarded}'))
    return direct


def without_links(document):
    if isinstance(document, list):
        return [without_links(item) for item in document]
    if isinstance(document, dict):
        return {k: without_links(v) for k, v in document.items()
                if k != 'links'}
    return document


def check_answers(direct_load, proxy_load, direct, tenant, projects):
    """Both sides answer the same (links aside), within the channel:
    the items of each answer (0: a weak comparison, said so)."""
    counts = []
    for plain, proxied in zip(direct, tenant, strict=True):
        answers = []
        for load, request in ((direct_load, plain), (proxy_load, proxied)):
            status, body = load.fetch(request)
            if status != 200:
                raise RuntimeError(f'{request.kind}: {status} '
                                   f'{body[:300]!r}')
            answers.append(without_links(orjson.loads(body)))
        if answers[0] != answers[1]:
            raise RuntimeError(f'{plain.kind}: direct and proxied answers '
                               'differ')
        outside = [item for item in answers[0]
                   if 'project_id' in item
                   and item['project_id'] not in projects]
        if outside:
            raise RuntimeError(f'{plain.kind}: answer outside the channel')
        counts.append(len(answers[0]))
    return counts


def start_proxy(workdir, backend, projects, args):
    port = common.free_port()
    config = Path(workdir) / 'calipso-proxy.conf'
    config.write_text(
        '[DEFAULT]\nuse_stderr = true\n[proxy]\nchannel_id = bench\n'
        f'authorized_projects = {",".join(projects)}\n'
        f'backend_url = {backend}\n'
        f'token_hash = {tenant_auth.token_hash(TOKEN)}\n'
        f'host = 127.0.0.1\nport = {port}\n'
        f'workers = {args.proxy_workers}\nthreads = {args.proxy_threads}\n')
    base = f'http://127.0.0.1:{port}'
    proc = common.start_server(
        common.command('calipso-proxy', 'calipso_proxy.cmd.proxy')
        + ['--config-file', str(config)],
        Path(workdir) / 'calipso-proxy.log', base + '/healthcheck')
    return base, proc


def compare(direct_load, proxy_load, direct, tenant, args):
    """Warm-up, then ROUNDS alternating runs per side: (direct, proxy)."""
    warmup = min(args.requests, 10 * len(direct))
    direct_load.run(direct, warmup)
    proxy_load.run(tenant, warmup)
    share = max(len(direct), args.requests // ROUNDS)
    plain = proxied = None
    for _ in range(ROUNDS):
        a = direct_load.run(direct, share)
        b = proxy_load.run(tenant, share)
        plain = a if plain is None else plain.merge(a)
        proxied = b if proxied is None else proxied.merge(b)
    return plain, proxied


def report(plain, proxied, mix, args):
    common.say(common.HEADER)
    common.say(common.row(f'direct, {args.concurrency} clients', plain))
    common.say(common.row(f'through the proxy, {args.concurrency} clients',
                          proxied))
    common.say(f'  p50 per request (ms){"":<14}direct     proxy     ratio')
    for kind, request in enumerate(mix):
        a, b = plain.p(50, kind), proxied.p(50, kind)
        common.say(f'    {request.kind:<32} {a:>9.2f} {b:>9.2f} '
                   f'{b / a:>8.2f}x')
    for name, result in (('direct', plain), ('proxy', proxied)):
        if result.errors:
            common.say(f'  {name}: {result.errors} errors, first: '
                       f'{result.first_error}')
    p50 = proxied.p(50) / plain.p(50)
    rate = proxied.rate / plain.rate
    common.say(f'  p50 proxy/direct {p50:.2f}x, target <= {P50_TARGET}x: '
               f'{common.verdict(p50 <= P50_TARGET)}')
    common.say(f'  throughput proxy/direct {rate:.0%}, target >= '
               f'{RATE_TARGET:.0%}: {common.verdict(rate >= RATE_TARGET)}')


def parse_args(argv):
    parser = argparse.ArgumentParser(prog='python -m bench.proxy',
                                     description=__doc__.split('\n\n')[0])
    common.add_layout_args(parser, samples=100_000)
    parser.add_argument('--channel-projects', type=int, default=3,
                        help='projects of the channel (the first ones)')
    parser.add_argument('--requests', type=int, default=2000,
                        help='requests per side (in two runs), the mix in '
                             'turn; default 2000')
    parser.add_argument('--concurrency', type=int, default=16)
    parser.add_argument('--api-workers', type=int, default=2)
    parser.add_argument('--api-threads', type=int, default=4)
    parser.add_argument('--proxy-workers', type=int,
                        default=_PROXY_DEFAULTS['workers'],
                        help='default: [proxy] workers\'s default, which '
                             'the channel controller keeps')
    parser.add_argument('--proxy-threads', type=int,
                        default=_PROXY_DEFAULTS['threads'])
    parser.add_argument('--pg-url', default=common.PG_URL,
                        help='an existing database of the server, to '
                             'create and drop ours (CALIPSO_BENCH_PG_URL)')
    args = parser.parse_args(argv)
    if min(args.samples, args.resources, args.days, args.requests,
           args.concurrency, args.channel_projects) < 1:
        parser.error('counts must be positive')
    if args.channel_projects > args.projects:
        parser.error('--channel-projects exceeds --projects')
    return args


def main(argv=None):
    args = parse_args(argv)
    common.stop_on_sigterm()
    common.say(f'machine: {common.cpu_note()}')
    projects = [f'project-{i}' for i in range(args.channel_projects)]
    mix = tenant_mix(args.days)
    direct = direct_mix(mix, projects)
    failed = False
    try:
        with common.pg_database(args.pg_url) as url, \
                tempfile.TemporaryDirectory() as workdir:
            common.load_store_said(url, args, meters=METERS)
            api_url, api = common.start_api(
                workdir, url, args.api_workers, args.api_threads)
            common.say(f'calipso-api on {api_url}: {args.api_workers} '
                       f'workers x {args.api_threads} threads, noauth')
            direct_load = common.LoadGenerator(api_url, args.concurrency)
            proxy_load = None
            try:
                proxy_url, proxy = start_proxy(workdir, api_url, projects,
                                               args)
                common.say(f'calipso-proxy on {proxy_url}: channel of '
                           f'{", ".join(projects)}, {args.proxy_workers} '
                           f'workers x {args.proxy_threads} threads')
                common.say(f'clients: {args.concurrency} threads of this '
                           'process, one keep-alive http.client connection '
                           f'each; mix of {len(mix)} requests in turn: '
                           f'{", ".join(r.kind for r in mix)}')
                proxy_load = common.LoadGenerator(proxy_url,
                                                  args.concurrency)
                counts = check_answers(direct_load, proxy_load, direct,
                                       mix, projects)
                common.say('answers: the same both ways (items: '
                           + ', '.join(f'{r.kind} {n}'
                                       for r, n in zip(mix, counts,
                                                       strict=True))
                           + ')')
                if not all(counts):
                    common.say('  note: an empty answer compares little; '
                               'use more --samples')
                plain, proxied = compare(direct_load, proxy_load, direct,
                                         mix, args)
                report(plain, proxied, mix, args)
            finally:
                direct_load.close()
                if proxy_load is not None:
                    proxy_load.close()
                common.stop_all()
    except Exception as exc:
        common.say(f'bench failed: {type(exc).__name__}: {exc}')
        failed = True
    except KeyboardInterrupt as exc:
        common.say(f'interrupted ({exc})')
        failed = True
    finally:
        common.stop_all()
    # A measurement: 0 whatever the figures, 1 when none could be made.
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
