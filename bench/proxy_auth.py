"""A channel's proxy under unknown tokens: does its tenant notice?

``python -m bench.proxy_auth`` (part of ``tox -e bench``) starts a real
Keystone (tests/helpers), the real ``calipso-api`` validating tokens
with it (SQLite store of a few hundred samples) and a real
``calipso-proxy`` of a channel, with the default ``[proxy]`` options and
the proxies' reader-only service user. One tenant client (channel token,
one request at a time, ``GET /v2/meters``) measures its latency:

* idle: nothing else runs;
* beside an attack: the same 48 clients below hammer another proxy of
  the host (another channel's): what the host's CPUs alone cost the
  tenant, the reference of the attack phases on a shared machine;
* under attack, twice: 48 clients (threads of another process, so that
  they do not share this one's interpreter) send well-formed random
  tokens as fast as they can for ``--seconds`` (60 s), first as they come
  (one address: the per-address limit answers most of them 429), then
  with a proxy whose per-address limit is off (``failed_auth_burst =
  0``, as if every client had its own address: only the negative cache
  and the bound on concurrent lookups protect it).

Meanwhile the controller's liveness check runs as the reconciler does
it (``Reconciler.healthy``: ``/healthcheck`` with
``proxy_healthcheck_timeout``, every ``reconcile_interval``); a proxy
unanswered for ``proxy_start_timeout`` would be restarted, which is
counted. Printed per phase: the tenant's p50 and p99, its errors, the
attackers' answers, Keystone's token validations and the restarts the
controller would make; then the tenant's p50 under attack / idle
(target <= 2x) and / beside an attack, errors (target 0), restarts
(target 0). The exit status
is 0 whatever the figures (1 when nothing could be measured).
"""

import argparse
import collections
import datetime
import multiprocessing
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
from oslo_config import cfg

from bench import common
from calipso_agent import storage
from calipso_proxy import opts as proxy_opts
from calipso_proxy.controller import reconciler
from tests.helpers import basics, daemons
from tests.helpers.identity import Keystone

P50_TARGET = 2.0
ATTACKERS = 48


def attack(url, clients, seconds, answers):
    """Run in a process of its own: ``clients`` threads sending random
    well-formed tokens for ``seconds``; their status counts into
    ``answers`` (a queue)."""
    stop = time.monotonic() + seconds
    counts = collections.Counter()
    lock = threading.Lock()

    def client():
        http = requests.Session()
        http.trust_env = False
        mine = collections.Counter()
        while time.monotonic() < stop:
            try:
                status = http.get(url + '/v2/meters', timeout=30, headers={
                    'X-Auth-Token': secrets.token_urlsafe(140)}).status_code
            except requests.RequestException as exc:
                status = type(exc).__name__
            mine[status] += 1
        with lock:
            counts.update(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    answers.put(dict(counts))


class LivenessWatch:
    """The reconciler's check of one proxy, on its schedule; counts the
    restarts it would order (no answer for proxy_start_timeout)."""

    def __init__(self, proxy):
        conf = cfg.ConfigOpts()
        proxy_opts.register_opts(conf)
        conf([])
        self.controller = conf.controller
        self.check = reconciler.Reconciler(conf, launcher=None,
                                           connect=lambda: None,
                                           lock=object())
        self.channel = {'id': proxy.channel_id, 'port': proxy.port}
        self.failures = self.restarts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        answered = time.monotonic()
        while not self._stop.wait(self.controller.reconcile_interval):
            if self.check.healthy(self.channel):
                answered = time.monotonic()
                continue
            self.failures += 1
            if time.monotonic() - answered > (
                    self.controller.proxy_start_timeout):
                self.restarts += 1
                answered = time.monotonic()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()


def tenant_run(proxy, seconds):
    """The tenant's requests, one at a time, for ``seconds``: (sorted
    latencies in ms, errors)."""
    http = requests.Session()
    http.trust_env = False
    latencies, errors = [], []
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        t0 = time.perf_counter()
        try:
            answer = http.get(proxy.url + '/v2/meters', timeout=30,
                              headers={'X-Auth-Token':
                                       daemons.CHANNEL_TOKEN})
            if answer.status_code != 200:
                errors.append(f'{answer.status_code} {answer.text[:100]}')
        except requests.RequestException as exc:
            errors.append(f'{type(exc).__name__}: {exc}')
        latencies.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.05)
    return sorted(latencies), errors


def phase(name, proxy, keystone, seconds, attackers, target=None):
    """The tenant on ``proxy`` while ``attackers`` hammer ``target``
    (default: the same proxy)."""
    before = keystone.token_validations()
    answers = None
    process = None
    if attackers:
        answers = multiprocessing.get_context('spawn').Queue()
        process = multiprocessing.get_context('spawn').Process(
            target=attack, args=((target or proxy).url, attackers, seconds,
                                 answers))
        process.start()
    with LivenessWatch(proxy) as watch:
        latencies, errors = tenant_run(proxy, seconds)
    counts = answers.get(timeout=120) if process else {}
    if process:
        process.join(30)
    p50 = common.percentile(latencies, 50)
    p99 = common.percentile(latencies, 99)
    common.say(f'  {name:<44} tenant p50 {p50:7.2f} ms, p99 {p99:8.2f} ms, '
               f'{len(latencies)} requests, {len(errors)} errors')
    if counts:
        common.say(f'    attackers: {sum(counts.values())} requests, '
                   + ', '.join(f'{k}: {v}' for k, v in sorted(
                       counts.items(), key=str)))
    common.say(f'    Keystone token validations: '
               f'{keystone.token_validations() - before}; healthcheck '
               f'misses {watch.failures}, restarts the controller would '
               f'make: {watch.restarts}')
    if errors:
        common.say(f'    first tenant error: {errors[0]}')
    return p50, len(errors), watch.restarts


def fill_store(database):
    conf = basics.make_conf(database__connection=database)
    store = storage.get_connection(conf)
    t0 = datetime.datetime(2026, 4, 1, tzinfo=datetime.UTC)
    store.record_samples([
        basics.make_sample(i, project_id=f'project-{i % 3}',
                            resource_id=f'vm-{i % 30}',
                            timestamp=(t0 + datetime.timedelta(minutes=i))
                            .isoformat())
        for i in range(300)])
    store.close()


def parse_args(argv):
    parser = argparse.ArgumentParser(prog='python -m bench.proxy_auth',
                                     description=__doc__.split('\n\n')[0])
    parser.add_argument('--seconds', type=float, default=60,
                        help='length of each attack (and of the idle '
                             'run: a quarter of it, at least 10 s)')
    parser.add_argument('--attackers', type=int, default=ATTACKERS)
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.attackers < 1:
        parser.error('--seconds and --attackers must be positive')
    return args


def start_proxy(workdir, keystone, api, **options):
    user = keystone.proxy_user
    return daemons.ProxyServer(
        workdir, ['project-0', 'project-1'], api.url,
        {'auth_type': 'password', 'auth_url': keystone.url,
         'username': user.name, 'password': user.password,
         'project_name': user.project_name,
         'user_domain_name': 'Default', 'project_domain_name': 'Default'},
        **options).start()


def main(argv=None):
    args = parse_args(argv)
    common.stop_on_sigterm()
    common.say(f'machine: {common.cpu_note()}')
    results = []
    proxies = []
    try:
        with tempfile.TemporaryDirectory() as workdir, Keystone() as ks:
            workdir = Path(workdir)
            database = f'sqlite:///{workdir}/calipso.sqlite'
            fill_store(database)
            api = daemons.APIServer(
                workdir / 'api', database, auth_strategy='keystone',
                workers=2, extra_config=daemons.keystone_authtoken_config(
                    ks))
            api.start()
            try:
                defaults = {o.name: o.default
                            for o in proxy_opts.PROXY_OPTS}
                common.say(
                    f'calipso-proxy: {defaults["workers"]} worker x '
                    f'{defaults["threads"]} threads, at most '
                    f'{defaults["max_identity_lookups"]} Keystone lookups '
                    f'at once, negative cache '
                    f'{defaults["negative_cache_time"]} s, '
                    f'{defaults["failed_auth_burst"]} failures per address '
                    f'then {defaults["failed_auth_rate"]}/s; tenant: '
                    'channel token, GET /v2/meters one at a time')
                proxy = start_proxy(workdir / 'proxy', ks, api)
                proxies.append(proxy)
                results.append(phase('idle', proxy, ks,
                                     max(10.0, args.seconds / 4), 0))
                open_proxy = start_proxy(workdir / 'proxy-open', ks, api,
                                         failed_auth_burst=0)
                proxies.append(open_proxy)
                results.append(phase(
                    f'{args.attackers} clients on another proxy', proxy, ks,
                    args.seconds, args.attackers, target=open_proxy))
                results.append(phase(
                    f'{args.attackers} clients, random tokens, one address',
                    proxy, ks, args.seconds, args.attackers))
                results.append(phase(
                    f'{args.attackers} clients, no per-address limit',
                    open_proxy, ks, args.seconds, args.attackers))
            finally:
                for proxy in proxies:
                    proxy.stop()
                api.stop()
    except Exception as exc:
        common.say(f'bench failed: {type(exc).__name__}: {exc}')
        return 1
    except KeyboardInterrupt as exc:
        common.say(f'interrupted ({exc})')
        return 1
    idle, beside = results[0][0], results[1][0]
    for (p50, errors, restarts), name in zip(
            results[2:], ('one address', 'no per-address limit'),
            strict=True):
        ratio = p50 / idle
        common.say(f'  {name}: tenant p50 attack/idle {ratio:.2f}x, target '
                   f'<= {P50_TARGET}x: {common.verdict(ratio <= P50_TARGET)}'
                   f' (attack/beside an attack {p50 / beside:.2f}x); '
                   f'errors {errors}, target 0: '
                   f'{common.verdict(errors == 0)}; restarts {restarts}, '
                   f'target 0: {common.verdict(restarts == 0)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
