"""What the API and proxy benchmarks share.

* a private PostgreSQL database, created and dropped by the bench, and a
  fast loader (COPY, then the ``resource`` and ``meter`` tables filled by
  set-based SQL as ``record_samples`` maintains them);
* starting and stopping the real servers (``calipso-api``,
  ``calipso-proxy``) in their own process groups;
* a cheap load generator: N client threads, each with its own keep-alive
  ``http.client`` connection (or any callable), a fixed number of
  requests, latencies and throughput;
* percentiles and the printing helpers.
"""

import contextlib
import dataclasses
import datetime
import hashlib
import http.client
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

import orjson
import psycopg
from oslo_config import cfg

from calipso_agent import opts, storage
from calipso_agent.storage.sql import values

REPO = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get('CALIPSO_BENCH_PG_URL',
                        'postgresql://postgres@127.0.0.1:5432/test')
T0 = datetime.datetime(2026, 10, 1, tzinfo=datetime.UTC)
STARTUP_TIMEOUT = 60
COLUMNS = ('id', 'name', 'type', 'unit', 'volume', 'user_id', 'project_id',
           'resource_id', 'source', 'message_id', 'ts', 'recorded_ts',
           'resource_metadata')
UNITS = {'cpu_util': '%', 'memory.usage': 'MB', 'disk.read.bytes': 'B'}
_processes = []


def say(*args):
    print(*args, flush=True)


def make_conf():
    conf = cfg.ConfigOpts()
    opts.register_opts(conf)
    conf([])
    return conf


def cpu_note():
    """One line on the machine the figures come from."""
    load = ', '.join(f'{x:.2f}' for x in os.getloadavg())
    return (f'{os.cpu_count()} CPUs, load average {load} at start; the '
            'load generator runs in this process and shares the CPUs with '
            'the servers and PostgreSQL')


def stop_on_sigterm():
    """SIGTERM unwinds like Ctrl-C: servers stopped, database dropped."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f'signal {signum}')
    signal.signal(signal.SIGTERM, handler)


# --- CPU accounting --------------------------------------------------------

def _proc_stats():
    """{pid: (ppid, command name, CPU seconds)} of every process: its own
    and that of its children that exited (a PostgreSQL backend's, once
    it ended, is its postmaster's)."""
    found = {}
    tick = os.sysconf('SC_CLK_TCK')
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            with open(f'/proc/{entry}/stat') as stat:
                text = stat.read()
            name = text[text.index('(') + 1:text.rindex(')')]
            fields = text[text.rindex(')') + 2:].split()
            found[int(entry)] = (int(fields[1]), name,
                                 sum(map(int, fields[11:15])) / tick)
    return found


class CpuMeter:
    """CPU seconds used by this process (load generator and in-process
    calls), by a server's process tree and by PostgreSQL's processes,
    read from /proc before and after a run: unlike wall times, they do
    not swell with the queueing of a saturated machine."""

    PARTS = ('this process', 'server', 'PostgreSQL')

    def __init__(self, server_pid=None):
        self.server_pid = server_pid

    def read(self):
        stats = _proc_stats()
        tree, grown = {self.server_pid}, True
        while grown:
            grown = False
            for pid, (ppid, _, _) in stats.items():
                if ppid in tree and pid not in tree:
                    tree.add(pid)
                    grown = True
        return {
            'this process': time.process_time(),
            'server': sum(stats[p][2] for p in tree if p in stats),
            'PostgreSQL': sum(cpu for _, name, cpu in stats.values()
                              if name.startswith('postgres')),
        }

    @staticmethod
    def per_request(before, after, requests):
        """CPU milliseconds per request of each part, between two
        reads."""
        return {part: 1000 * (after[part] - before[part]) / max(1, requests)
                for part in CpuMeter.PARTS}


# --- percentiles and results ----------------------------------------------

def percentile(values, q):
    """The q-th percentile (0-100) of sorted ``values``, interpolated."""
    if not values:
        return float('nan')
    position = (len(values) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


@dataclasses.dataclass
class Result:
    """Latencies (s) of one run, the kind of each request, wall time and
    the (kind, description) of each failed request."""

    latencies: list
    kinds: list
    elapsed: float
    problems: list = dataclasses.field(default_factory=list)

    def merge(self, other):
        return Result(self.latencies + other.latencies,
                      self.kinds + other.kinds,
                      self.elapsed + other.elapsed,
                      self.problems + other.problems)

    def only(self, kind):
        """The requests of one kind, made one at a time: their wall time
        is the sum of their latencies."""
        mine = [lat for lat, k in zip(self.latencies, self.kinds,
                                      strict=True) if k == kind]
        return Result(mine, [kind] * len(mine), sum(mine),
                      [p for p in self.problems if p[0] == kind])

    def p(self, q, kind=None):
        """Percentile q in milliseconds (of one kind of request)."""
        values = sorted(lat for lat, k in zip(self.latencies, self.kinds,
                                              strict=True)
                        if kind is None or k == kind)
        return percentile(values, q) * 1000

    @property
    def errors(self):
        return len(self.problems)

    @property
    def first_error(self):
        return self.problems[0][1] if self.problems else None

    @property
    def count(self):
        return len(self.latencies)

    @property
    def rate(self):
        return self.count / self.elapsed if self.elapsed else float('nan')


def run_concurrently(workers, total, kinds=1):
    """Call ``workers[n](i)`` for i in range(total), ``len(workers)`` at a
    time (one thread per worker); request i is of kind ``i % kinds``.

    A worker returns None, or a description of what went wrong.
    """
    latencies, done_kinds, problems = [], [], []
    counter = iter(range(total))
    lock = threading.Lock()
    start = threading.Barrier(len(workers) + 1)

    def loop(worker):
        mine, my_kinds = [], []
        start.wait()
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            t0 = time.perf_counter()
            try:
                problem = worker(i)
            except Exception as exc:
                problem = f'{type(exc).__name__}: {exc}'
            mine.append(time.perf_counter() - t0)
            my_kinds.append(i % kinds)
            if problem:
                problems.append((i % kinds, problem))
        with lock:
            latencies.extend(mine)
            done_kinds.extend(my_kinds)

    threads = [threading.Thread(target=loop, args=(w,), daemon=True)
               for w in workers]
    for thread in threads:
        thread.start()
    start.wait()
    t0 = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - t0
    return Result(latencies, done_kinds, elapsed, problems)


# --- HTTP ------------------------------------------------------------------

@dataclasses.dataclass
class Request:
    """One HTTP request of a mix."""

    kind: str
    method: str
    path: str
    body: bytes | None = None
    headers: dict = dataclasses.field(default_factory=dict)


class HttpClient:
    """One keep-alive connection; a request costs little client CPU."""

    def __init__(self, base_url, timeout=120):
        parts = urllib.parse.urlsplit(base_url)
        self.host, self.port = parts.hostname, parts.port
        self.timeout = timeout
        self.connection = None

    def connect(self):
        self.connection = http.client.HTTPConnection(
            self.host, self.port, timeout=self.timeout)
        self.connection.connect()
        self.connection.sock.setsockopt(socket.IPPROTO_TCP,
                                        socket.TCP_NODELAY, 1)

    def request(self, request):
        """(status, body); one retry on a connection the server closed
        while idle."""
        headers = dict(request.headers)
        if request.body is not None:
            headers.setdefault('Content-Type', 'application/json')
        for attempt in (1, 2):
            if self.connection is None:
                self.connect()
            try:
                self.connection.request(request.method, request.path,
                                        body=request.body, headers=headers)
                response = self.connection.getresponse()
                body = response.read()
                if response.will_close:
                    self.close()
                return response.status, body
            except (http.client.RemoteDisconnected, ConnectionError,
                    http.client.BadStatusLine):
                self.close()
                if attempt == 2:
                    raise

    def close(self):
        if self.connection is not None:
            self.connection.close()
            self.connection = None


class LoadGenerator:
    """``concurrency`` clients of one server, kept across runs."""

    def __init__(self, base_url, concurrency):
        self.base_url = base_url
        self.clients = [HttpClient(base_url) for _ in range(concurrency)]

    def worker(self, n, mix):
        """A ``run_concurrently`` worker: request ``mix[i % len(mix)]`` by
        client ``n``, its connection opened now."""
        client = self.clients[n]
        if client.connection is None:
            client.connect()

        def worker(i):
            request = mix[i % len(mix)]
            status, body = client.request(request)
            if status != 200:
                return f'{request.kind}: {status} {body[:200]!r}'
            return None
        return worker

    def run(self, mix, total, concurrency=None):
        """``total`` requests of ``mix`` (request i is mix[i % len]) by
        the first ``concurrency`` clients."""
        count = concurrency or len(self.clients)
        return run_concurrently([self.worker(n, mix) for n in range(count)],
                                total, kinds=len(mix))

    def fetch(self, request):
        return self.clients[0].request(request)

    def close(self):
        for client in self.clients:
            client.close()


# --- servers -----------------------------------------------------------------

def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def command(script, module):
    """The console script of this environment, else ``python -m``."""
    path = Path(sys.executable).parent / script
    if path.exists():
        return [str(path)]
    return [sys.executable, '-m', module]


def start_process(argv, log, env=None, cwd=None):
    """Start a program in its own process group, output to ``log``;
    stop_all() stops it if nothing else did."""
    with open(log, 'wb') as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                                start_new_session=True)
    _processes.append(proc)
    return proc


def start_server(argv, log, health_url, timeout=STARTUP_TIMEOUT):
    """Start a server of this repository (start_process) and wait for
    ``health_url`` to answer 200; RuntimeError with its log otherwise."""
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        filter(None, [str(REPO), env.get('PYTHONPATH')]))
    proc = start_process(argv, log, env=env, cwd=REPO)
    client = HttpClient(health_url, timeout=2)
    path = urllib.parse.urlsplit(health_url).path
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError, http.client.HTTPException):
            if client.request(Request('health', 'GET', path))[0] == 200:
                client.close()
                return proc
        if proc.poll() is not None or time.monotonic() > deadline:
            why = (f'exited ({proc.returncode})' if proc.poll() is not None
                   else f'no answer after {timeout} s')
            stop_process(proc)
            raise RuntimeError(f'{" ".join(argv)}: {why}\n{log_tail(log)}')
        time.sleep(0.2)


def stop_process(proc, grace=15):
    """SIGTERM the process group, SIGKILL what is left after ``grace``."""
    def signal_group(signum):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signum)

    if proc.poll() is None:
        signal_group(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    signal_group(signal.SIGKILL)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        say(f'  process {proc.pid} did not die')
    if proc in _processes:
        _processes.remove(proc)


def stop_all():
    for proc in list(_processes):
        stop_process(proc, grace=5)


def log_tail(log, lines=15):
    try:
        text = Path(log).read_text(errors='replace').splitlines()
    except OSError:
        return ''
    return '\n'.join('    | ' + line for line in text[-lines:])


def start_api(workdir, database_url, workers, threads):
    """The real calipso-api on the noauth pipeline; (base URL, process)."""
    port = free_port()
    config = Path(workdir) / 'calipso-api.conf'
    config.write_text(
        '[DEFAULT]\nuse_stderr = true\n'
        f'[database]\nconnection = {database_url}\n'
        f'[api]\nhost = 127.0.0.1\nport = {port}\nworkers = {workers}\n'
        f'threads = {threads}\nauth_strategy = noauth\n')
    base = f'http://127.0.0.1:{port}'
    proc = start_server(
        command('calipso-api', 'calipso_agent.cmd.api')
        + ['--config-file', str(config)],
        Path(workdir) / 'calipso-api.log', base + '/healthcheck')
    return base, proc


# --- database ---------------------------------------------------------------

@contextlib.contextmanager
def pg_database(admin_url=PG_URL):
    """The URL of a new empty database, dropped on the way out."""
    name = f'calipso_bench_{uuid.uuid4().hex[:12]}'
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE {name}')
    try:
        yield admin_url.rsplit('/', 1)[0] + '/' + name
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS {name} WITH (FORCE)')


def sample_rows(count, resources=1000, days=30, projects=10,
                meters=('cpu_util',), seed=42):
    """Rows of the sample table: ``count`` samples spread evenly over
    ``resources`` resources (project ``resource % projects``) and
    ``days`` days from T0, the meters in turn, nova-like metadata."""
    rng = random.Random(seed)
    t0 = values.to_us(T0)
    rounds = max(1, count // resources)
    step = days * 86400 * 1_000_000 / rounds
    metadata = [orjson.dumps({
        'host': f'compute-{r % 20}', 'flavor_id': '2',
        'flavor_name': 'm1.small', 'display_name': f'vm{r}',
        'image_ref': 'c1d2e3f4', 'status': 'active',
        'instance_type': 'm1.small', 'memory_mb': 2048, 'vcpus': 1,
        'disk_gb': 20}).decode() for r in range(resources)]
    random_ = rng.random
    for index in range(count):
        resource = index % resources
        name = meters[index % len(meters)]
        ts = t0 + int(((index // resources) % rounds + random_()) * step)
        yield (f'00000000-0000-4000-8000-{index:012x}', name, 'gauge',
               UNITS.get(name, '%'), random_() * 100,
               f'user-{resource % 50}', f'project-{resource % projects}',
               f'instance-{resource:04d}', 'openstack',
               f'00000000-0000-4000-9000-{index:012x}', ts, ts + 1_000_000,
               metadata[resource])


RESOURCES_SQL = '''
INSERT INTO resource (resource_id, project_id, user_id, source, first_ts,
                      last_ts, latest_id, metadata)
SELECT DISTINCT ON (resource_id) resource_id, project_id, user_id, source,
       min(ts) OVER (PARTITION BY resource_id), ts, id, resource_metadata
  FROM sample
 ORDER BY resource_id, ts DESC, id DESC
'''

METERS_SQL = '''
SELECT DISTINCT name, type, unit, resource_id, project_id, user_id, source
  FROM sample
'''


def meter_key(meter):
    """The meter table's key of (name, type, unit, resource_id,
    project_id, user_id, source), as record_samples computes it."""
    return hashlib.sha1(orjson.dumps(tuple(meter))).hexdigest()


def add_layout_args(parser, samples):
    """The data set options load_store_said reads."""
    parser.add_argument('--samples', type=int, default=samples)
    parser.add_argument('--resources', type=int, default=1000)
    parser.add_argument('--days', type=int, default=30)
    parser.add_argument('--projects', type=int, default=10)


def load_store_said(url, args, meters=('cpu_util',)):
    """load_store of a benchmark's layout arguments (samples, resources,
    projects, days), said as it goes."""
    say(f'loading {args.samples:,} samples ({", ".join(meters)}, '
        f'{args.resources:,} resources, {args.projects} projects, '
        f'{args.days} days) into PostgreSQL')
    spent = load_store(url, args.samples, resources=args.resources,
                       days=args.days, projects=args.projects, meters=meters)
    say(f'  loaded in {spent:.1f} s (COPY, then resources and meters by '
        'SQL, VACUUM ANALYZE)')


def load_store(url, count, **layout):
    """Schema by the driver's upgrade(), ``sample_rows(count, **layout)``
    by COPY, resources and meters by set-based SQL, VACUUM ANALYZE;
    seconds spent."""
    start = time.perf_counter()
    store = storage.get_connection_from_url(make_conf(), url)
    store.upgrade()
    store.close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute('SET synchronous_commit = off')
        conn.execute("SET maintenance_work_mem = '256MB'")
        # The secondary indexes are built once the rows are in: the
        # same indexes (their own definitions), built much faster.
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = "
            "'sample' AND indexname NOT IN (SELECT conname FROM "
            "pg_constraint)").fetchall()
        with conn.transaction():
            for name, _ in indexes:
                conn.execute(f'DROP INDEX "{name}"')
            with conn.cursor() as cur, cur.copy(
                    f'COPY sample ({", ".join(COLUMNS)}) FROM STDIN') as copy:
                for row in sample_rows(count, **layout):
                    copy.write_row(row)
            for _, definition in indexes:
                conn.execute(definition)
        with conn.transaction():
            conn.execute(RESOURCES_SQL)
            meters = conn.execute(METERS_SQL).fetchall()
            with conn.cursor() as cur:
                cur.executemany(
                    'INSERT INTO meter (key, name, type, unit, resource_id, '
                    'project_id, user_id, source) '
                    'VALUES (%s, %s, %s, %s, %s, %s, %s, %s)',
                    [(meter_key(m), *m) for m in meters])
        conn.execute('VACUUM ANALYZE')
    return time.perf_counter() - start


# --- printing ----------------------------------------------------------------

def row(label, result):
    """One table line: label, count, p50, p99, req/s, errors."""
    errors = f'   {result.errors} errors' if result.errors else ''
    return (f'  {label:<34} {result.count:>6} {result.p(50):>9.2f} '
            f'{result.p(99):>9.2f} {result.rate:>9.1f}{errors}')


HEADER = (f'  {"":<34} {"n":>6} {"p50 ms":>9} {"p99 ms":>9} '
          f'{"req/s":>9}')


def verdict(ok):
    return 'met' if ok else 'NOT met'
