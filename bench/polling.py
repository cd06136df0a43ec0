"""Polling agent benchmark: the host pollsters' CPU against psutil's, and
the agent's memory over many cycles.

``python -m bench.polling`` (part of ``tox -e bench``) measures, in one run:

* **CPU of one polling cycle** of the shipped host source (14 meters, one
  sample per meter, device and interface; block devices as the shipped
  configuration leaves them, then every one, for information): what the
  agent does at each tick (``SourceRunner.poll``: plan, discovery, the
  pollsters each as a
  supervised step in the calling thread, samples with their ids, handed
  to the outbox; publishing is the pipeline's and not counted), against
  the floor: the bare psutil calls the pollsters make, once each
  (``cpu_times``, ``virtual_memory``, ``disk_usage('/')``,
  ``disk_io_counters(perdisk=True)``, ``net_io_counters(pernic=True)``,
  ``getloadavg``). Both run alternately in rounds in this process and
  are timed with the process CPU clock (every thread). Target: ours <=
  1.5x the floor.
* **RSS over cycles**: ``calipso-agent-polling`` as a process polling the
  host source every ``--interval`` seconds (1 by default) into a
  ``file://`` publisher, for ``--cycles`` cycles (1,000 by default: about
  17 minutes); the resident memory of its polling worker is printed at the
  first cycle, every tenth of the run and at the end.
* **Instructions** (``--instructions``, for information): the user-space
  instructions of one cycle and of the floor, counted by valgrind's
  callgrind over ``--instruction-cycles`` calls each: a count that
  does not move with whatever else runs on the machine (the kernel's
  work in the system calls, the same on both sides, is not counted).
  The instructions of the two add up: what the CPU clock shows above
  them is the same instructions running slower side by side.

It is a measurement: the exit status is 0 whatever the figures.
"""

import argparse
import collections
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import psutil
import yaml

from bench.common import make_conf
from calipso_agent.pollsters import (
    host,
    manager,
    partitioning,
    runner,
    sources,
)
from calipso_agent.pollsters import outbox as outbox_mod

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(REPO, 'etc', 'calipso', 'polling.yaml')
TARGET = 1.5


def say(*args):
    print(*args, flush=True)


def bare_psutil():
    """The psutil calls of one host cycle, once each."""
    psutil.cpu_times()
    psutil.virtual_memory()
    psutil.disk_usage(host.ROOT)
    psutil.disk_io_counters(perdisk=True)
    psutil.net_io_counters(pernic=True)
    psutil.getloadavg()


class CountingOutbox(outbox_mod.Outbox):
    """Keeps only the count of what a cycle hands over."""

    def __init__(self):
        super().__init__(lambda samples: None)
        self.samples = 0

    def put(self, samples):
        self.samples += len(samples)


def host_runner(every_device=False):
    """A SourceRunner of the shipped host source, as the agent makes it
    (``every_device``: with no block device left out)."""
    conf = make_conf()
    conf.set_override('host', 'bench-host')
    if every_device:
        conf.set_override('disk_exclude', '', group='host_pollsters')
    definition = sources.load_file(SHIPPED)
    polling = manager.PollingManager(
        conf, pipeline=object(), partitioner=partitioning.NoPartitioner())
    polling.file_definition = definition
    polling.outbox = CountingOutbox()
    [source] = definition.sources
    return polling, runner.SourceRunner(polling, source)


def cycles_of(source_runner):
    """A function polling the next cycle of ``source_runner`` at each
    call, stamped as the agent stamps them: its ticks are the multiples
    of the source's interval."""
    interval = source_runner.interval
    tick = [runner.next_tick(time.time(), interval)]

    def cycle():
        tick[0] += interval
        source_runner.poll(tick[0])
    return cycle


def cpu_per_call(function, count):
    started = time.process_time()
    for _ in range(count):
        function()
    return (time.process_time() - started) / count


def bench_cycle(rounds, per_round, every_device=False):
    polling, source_runner = host_runner(every_device)
    cycle = cycles_of(source_runner)
    cycle()
    bare_psutil()
    samples_per_cycle = polling.outbox.samples
    ours, floor = [], []
    for _ in range(rounds):
        ours.append(cpu_per_call(cycle, per_round))
        floor.append(cpu_per_call(bare_psutil, per_round))
    ours_us = sorted(ours)[len(ours) // 2] * 1e6
    floor_us = sorted(floor)[len(floor) // 2] * 1e6
    ratio = ours_us / floor_us
    devices = ('every block device' if every_device else
               'the default [host_pollsters] disk_exclude')
    say(f'CPU of one host polling cycle ({samples_per_cycle} samples, '
        f'{devices}; {len(polling.pollsters)} pollsters loaded), median of '
        f'{rounds} rounds of {per_round} cycles:')
    say(f'  bare psutil calls (floor)  {floor_us:9.1f} us')
    say(f'  polling cycle (ours)       {ours_us:9.1f} us')
    verdict = ('met' if ratio <= TARGET else 'NOT met') if not every_device \
        else 'for information: the target is on the shipped configuration'
    say(f'  ratio ours/floor           {ratio:9.2f}x  (target <= {TARGET}x:'
        f' {verdict})')


def bench_breakdown(rounds, per_round):
    """Where the cycle's CPU above the floor goes: the cycle with its
    psutil readings taken beforehand (the agent's own work), and with
    pollsters returning no samples (the runner's steps alone)."""
    polling, source_runner = host_runner()
    cycle = cycles_of(source_runner)
    taken = host.HostSnapshot()
    for read in (taken.cpu_busy_and_total, taken.virtual_memory,
                 taken.disk_usage, taken.disk_io, taken.net_io, taken.load):
        read()
    slots = [s for s in host.HostSnapshot.__slots__ if s != '_rows']

    class TakenSnapshot(host.HostSnapshot):
        __slots__ = ()

        def __init__(self):
            for slot in slots:
                setattr(self, slot, getattr(taken, slot))
            self._rows = {}

    made = host.HostSnapshot
    host.HostSnapshot = TakenSnapshot
    try:
        cycle()
        readings_taken = sorted(cpu_per_call(cycle, per_round)
                                for _ in range(rounds))[rounds // 2]
        for pollster in polling.pollsters:
            pollster.get_samples = lambda context, cache, resources: []
        steps_only = sorted(cpu_per_call(cycle, per_round)
                            for _ in range(rounds))[rounds // 2]
    finally:
        host.HostSnapshot = made
    say('Breakdown (psutil readings taken before each cycle):')
    say(f'  cycle without psutil       {readings_taken * 1e6:9.1f} us')
    say(f'  steps alone (no samples)   {steps_only * 1e6:9.1f} us')


def run_counted(side, count):
    """The child valgrind runs: ``count`` calls of one side, through
    ``itertools.starmap`` (valgrind counts only inside it)."""
    if side == 'cycle':
        _, source_runner = host_runner()
        call = cycles_of(source_runner)
    else:
        call = bare_psutil
    call()
    call()
    collections.deque(itertools.starmap(call, itertools.repeat((), count)),
                      maxlen=0)
    return 0


def counted_instructions(side, count):
    """User-space instructions per call of ``side``, or None (valgrind
    missing or failing)."""
    valgrind = shutil.which('valgrind')
    if valgrind is None:
        return None
    done = subprocess.run(
        [valgrind, '--tool=callgrind', '--toggle-collect=starmap_next',
         '--callgrind-out-file=/dev/null', sys.executable, '-m',
         'bench.polling', '--count-instructions-of', side,
         '--instruction-cycles', str(count)],
        cwd=REPO, capture_output=True, text=True)
    found = re.search(r'Collected : (\d+)', done.stderr)
    if done.returncode or found is None:
        return None
    return int(found.group(1)) / count


def bench_instructions(count):
    floor = counted_instructions('floor', count)
    cycle = counted_instructions('cycle', count)
    if floor is None or cycle is None:
        say('Instructions: not counted (valgrind missing or failing)')
        return
    say(f'User-space instructions (callgrind, {count} calls each; for '
        'information, the target is on CPU time):')
    say(f'  bare psutil calls (floor)  {floor:11,.0f}')
    say(f'  polling cycle (ours)       {cycle:11,.0f}')
    say(f'  ratio ours/floor           {cycle / floor:11.2f}x')


def agent_worker(master):
    children = master.children()
    return children[0] if children else None


def count_cycles(path, offset, seen):
    """Read the samples appended since ``offset``; the new offset."""
    try:
        with open(path, 'rb') as handle:
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return offset
    end = data.rfind(b'\n') + 1
    for line in data[:end].splitlines():
        if b'"load.1"' in line:
            stamp = line.split(b'"timestamp":"', 1)[1].split(b'"', 1)[0]
            seen.add(stamp)
    return offset + end


def bench_rss(cycles, interval):
    workdir = tempfile.mkdtemp(prefix='calipso-bench-polling-')
    try:
        samples = os.path.join(workdir, 'samples.jsonl')
        with open(SHIPPED) as handle:
            polling = yaml.safe_load(handle)
        polling['sources'][0]['interval'] = interval
        with open(os.path.join(workdir, 'polling.yaml'), 'w') as handle:
            yaml.safe_dump(polling, handle)
        with open(os.path.join(workdir, 'pipeline.yaml'), 'w') as handle:
            yaml.safe_dump({
                'sources': [{'name': 'all', 'meters': ['*'],
                             'sinks': ['out']}],
                'sinks': [{'name': 'out', 'publishers': [
                    f'file://{samples}?max_bytes=50000000&backup_count=1']
                }]}, handle)
        config = os.path.join(workdir, 'calipso.conf')
        with open(config, 'w') as handle:
            handle.write(
                f'[notification]\npipeline_cfg_file = {workdir}/pipeline.yaml'
                f'\n[polling]\ncfg_file = {workdir}/polling.yaml\n')
        log = open(os.path.join(workdir, 'agent.log'), 'wb')
        process = subprocess.Popen(
            [sys.executable, '-m', 'calipso_agent.cmd.agent_polling',
             '--config-file', config], cwd=REPO, stdout=log, stderr=log,
            start_new_session=True)
        master = psutil.Process(process.pid)
        seen, offset, started = set(), 0, None
        report_every = max(1, cycles // 10)
        next_report = 1
        first_rss = None
        deadline = time.monotonic() + cycles * interval * 3 + 60
        say(f'Agent RSS over {cycles} cycles of the host source every '
            f'{interval:g} s:')
        while len(seen) < cycles and time.monotonic() < deadline:
            time.sleep(min(1.0, interval))
            offset = count_cycles(samples, offset, seen)
            if len(seen) >= next_report:
                worker = agent_worker(master)
                if worker is None:
                    continue
                rss = worker.memory_info().rss / 2 ** 20
                if first_rss is None:
                    first_rss, started = rss, time.monotonic()
                say(f'  cycle {len(seen):5d}  worker RSS {rss:7.1f} MiB  '
                    f'master RSS {master.memory_info().rss / 2 ** 20:6.1f} '
                    f'MiB')
                next_report = (len(seen) // report_every + 1) * report_every
        worker = agent_worker(master)
        end_rss = worker.memory_info().rss / 2 ** 20 if worker else None
        elapsed = time.monotonic() - started if started else 0
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
        log.close()
        if end_rss is not None and first_rss is not None:
            say(f'  start {first_rss:.1f} MiB, end {end_rss:.1f} MiB after '
                f'{len(seen)} cycles in {elapsed:.0f} s '
                f'({end_rss - first_rss:+.1f} MiB)')
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=15)
    parser.add_argument('--per-round', type=int, default=200)
    parser.add_argument('--cycles', type=int, default=1000,
                        help='cycles of the RSS run (0: skip it)')
    parser.add_argument('--interval', type=float, default=1.0,
                        help='seconds between cycles of the RSS run')
    parser.add_argument('--breakdown', action='store_true',
                        help='also time the cycle without its psutil calls '
                             'and the steps without samples')
    parser.add_argument('--instructions', action='store_true',
                        help='also count the instructions of the cycle '
                             'and of the floor with valgrind')
    parser.add_argument('--instruction-cycles', type=int, default=300)
    parser.add_argument('--count-instructions-of', choices=('cycle', 'floor'),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.count_instructions_of:
        return run_counted(args.count_instructions_of,
                           args.instruction_cycles)
    say(f'{os.cpu_count()} CPUs, load average '
        f'{", ".join(f"{x:.2f}" for x in os.getloadavg())} at start')
    bench_cycle(args.rounds, args.per_round)
    bench_cycle(args.rounds, args.per_round, every_device=True)
    if args.breakdown:
        bench_breakdown(args.rounds, args.per_round)
    if args.instructions:
        bench_instructions(args.instruction_cycles)
    if args.cycles:
        bench_rss(args.cycles, args.interval)
    return 0


if __name__ == '__main__':
    sys.exit(main())
