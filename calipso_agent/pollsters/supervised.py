"""Steps run one after the other, each within a timeout.

A cycle of a source is a list of steps (discoveries, then pollsters). They
run on one worker thread, handed over once per cycle, so a cycle costs no
thread of its own; the caller waits and watches the step under way. A
step running past its timeout is given up: the worker stuck in it is
abandoned (a Python thread cannot be killed) and a fresh worker goes on
with the next step. Until the abandoned call returns, its key is
``hung`` and later cycles skip that step instead of stacking threads in
it.
"""

import logging
import queue
import threading
import time

LOG = logging.getLogger(__name__)


class StepTimeoutError(Exception):
    """The step ran longer than its timeout and was given up."""


class StillHungError(Exception):
    """The step is still running since an earlier cycle gave it up."""


class Step:
    """``call()`` under a name (``key``: what a hang is remembered by).

    After ``StepRunner.run``: ``result``, or ``error`` (an exception,
    StepTimeoutError or StillHungError)."""

    __slots__ = ('key', 'call', 'result', 'error', 'finished')

    def __init__(self, key, call):
        self.key = key
        self.call = call
        self.result = None
        self.error = None
        self.finished = False


class _Worker:
    def __init__(self, runner, name):
        self.runner = runner
        self.jobs = queue.SimpleQueue()
        self.abandoned = False
        #: (step, monotonic start) of the step under way, or None.
        self.progress = None
        self.thread = threading.Thread(target=self._loop, daemon=True,
                                       name=name)
        self.thread.start()

    def _loop(self):
        while True:
            job = self.jobs.get()
            if job is None:
                return
            steps, done = job
            for step in steps:
                if self.abandoned:
                    break
                if step.finished:
                    continue
                if step.key in self.runner.hung:
                    step.error = StillHungError(step.key)
                    step.finished = True
                    continue
                self.progress = (step, time.monotonic())
                result = error = None
                try:
                    result = step.call()
                except Exception as exc:
                    error = exc
                if self.abandoned:
                    # Given up while it ran: it is over now.
                    self.runner.hung.discard(step.key)
                    LOG.info('Polling step %s returned after it was given '
                             'up', step.key)
                    return
                step.result, step.error, step.finished = result, error, True
            self.progress = None
            done.set()
            if self.abandoned:
                return


class StepRunner:
    """Runs lists of steps on its worker thread, each within ``timeout``."""

    def __init__(self, name, timeout):
        self.name = name
        self.timeout = timeout
        self.hung = set()
        self._worker = None

    def run(self, steps):
        """Run ``steps`` (in order); returns when each is finished,
        failed, or given up."""
        while True:
            if self._worker is None:
                self._worker = _Worker(self, f'{self.name}-steps')
            worker = self._worker
            done = threading.Event()
            worker.jobs.put((steps, done))
            if self._watch(worker, done):
                return

    def _watch(self, worker, done):
        """Wait for ``done``; True when the steps are over, False when
        one was given up (the remaining steps go to a new worker)."""
        while True:
            progress = worker.progress
            wait = (self.timeout if progress is None
                    else progress[1] + self.timeout - time.monotonic())
            if done.wait(max(0.0, wait)):
                return True
            if progress is None or worker.progress is not progress:
                continue
            step, started = progress
            if time.monotonic() - started < self.timeout:
                continue
            worker.abandoned = True
            self.hung.add(step.key)
            step.error = StepTimeoutError(
                f'{step.key} ran longer than {self.timeout:g} s')
            step.finished = True
            self._worker = None
            worker.jobs.put(None)
            return False

    def stop(self):
        if self._worker is not None:
            self._worker.jobs.put(None)
            self._worker = None
