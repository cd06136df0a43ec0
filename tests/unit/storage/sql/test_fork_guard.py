"""A fork waits for the process's SQLite transactions (fork_guard.py):
a child forked while another thread read the database would read that
instant's snapshot for ever (the channel controller's API workers
answered 404 for a channel another worker had just created)."""

import contextlib
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from calipso_agent import storage
from calipso_agent.storage.sql import fork_guard
from tests.helpers import basics

pytestmark = pytest.mark.skipif(not hasattr(os, 'register_at_fork'),
                                reason='no os.register_at_fork')


WRITER = """
import sys
from calipso_agent import storage
from tests.helpers import basics
store = storage.get_connection(basics.make_conf(
    database__connection=f'sqlite:///{sys.argv[1]}'))
for n in range(2, 7):
    store.create_channel({'id': f'c{n}', 'name': 'later'})
store.close()
"""


def store_at(path):
    return storage.get_connection(basics.make_conf(
        database__connection=f'sqlite:///{path}'))


def channels_seen_by_a_child_forked_during(store, path, write_after_fork):
    """Fork while another thread of this process is in a read
    transaction of ``store``; the number of channels the child's own
    connection (which read the database once already) sees after
    ``write_after_fork()`` wrote. Also the instants the transaction ended
    and the fork returned."""
    inside, release = threading.Event(), threading.Event()
    ended = []

    def reader():
        with store._transaction() as conn:
            conn.exec_driver_sql('SELECT count(*) FROM channel').scalar()
            inside.set()
            release.wait(10)
            ended.append(time.monotonic())

    thread = threading.Thread(target=reader)
    thread.start()
    assert inside.wait(10)
    threading.Timer(0.3, release.set).start()
    ready_r, ready_w = os.pipe()
    answer_r, answer_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_w)
            own = sqlite3.connect(path, timeout=10, isolation_level=None)
            own.execute('SELECT count(*) FROM channel').fetchone()
            os.write(answer_w, b'r')
            os.read(ready_r, 1)
            count = own.execute('SELECT count(*) FROM channel').fetchone()[0]
            os.write(answer_w, str(count).encode())
        finally:
            os._exit(0)
    forked = time.monotonic()
    os.close(ready_r)
    os.close(answer_w)
    thread.join(10)
    # The parent lets go of the database (as the reconciler does after
    # each pass): the last writer then restarts the WAL, which a child
    # holding its parent's lock bookkeeping does not see.
    store.close()
    assert os.read(answer_r, 1) == b'r'
    write_after_fork()
    os.write(ready_w, b'x')
    os.close(ready_w)
    count = int(os.read(answer_r, 64) or b'-1')
    os.close(answer_r)
    os.waitpid(pid, 0)
    return count, ended[0], forked


def test_a_child_forked_during_a_read_sees_later_writes(tmp_path):
    path = str(tmp_path / 'channels.sqlite')
    store = store_at(path)
    store.create_channel({'id': 'c1', 'name': 'first'})

    def write():
        # Another process (another API worker).
        subprocess.run([sys.executable, '-c', WRITER, path], check=True,
                       timeout=60, cwd=basics.REPO)

    count, ended, forked = channels_seen_by_a_child_forked_during(
        store, path, write)
    assert count == 6
    assert forked >= ended


def test_a_store_goes_on_after_a_fork_closed_its_connections(tmp_path):
    store = store_at(str(tmp_path / 'goes-on.sqlite'))
    try:
        store.create_channel({'id': 'c1', 'name': 'first'})
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        assert os.waitpid(pid, 0)[1] == 0
        store.create_channel({'id': 'c2', 'name': 'second'})
        assert [c['id'] for c in store.get_channels()] == ['c1', 'c2']
    finally:
        store.close()


def test_a_thread_forking_inside_its_own_transaction_is_not_held(tmp_path):
    store = store_at(str(tmp_path / 'own.sqlite'))
    try:
        with store._transaction() as conn:
            conn.exec_driver_sql('SELECT 1').scalar()
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            assert os.waitpid(pid, 0)[1] == 0
        assert fork_guard.GUARD.open_transactions() == 0
    finally:
        store.close()


def test_a_transaction_waits_while_a_fork_is_under_way():
    guard = fork_guard.ForkGuard()
    guard.before_fork()
    entered = threading.Event()

    def transaction():
        with guard.transaction():
            entered.set()

    thread = threading.Thread(target=transaction)
    thread.start()
    assert not entered.wait(0.2)
    guard.after_fork_in_parent()
    assert entered.wait(5)
    thread.join(5)
    assert guard.open_transactions() == 0


@contextlib.contextmanager
def another_thread_in_a_transaction(guard):
    """Another thread holds a transaction of ``guard`` meanwhile."""
    inside, release = threading.Event(), threading.Event()

    def transaction():
        with guard.transaction():
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=transaction)
    thread.start()
    assert inside.wait(5)
    try:
        yield
    finally:
        release.set()
        thread.join(5)


def test_a_transaction_open_past_the_limit_lets_the_fork_go_on(caplog):
    guard = fork_guard.ForkGuard(wait_limit=0.2)
    with another_thread_in_a_transaction(guard):
        with caplog.at_level(logging.WARNING, logger=fork_guard.__name__):
            started = time.monotonic()
            guard.before_fork()
            waited = time.monotonic() - started
        guard.after_fork_in_parent()
    assert waited >= 0.2
    assert 'Forking with 1 SQLite transaction(s)' in caplog.text


def test_the_child_starts_with_its_own_transactions_only():
    guard = fork_guard.ForkGuard()
    with another_thread_in_a_transaction(guard), guard.transaction():
        # As in a child forked from here: the other thread is gone.
        guard.after_fork_in_child()
        assert guard.open_transactions() == 1
    assert guard.open_transactions() == 0
