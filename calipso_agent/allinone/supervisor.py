"""Starting, watching and stopping the daemons of ``calipso run``.

Each daemon is a process of its own session (its process group holds its
workers), its output appended to ``<log_dir>/<name>.log``. A daemon that
exits while the product runs is started again after 1, 2, 4 ... s (at
most ``MAX_RESTART_DELAY``). Stopping goes in the reverse order of
starting: a daemon gets SIGTERM, so it finishes (or gives back to the
broker, unacknowledged) the batch it holds, and SIGKILL only when it has
not exited within its ``stop_timeout``.
"""

import contextlib
import logging
import os
import signal
import subprocess
import time

import requests

LOG = logging.getLogger(__name__)
MAX_RESTART_DELAY = 60.0
# A daemon that ran this long since its last start is healthy again.
STABLE_AFTER = 60.0


class StartError(Exception):
    """A daemon did not become ready."""


class Daemon:
    """One daemon: its command line, how to tell it is ready (a URL
    answering 200, or a line in its log) and what to do once it stopped
    (``after_stop()``)."""

    def __init__(self, name, argv, log_dir, ready_url=None, ready_log=None,
                 stop_timeout=20.0, env=None, after_stop=None):
        self.name = name
        self.argv = list(argv)
        self.log_path = os.path.join(log_dir, f'{name}.log')
        self.ready_url = ready_url
        self.ready_log = ready_log
        self.stop_timeout = stop_timeout
        self.env = env
        self.after_stop = after_stop
        self.process = None
        self.restarts = 0
        self.next_start = None
        self.started_at = None
        self._log_offset = 0

    def start(self):
        self.started_at = time.monotonic()
        self._log_offset = (os.path.getsize(self.log_path)
                            if os.path.exists(self.log_path) else 0)
        with open(self.log_path, 'ab') as log:
            self.process = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True, env=self.env)
        LOG.info('%s started (pid %d), log in %s', self.name,
                 self.process.pid, self.log_path)

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def log_tail(self, size=2000):
        """The end of this run's log."""
        with contextlib.suppress(OSError):
            with open(self.log_path, 'rb') as handle:
                handle.seek(max(self._log_offset,
                                os.path.getsize(self.log_path) - size))
                return handle.read().decode('utf-8', 'replace')
        return ''

    def ready(self):
        if not self.alive():
            return False
        if self.ready_url:
            with contextlib.suppress(requests.RequestException):
                return requests.get(self.ready_url,
                                    timeout=2).status_code == 200
            return False
        if self.ready_log:
            return self.ready_log in self.log_tail(size=1 << 20)
        return True

    def wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready():
                return
            if not self.alive():
                raise StartError(
                    f'{self.name} exited with status '
                    f'{self.process.returncode}; the end of its log '
                    f'({self.log_path}):\n{self.log_tail()}')
            time.sleep(0.2)
        raise StartError(f'{self.name} not ready after {timeout:.0f}s; the '
                         f'end of its log ({self.log_path}):\n'
                         f'{self.log_tail()}')

    def _signal(self, signum):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)

    def stop(self):
        """SIGTERM, SIGKILL after ``stop_timeout``; the exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                LOG.warning('%s did not stop within %.0fs: killing it',
                            self.name, self.stop_timeout)
        # Workers that outlive their master go with the group.
        self._signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        if self.after_stop is not None:
            self.after_stop()
        return self.process.returncode


class Supervisor:
    """Runs ``daemons`` in order until ``stop_requested()``."""

    def __init__(self, daemons, ready_timeout=60.0, poll_interval=0.5):
        self.daemons = list(daemons)
        self.ready_timeout = ready_timeout
        self.poll_interval = poll_interval
        self.started = []

    def start(self):
        """Start each daemon and wait until it is ready; StartError (the
        ones started are stopped again) when one is not."""
        for daemon in self.daemons:
            daemon.start()
            self.started.append(daemon)
            try:
                daemon.wait_ready(self.ready_timeout)
            except StartError:
                self.stop()
                raise

    def watch(self, stop_requested):
        """Start again, with a growing delay, what exits, until
        ``stop_requested()``."""
        while not stop_requested():
            now = time.monotonic()
            for daemon in self.started:
                if daemon.alive():
                    if now - daemon.started_at > STABLE_AFTER:
                        daemon.restarts = 0
                    continue
                if daemon.next_start is None:
                    delay = min(MAX_RESTART_DELAY, 2.0 ** daemon.restarts)
                    LOG.error('%s exited with status %s; starting it again '
                              'in %.0fs. The end of its log:\n%s',
                              daemon.name, daemon.process.returncode, delay,
                              daemon.log_tail())
                    daemon.next_start = now + delay
                elif now >= daemon.next_start:
                    daemon.next_start = None
                    daemon.restarts += 1
                    daemon.start()
            time.sleep(self.poll_interval)

    def stop(self):
        """Stop what was started, last first; {name: exit status}."""
        statuses = {}
        for daemon in reversed(self.started):
            statuses[daemon.name] = daemon.stop()
            LOG.info('%s stopped (status %s)', daemon.name,
                     statuses[daemon.name])
        self.started = []
        return statuses
