"""A fork waits until this process's SQLite transactions have ended,
and finds its SQLite connections closed.

SQLite keeps the locks of a process's connections in the process's
memory (per file). A child forked while its parent had a connection to a
WAL database open inherits that bookkeeping but not the locks: the
child's own connections to the file then read an old snapshot, whatever
other processes write later (stale answers, for ever). It happens where
a process that uses SQLite forks: the channel controller's reconciler
runs in the gunicorn master, which forks API workers at any time.

``transaction()`` brackets every SQLite transaction, and the SQLite
driver registers its engines (``watch``). A registered ``os.fork``
handler waits for the open transactions of other threads (a thread
forking from inside its own transaction cannot wait for itself), holds
new ones back until the fork is done, and closes the engines' idle
connections (the pools open new ones on next use). A transaction open
longer than ``WAIT_LIMIT`` seconds (a long export) does not hold a fork
back for ever: the fork goes on, and says so.
"""

import contextlib
import logging
import os
import threading
import time
import weakref

LOG = logging.getLogger(__name__)

WAIT_LIMIT = 60.0


class ForkGuard:
    """Counts the open transactions per thread; ``before_fork`` waits
    for those of other threads."""

    def __init__(self, wait_limit=WAIT_LIMIT):
        self.wait_limit = wait_limit
        self._condition = threading.Condition(threading.Lock())
        self._open = {}
        self._forking = None
        self._engines = weakref.WeakSet()

    def watch(self, engine):
        """Close ``engine``'s idle connections before every fork (a file
        database's engine: an in-memory one would lose its data)."""
        self._engines.add(engine)

    @contextlib.contextmanager
    def transaction(self):
        me = threading.get_ident()
        with self._condition:
            while self._forking is not None and self._forking != me:
                self._condition.wait()
            self._open[me] = self._open.get(me, 0) + 1
        try:
            yield
        finally:
            with self._condition:
                left = self._open.get(me, 0) - 1
                if left > 0:
                    self._open[me] = left
                else:
                    self._open.pop(me, None)
                self._condition.notify_all()

    def open_transactions(self):
        with self._condition:
            return sum(self._open.values())

    def before_fork(self):
        me = threading.get_ident()
        with self._condition:
            while self._forking is not None and self._forking != me:
                self._condition.wait()
            self._forking = me
            deadline = time.monotonic() + self.wait_limit
            while any(thread != me for thread in self._open):
                left = deadline - time.monotonic()
                if left <= 0:
                    LOG.warning('Forking with %d SQLite transaction(s) of '
                                'other threads open after %g s: the child '
                                'must not read that database',
                                sum(self._open.values()),
                                self.wait_limit)
                    break
                self._condition.wait(left)
        for engine in list(self._engines):
            try:
                engine.dispose()
            except Exception:
                LOG.exception('Closing SQLite connections before a fork')

    def after_fork_in_parent(self):
        with self._condition:
            self._forking = None
            self._condition.notify_all()

    def after_fork_in_child(self):
        # The child has only the forking thread: the other threads' counts
        # and the condition's waiters are the parent's.
        me = threading.get_ident()
        opened = self._open.get(me)
        self._condition = threading.Condition(threading.Lock())
        self._open = {me: opened} if opened else {}
        self._forking = None


GUARD = ForkGuard()
transaction = GUARD.transaction
watch = GUARD.watch

if hasattr(os, 'register_at_fork'):
    os.register_at_fork(before=GUARD.before_fork,
                        after_in_parent=GUARD.after_fork_in_parent,
                        after_in_child=GUARD.after_fork_in_child)
