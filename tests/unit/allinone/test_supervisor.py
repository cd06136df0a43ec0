"""The supervisor of calipso run, on small Python processes."""

import os
import sys
import time

import pytest

from calipso_agent.allinone import supervisor as supervisor_mod

READY_THEN_WAIT = ('import signal, sys, time\n'
                   'signal.signal(signal.SIGTERM, lambda *a: (print("bye", '
                   'flush=True), sys.exit(0)))\n'
                   'print("ready", flush=True)\n'
                   'time.sleep(60)\n')
IGNORES_TERM = ('import signal, time\n'
                'signal.signal(signal.SIGTERM, signal.SIG_IGN)\n'
                'print("ready", flush=True)\n'
                'time.sleep(60)\n')


def daemon(tmp_path, name, code, **options):
    options.setdefault('ready_log', 'ready')
    return supervisor_mod.Daemon(name, [sys.executable, '-c', code],
                                 str(tmp_path), **options)


def test_start_in_order_stop_in_reverse(tmp_path):
    stopped = []
    first = daemon(tmp_path, 'first', READY_THEN_WAIT,
                   after_stop=lambda: stopped.append('first'))
    second = daemon(tmp_path, 'second', READY_THEN_WAIT,
                    after_stop=lambda: stopped.append('second'))
    supervisor = supervisor_mod.Supervisor([first, second])
    supervisor.start()
    assert first.alive() and second.alive()
    assert first.process.pid < second.process.pid
    assert supervisor.stop() == {'second': 0, 'first': 0}
    assert stopped == ['second', 'first']
    with open(first.log_path) as handle:
        assert handle.read() == 'ready\nbye\n'


def test_a_daemon_that_dies_at_start_stops_the_others(tmp_path):
    first = daemon(tmp_path, 'first', READY_THEN_WAIT)
    broken = daemon(tmp_path, 'broken',
                    'import sys; print("no config"); sys.exit(3)')
    supervisor = supervisor_mod.Supervisor([first, broken])
    with pytest.raises(supervisor_mod.StartError,
                       match='broken exited with status 3') as info:
        supervisor.start()
    assert 'no config' in str(info.value)
    assert not first.alive()


def test_not_ready_in_time(tmp_path):
    slow = daemon(tmp_path, 'slow', 'import time; time.sleep(60)')
    supervisor = supervisor_mod.Supervisor([slow], ready_timeout=1)
    with pytest.raises(supervisor_mod.StartError,
                       match='slow not ready after 1s'):
        supervisor.start()
    assert not slow.alive()


def test_sigterm_ignored_means_sigkill(tmp_path):
    stubborn = daemon(tmp_path, 'stubborn', IGNORES_TERM, stop_timeout=0.5)
    supervisor = supervisor_mod.Supervisor([stubborn])
    supervisor.start()
    assert supervisor.stop() == {'stubborn': -9}


def test_exited_daemon_is_started_again_with_a_growing_delay(tmp_path):
    marker = tmp_path / 'starts'
    code = (f'open({str(marker)!r}, "a").write("x")\n'
            'print("ready", flush=True)\n'
            'import time; time.sleep(0.3)\n')
    flaky = daemon(tmp_path, 'flaky', code)
    supervisor = supervisor_mod.Supervisor([flaky], poll_interval=0.05)
    supervisor.start()
    deadline = time.monotonic() + 4.5
    supervisor.watch(lambda: time.monotonic() > deadline)
    supervisor.stop()
    # Starts at 0, then after 1 s and 2 s delays (plus 0.3 s runs each):
    # three starts in 4.5 s, not one per poll.
    assert marker.read_text() == 'xxx'
    assert flaky.restarts == 2


def test_log_tail_is_this_runs(tmp_path):
    once = daemon(tmp_path, 'once', READY_THEN_WAIT)
    once.start()
    once.wait_ready(10)
    once.stop()
    once.start()
    once.wait_ready(10)
    assert once.log_tail() == 'ready\n'
    once.stop()
    assert os.path.getsize(once.log_path) == len('ready\nbye\n' * 2)
