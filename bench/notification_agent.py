"""Notification agents side by side on the local RabbitMQ.

``python -m bench.notification_agent`` measures, in one run and on
identical freshly published workloads: Ceilometer 27.0.0's notification
agent (the peer), a bare kombu consumer (the ceiling) and our
``calipso-agent-notification``. See bench/README.md.
"""

import argparse
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import kombu

from bench import peer, workload
from bench.common import log_tail, say, start_process, stop_all, stop_process

REPO = Path(__file__).resolve().parent.parent
OUR_MODULE = 'calipso_agent.cmd.agent_notification'
OUR_SCRIPT = 'calipso-agent-notification'
OUR_OUTPUT = 'samples.jsonl'
OUR_BATCH_SIZE = 500
BARE_PREFETCH = 500
BARE_ACK_EVERY = 100
STARTUP_TIMEOUT = 180
STALL_TIMEOUT = 60
SETTLE_TIMEOUT = 20
MEMORY_COUNT = 200_000
MEMORY_CHUNK = 20_000
TARGETS = (('ceilometer', 3.0), ('bare', 0.5))
NAMES = {
    'ceilometer': f'Ceilometer {peer.CEILOMETER_VERSION}',
    'bare': 'bare kombu consumer',
    'ours': OUR_SCRIPT,
}
_CEILOMETER_NAME = re.compile(rb"'name': '([^']*)'")
@dataclass
class Result:
    """What one contender achieved."""

    name: str
    notifications: int
    samples: int | None = None
    seconds: float | None = None
    batch: int | None = None
    queue: str = ''
    error: str | None = None
    notes: list = field(default_factory=list)
    rss_start: dict = field(default_factory=dict)
    rss_end: dict = field(default_factory=dict)
    rss_trace: list = field(default_factory=list)

    @property
    def rate(self):
        if self.error or not self.seconds:
            return None
        return self.notifications / self.seconds

    @property
    def sample_rate(self):
        if self.rate is None or self.samples is None:
            return None
        return self.samples / self.seconds


class LineCounter:
    """Counts the complete lines of a file that is being written."""

    def __init__(self, path):
        self.path = Path(path)
        self.lines = 0
        self._file = None

    def poll(self):
        if self._file is None:
            try:
                self._file = self.path.open('rb')
            except FileNotFoundError:
                return 0
        self.lines += self._file.read().count(b'\n')
        return self.lines

    def close(self):
        if self._file is not None:
            self._file.close()


def _children(pid):
    found = []
    for stat in Path('/proc').glob('[0-9]*/stat'):
        try:
            fields = stat.read_text().rsplit(')', 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            child = int(stat.parent.name)
            found.extend([child, *_children(child)])
    return found


def memory(pid):
    """{pid: (name, VmRSS kB, VmHWM kB)} of a process and its children."""
    result = {}
    for p in [pid, *_children(pid)]:
        try:
            status = Path(f'/proc/{p}/status').read_text()
            cmdline = Path(f'/proc/{p}/cmdline').read_bytes()
        except OSError:
            continue
        values = dict(line.split(':', 1) for line in status.splitlines()
                      if ':' in line)
        title = cmdline.replace(b'\0', b' ').decode(errors='replace')
        result[p] = (title.strip()[:70],
                     int(values.get('VmRSS', '0 kB').split()[0]),
                     int(values.get('VmHWM', '0 kB').split()[0]))
    return result


def ceilometer_names(path):
    names = collections.Counter()
    with open(path, 'rb') as lines:
        for line in lines:
            match = _CEILOMETER_NAME.search(line)
            names[match.group(1).decode() if match else '?'] += 1
    return names


def our_names(path):
    names = collections.Counter()
    with open(path, 'rb') as lines:
        for line in lines:
            try:
                sample = json.loads(line)
                names[sample.get('name') or sample.get('counter_name')] += 1
            except (ValueError, AttributeError):
                names['?'] += 1
    return names


def settle(broker, vhost):
    """Wait for 0 ready and 0 unacked on the queue; a description."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        counts = workload.rabbitmqctl_counts(workload.QUEUE, vhost)
        if counts is None:
            ready, _ = broker.wait(lambda r, c: r == 0, SETTLE_TIMEOUT)
            return f'{ready} ready (unacked unknown)', ready == 0
        if counts == (0, 0) or time.monotonic() > deadline:
            ready, unacked = counts
            return f'{ready} ready, {unacked} unacked', counts == (0, 0)
        time.sleep(0.5)


def wait_no_consumer(broker, timeout=30):
    _, consumers = broker.wait(lambda r, c: c == 0, timeout)
    if consumers:
        raise RuntimeError(f'{consumers} other consumer(s) on '
                           f'{workload.QUEUE}; stop them or use --vhost')


class ChunkPublisher(threading.Thread):
    """Publishes the rest of a workload in chunks while it is consumed."""

    def __init__(self, total, first, mix, vhost, chunk=MEMORY_CHUNK):
        super().__init__(daemon=True)
        self.total, self.published = total, first
        self.mix, self.vhost, self.chunk = mix, vhost, chunk
        self.error = None
        self.stopping = threading.Event()

    def run(self):
        try:
            with workload.Broker(self.vhost) as broker, \
                    workload.Publisher(self.vhost) as publisher:
                while (self.published < self.total
                       and not self.stopping.is_set()):
                    broker.wait(lambda r, c: r < self.chunk
                                or self.stopping.is_set(), 600)
                    n = min(self.chunk, self.total - self.published)
                    publisher.publish(n, self.mix, self.published)
                    self.published += n
        except Exception as exc:
            self.error = exc


def run_agent(name, argv, output, names_of, args, broker, workdir,
              env=None, batch=None, rss=False):
    """Measure one agent program over a fresh workload."""
    count = args.memory_count if rss else args.count
    expected = workload.expected_samples(count, args.mix_weights)
    total = sum(expected.values())
    result = Result(NAMES[name], count, total, batch=batch)
    log = Path(workdir) / f'{name}.log'
    first = min(count, MEMORY_CHUNK) if rss else count
    wait_no_consumer(broker)
    spent = workload.prepare(broker, first, args.mix_weights, args.vhost)
    say(f'{name}: published {first:,} notifications in {spent:.1f} s; '
        'starting the agent')
    proc = start_process(argv, log, env=env, cwd=workdir)
    feeder = None
    counter = LineCounter(output)
    try:
        started = time.monotonic()
        while not (broker.counts() or (0, 0))[1]:
            if proc.poll() is not None:
                result.error = (f'exited ({proc.returncode}) before '
                                f'consuming\n{log_tail(log)}')
                return result
            if time.monotonic() - started > STARTUP_TIMEOUT:
                result.error = (f'no consumer after {STARTUP_TIMEOUT} s\n'
                                f'{log_tail(log)}')
                return result
            time.sleep(0.02)
        t0 = time.monotonic()
        say(f'{name}: consumer up after {t0 - started:.1f} s; clock started')
        if rss:
            result.rss_start = memory(proc.pid)
            feeder = ChunkPublisher(count, first, args.mix_weights,
                                    args.vhost)
            feeder.start()
        deadline = t0 + 120 + count / 100
        seen, progress = 0, t0
        next_trace = total // 10
        while True:
            lines = counter.poll()
            now = time.monotonic()
            if rss and lines >= next_trace:
                result.rss_trace.append((
                    lines * count // total,
                    sum(v[1] for v in memory(proc.pid).values())))
                next_trace += total // 10
            if lines >= total:
                break
            if lines != seen:
                seen, progress = lines, now
            why = None
            if proc.poll() is not None:
                why = f'exited ({proc.returncode})'
            elif feeder and feeder.error:
                why = f'publishing failed: {feeder.error!r}'
            elif now - progress > STALL_TIMEOUT:
                why = f'no new sample for {STALL_TIMEOUT} s'
            elif now > deadline:
                why = f'not done after {now - t0:.0f} s'
            if why:
                result.error = (f'{why}; {lines:,} of {total:,} samples\n'
                                f'{log_tail(log)}')
                return result
            time.sleep(0.01)
        result.seconds = now - t0
        if rss:
            result.rss_end = memory(proc.pid)
        say(f'{name}: {total:,} samples after {result.seconds:.2f} s')
        result.queue, drained = settle(broker, args.vhost)
        if not drained:
            result.notes.append(f'queue not drained: {result.queue}')
        extra = counter.poll() - total
        if extra > 0:
            result.notes.append(f'{extra:,} samples more than expected')
        got = names_of(output)
        if got != expected:
            result.notes.append(f'meters differ from the expected '
                                f'{dict(expected)}: {dict(got)}')
        return result
    finally:
        if feeder:
            feeder.stopping.set()
        counter.close()
        stop_process(proc)
        if feeder:
            feeder.join(30)


def run_ceilometer(args, broker, workdir):
    package = peer.ensure_venv(args.ceilometer_venv, say=say)
    batch_timeout = None
    if args.count % peer.BATCH_SIZE:
        batch_timeout = 1
    argv, output = peer.configure(
        workdir, args.ceilometer_venv, package,
        workload.transport_url(args.vhost), workload.EXCHANGES,
        workload.TOPIC, batch_timeout=batch_timeout)
    result = run_agent('ceilometer', argv, output, ceilometer_names, args,
                       broker, workdir, env=peer.clean_env(),
                       batch=peer.BATCH_SIZE)
    if batch_timeout:
        result.notes.append(f'count is no multiple of {peer.BATCH_SIZE}: '
                            f'batch_timeout = {batch_timeout} added')
    return result


def our_env():
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        filter(None, [str(REPO), env.get('PYTHONPATH')]))
    return env


def find_our_agent():
    """(command, None) for the first of the console script and ``python
    -m`` whose ``--help`` works, else (None, why neither does)."""
    candidates = [[sys.executable, '-m', OUR_MODULE]]
    script = shutil.which(OUR_SCRIPT)
    if script:
        candidates.insert(0, [script])
    why = None
    for command in candidates:
        try:
            done = subprocess.run([*command, '--help'], capture_output=True,
                                  text=True, timeout=120, env=our_env(),
                                  stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError) as exc:
            why = repr(exc)
            continue
        if done.returncode == 0:
            return command, None
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        why = (f'{" ".join(command)} --help exited {done.returncode}: '
               + ' / '.join(tail))
    return None, why


def configure_ours(workdir, command, args):
    workdir = Path(workdir)
    meters_dir = workdir / 'meters.d'
    meters_dir.mkdir()
    output = workdir / OUR_OUTPUT
    pipeline = workdir / 'pipeline.yaml'
    workload.write_file_pipeline(pipeline, output)
    count = args.memory_count if args.memory_check else args.count
    lines = [
        '[DEFAULT]',
        f'transport_url = {workload.transport_url(args.vhost)}',
        '[notification]',
        'workers = 1',
        f'batch_size = {args.batch_size}',
        f'exchanges = {",".join(workload.EXCHANGES)}',
        f'pipeline_cfg_file = {pipeline}',
        *(['batch_timeout = 1'] if count % args.batch_size else []),
        '[meter]',
        f'meter_definitions_dirs = {meters_dir}',
        f'meter_definitions_paths = {workload.CEILOMETER_METERS}',
    ]
    conf = workdir / 'calipso.conf'
    conf.write_text('\n'.join(lines) + '\n')
    return [*command, '--config-file', str(conf)], output


def run_ours(args, broker, workdir, rss=False):
    command, why = find_our_agent()
    if why:
        return Result(NAMES['ours'], args.count, batch=args.batch_size,
                      error=f'cannot start: {why}')
    argv, output = configure_ours(workdir, command, args)
    result = run_agent('ours', argv, output, our_names, args, broker,
                       workdir, env=our_env(), batch=args.batch_size,
                       rss=rss)
    count = args.memory_count if rss else args.count
    if count % args.batch_size:
        result.notes.append(f'count is no multiple of {args.batch_size}: '
                            'batch_timeout = 1 added')
    return result


def run_bare(args, broker, workdir):
    """The ceiling: kombu, prefetch 500, oslo envelope decoded, acks/100."""
    result = Result(NAMES['bare'], args.count, batch=BARE_ACK_EVERY)
    wait_no_consumer(broker)
    spent = workload.prepare(broker, args.count, args.mix_weights,
                             args.vhost)
    say(f'bare: published {args.count:,} notifications in {spent:.1f} s')
    received = 0
    with kombu.Connection(workload.amqp_url(args.vhost),
                          connect_timeout=10) as conn:
        channel = conn.channel()
        channel.basic_qos(0, BARE_PREFETCH, False)
        last = [None]

        def on_message(message):
            nonlocal received
            envelope = json.loads(message.body)
            json.loads(envelope['oslo.message'])
            received += 1
            last[0] = message.delivery_tag
            if received % BARE_ACK_EVERY == 0:
                channel.basic_ack(message.delivery_tag, multiple=True)

        consumer = kombu.Consumer(
            channel, queues=[kombu.Queue(workload.QUEUE, no_declare=True)],
            on_message=on_message, auto_declare=False)
        consumer.consume()
        t0 = progress = time.monotonic()
        while received < args.count:
            try:
                conn.drain_events(timeout=1)
                progress = time.monotonic()
            except TimeoutError:
                if time.monotonic() - progress > STALL_TIMEOUT:
                    result.error = (f'no message for {STALL_TIMEOUT} s; '
                                    f'{received:,} of {args.count:,}')
                    return result
        if received % BARE_ACK_EVERY:
            channel.basic_ack(last[0], multiple=True)
        result.seconds = time.monotonic() - t0
        consumer.cancel()
        say(f'bare: {received:,} notifications after {result.seconds:.2f} s')
    result.queue, drained = settle(broker, args.vhost)
    if not drained:
        result.notes.append(f'queue not drained: {result.queue}')
    return result


def median(runs):
    """The run of median time, or the first failed one."""
    failed = [r for r in runs if r.error]
    if failed:
        return failed[0]
    ranked = sorted(runs, key=lambda r: r.seconds)
    chosen = ranked[(len(ranked) - 1) // 2]
    if len(runs) > 1:
        chosen.notes.append('median of ' + ', '.join(
            f'{r.seconds:.2f}' for r in ranked) + ' s')
    return chosen


def fmt(value, digits=0):
    return '-' if value is None else f'{value:,.{digits}f}'


def report(results, args):
    size, wire = workload.mean_sizes(args.mix_weights)
    expected = sum(workload.expected_samples(args.count,
                                             args.mix_weights).values())
    say()
    weights = ':'.join(map(str, args.mix_weights.values()))
    say(f'{args.count:,} notifications, mix {weights} '
        f'(exists:update:port), ~{size:,.0f} B each ({wire:,.0f} B on the '
        f'wire), {expected:,} samples expected; broker 127.0.0.1:5672 '
        f'vhost {args.vhost}')
    header = (f'{"contender":<28} {"batch":>5} {"seconds":>8} '
              f'{"notif/s":>9} {"samples/s":>10}  queue after')
    say(header)
    say('-' * len(header))
    for key, result in results.items():
        if result.error:
            say(f'{result.name:<28} FAILED: {result.error}')
            continue
        samples = result.sample_rate if key != 'bare' else None
        say(f'{result.name:<28} {fmt(result.batch):>5} '
            f'{fmt(result.seconds, 2):>8} {fmt(result.rate):>9} '
            f'{fmt(samples):>10}  {result.queue}')
        for note in result.notes:
            say(f'{"":<28} note: {note}')
    ours = results.get('ours')
    for other, target in TARGETS:
        if other not in results or not ours:
            continue
        if ours.rate is None or results[other].rate is None:
            say(f'ours / {other}: not measured (target >= {target}x)')
            continue
        ratio = ours.rate / results[other].rate
        verdict = 'met' if ratio >= target else 'NOT met'
        say(f'ours / {other}: {ratio:.2f}x  (target >= {target}x: '
            f'{verdict})')


def report_memory(result):
    say()
    say(f'memory check: {result.notifications:,} notifications through '
        f'{result.name} (batch {result.batch})')
    if result.error:
        say(f'FAILED: {result.error}')
        return
    say(f'  {fmt(result.rate)} notifications/s, {fmt(result.sample_rate)} '
        f'samples/s, queue after: {result.queue}')
    start, end = result.rss_start, result.rss_end
    for pid in sorted(set(start) | set(end)):
        title = (end.get(pid) or start.get(pid))[0]
        rss0 = start[pid][1] / 1024 if pid in start else None
        rss1 = end[pid][1] / 1024 if pid in end else None
        peak = end[pid][2] / 1024 if pid in end else None
        say(f'  pid {pid} ({title}): VmRSS start {fmt(rss0, 1)} MiB, '
            f'end {fmt(rss1, 1)} MiB, peak {fmt(peak, 1)} MiB')
    say(f'  total VmRSS: start '
        f'{sum(v[1] for v in start.values()) / 1024:,.1f} MiB, end '
        f'{sum(v[1] for v in end.values()) / 1024:,.1f} MiB')
    if result.rss_trace:
        say('  total VmRSS along the way: ' + ', '.join(
            f'{fmt(rss / 1024, 1)} MiB at {done:,}'
            for done, rss in result.rss_trace))
    for note in result.notes:
        say(f'  note: {note}')


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog='python -m bench.notification_agent',
        description=__doc__.split('\n\n')[0])
    parser.add_argument('--count', type=int, default=20000,
                        help='notifications per contender (20000)')
    parser.add_argument('--batch-size', type=int, default=OUR_BATCH_SIZE,
                        help='our agent\'s [notification] batch_size '
                             f'({OUR_BATCH_SIZE}); Ceilometer keeps '
                             f'{peer.BATCH_SIZE}')
    parser.add_argument('--only', action='append',
                        choices=('ours', 'ceilometer', 'bare'),
                        help='run only this contender (repeatable)')
    parser.add_argument('--skip-ceilometer', action='store_true')
    parser.add_argument('--mix', default=workload.DEFAULT_MIX,
                        help='exists:update:port weights, or one kind '
                             '(exists, update, port); default 2:1:1')
    parser.add_argument('--repeat', type=int, default=1,
                        help='runs per contender, the median is shown')
    parser.add_argument('--memory-check', action='store_true',
                        help='instead of the comparison, run our agent '
                             'over --memory-count notifications and print '
                             'its RSS at start and end')
    parser.add_argument('--memory-count', type=int, default=MEMORY_COUNT)
    parser.add_argument('--vhost', default=workload.DEFAULT_VHOST,
                        help='RabbitMQ virtual host (created when '
                             'missing); another one than / keeps the run '
                             'apart from other users of the broker')
    parser.add_argument('--ceilometer-venv', type=Path,
                        default=peer.DEFAULT_VENV)
    args = parser.parse_args(argv)
    if min(args.count, args.memory_count, args.batch_size, args.repeat) < 1:
        parser.error('counts, the batch size and --repeat must be positive')
    try:
        args.mix_weights = workload.parse_mix(args.mix)
    except ValueError as exc:
        parser.error(str(exc))
    if not workload.expected_samples(1000, args.mix_weights):
        parser.error(f'mix {args.mix} yields no samples, so no run could '
                     'tell when it is done')
    return args


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    contenders = args.only or ['ceilometer', 'bare', 'ours']
    if args.skip_ceilometer and 'ceilometer' in contenders:
        contenders.remove('ceilometer')
    runners = {'ceilometer': run_ceilometer, 'bare': run_bare,
               'ours': run_ours}
    try:
        workload.ensure_vhost(args.vhost)
        broker = workload.Broker(args.vhost)
    except Exception as exc:
        say(f'cannot use RabbitMQ on 127.0.0.1:5672: {exc!r}')
        return 1
    results = {}
    try:
        if args.memory_check:
            with tempfile.TemporaryDirectory(prefix='calipso-bench-') as d:
                report_memory(run_ours(args, broker, d, rss=True))
            return 0
        for key in ('ceilometer', 'bare', 'ours'):
            if key not in contenders:
                continue
            runs = []
            for _ in range(args.repeat):
                with tempfile.TemporaryDirectory(
                        prefix='calipso-bench-') as d:
                    try:
                        runs.append(runners[key](args, broker, d))
                    except Exception as exc:
                        runs.append(Result(NAMES[key], args.count,
                                           error=repr(exc)))
                if runs[-1].error:
                    break
            results[key] = median(runs)
        report(results, args)
        return 0
    finally:
        stop_all()
        broker.purge()
        broker.close()


if __name__ == '__main__':
    sys.exit(main())
