"""Steps run one after the other, each within a timeout.

A cycle of a source is a list of steps (discoveries, then pollsters),
run in order by the source's own thread: no thread hand-over per cycle.
A watchdog (``Watchdog``, one thread for every source) calls
``StepRunner.give_up_overdue`` periodically; a step running past the
timeout is then given up: it is marked timed out, the thread stuck in it
is abandoned (a Python thread cannot be killed; when the call returns,
that thread sees it was given up and ends without touching anything), and
the runner's owner starts a new thread that goes on with the next step.
Until the abandoned call returns, its key is ``hung`` and later cycles
skip that step instead of stacking threads in it.
"""

import logging
import threading
import time

LOG = logging.getLogger(__name__)


class StepTimeoutError(Exception):
    """The step ran longer than its timeout and was given up."""


class StillHungError(Exception):
    """The step is still running since an earlier cycle gave it up."""


class Step:
    """``call()`` under a name (``key``: what a hang is remembered by).

    After the run: ``result``, or ``error`` (an exception,
    StepTimeoutError or StillHungError). A step making several calls,
    each failing alone, lists in ``failed`` the (key, exception) of
    those that raised."""

    __slots__ = ('key', 'call', 'result', 'error', 'failed')

    def __init__(self, key, call):
        self.key = key
        self.call = call
        self.result = None
        self.error = None
        self.failed = None


class Steps:
    """The steps of one cycle and how far they went."""

    __slots__ = ('steps', 'index')

    def __init__(self, steps):
        self.steps = steps
        self.index = 0


class StepRunner:
    """Runs ``Steps`` in the calling thread, each within ``timeout``.

    A thread runs them under a ``generation``; giving up a step starts a
    new generation, and a thread of an older one stops at once."""

    def __init__(self, name, timeout):
        self.name = name
        self.timeout = timeout
        self.hung = set()
        self.generation = 0
        self._lock = threading.Lock()
        # (Steps, step, monotonic start) of the step under way, or None.
        self._progress = None

    def run(self, steps, generation):
        """Run ``steps`` from where they are; False when this thread's
        generation was given up meanwhile (it must stop).

        One hold of the lock between two steps: the end of one and the
        start of the next (this runs for every pollster of every cycle)."""
        lock = self._lock
        items = steps.steps
        count = len(items)
        hung = self.hung
        monotonic = time.monotonic
        lock.acquire()
        try:
            # steps.index moves only under the lock: here, or when the
            # step under way is given up (and the generation with it).
            index = steps.index
            while True:
                if generation != self.generation:
                    return False
                if index >= count:
                    return True
                step = items[index]
                if step.key in hung:
                    step.error = StillHungError(step.key)
                    index = steps.index = index + 1
                    continue
                self._progress = (steps, step, monotonic())
                lock.release()
                try:
                    result = step.call()
                    error = None
                except Exception as exc:
                    result, error = None, exc
                finally:
                    lock.acquire()
                if generation != self.generation:
                    hung.discard(step.key)
                    LOG.info('%s: %s returned after it was given up',
                             self.name, step.key)
                    return False
                self._progress = None
                step.result, step.error = result, error
                index = steps.index = index + 1
        finally:
            lock.release()

    def give_up_overdue(self, now=None):
        """Give up the step under way if it ran past the timeout; the new
        generation (a thread of it must go on with the steps), or None."""
        now = time.monotonic() if now is None else now
        with self._lock:
            progress = self._progress
            if progress is None or now - progress[2] < self.timeout:
                return None
            steps, step, _ = progress
            step.error = StepTimeoutError(
                f'{step.key} ran longer than {self.timeout:g} s')
            self.hung.add(step.key)
            steps.index += 1
            self._progress = None
            self.generation += 1
            return self.generation


class Watchdog:
    """One thread calling ``check()`` of every watched object every
    ``period`` seconds until stopped."""

    def __init__(self, period, watched):
        self.period = period
        self.watched = watched
        self._stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True,
                                       name='polling-watchdog')

    def start(self):
        self.thread.start()

    def _loop(self):
        while not self._stopping.wait(self.period):
            for item in list(self.watched()):
                try:
                    item.check()
                except Exception:
                    LOG.exception('Polling watchdog')

    def stop(self):
        self._stopping.set()
