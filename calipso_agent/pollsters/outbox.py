"""Polled samples on their way to the pipeline's publishers, never dropped.

Cycles put their samples here; one thread hands them to the publishers in
batches of ``[polling] batch_size``, oldest first. A batch whose publish
fails for now (``delivery.is_transient``: the receiver is away) stays at
the head and is retried after a growing backoff, for as long as the agent
runs; its sample ids are deterministic, so a retry the receiver had
partly taken duplicates nothing. A batch the receiver refuses
(``PublisherDataError``) is split until the refused samples are alone;
they are logged with their ids and the reason and set aside, the others
handed over. A batch failing for a reason nobody foresaw is retried
``max_attempts`` times, then handled as refused.

Memory is bounded: past ``max_pending`` samples waiting, ``has_room``
says no and the agent skips its cycles (logged) until the publishers
catch up, so no sample already polled is ever dropped. At exit what could
not be handed over within the shutdown wait is logged with its count.
"""

import collections
import logging
import threading

from calipso_agent import delivery, messaging, metrics

LOG = logging.getLogger(__name__)


class Outbox:
    """A bounded queue of samples and the thread publishing them."""

    def __init__(self, publish, batch_size=1000, max_pending=100000,
                 backoff=(0.5, 30.0), max_attempts=5):
        self.publish = publish
        self.batch_size = batch_size
        self.max_pending = max_pending
        self.backoff = messaging.Backoff(*backoff)
        self.max_attempts = max_attempts
        self._pending = collections.deque()
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._failing_since = None
        self._thread = None

    def __len__(self):
        with self._lock:
            return len(self._pending)

    def has_room(self):
        return len(self) < self.max_pending

    def put(self, samples):
        if not samples:
            return
        with self._lock:
            self._pending.extend(samples)
            self._idle.clear()
            self._wakeup.notify()

    def start(self):
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='calipso-polling-outbox')
        self._thread.start()

    def wait_idle(self, timeout=None):
        """Until every sample put is handed over (True) or ``timeout``."""
        return self._idle.wait(timeout)

    def stop(self, timeout):
        """Hand over what waits for up to ``timeout`` seconds, then stop;
        the samples left are logged."""
        if not self.wait_idle(timeout):
            LOG.error('Polling agent stopping with %d polled samples not '
                      'handed over (publishers failing)', len(self))
        self._stopping.set()
        with self._lock:
            self._wakeup.notify_all()
        if self._thread is not None:
            self._thread.join(5)

    def _next_batch(self):
        with self._lock:
            while not self._pending and not self._stopping.is_set():
                self._idle.set()
                self._wakeup.wait()
            return [self._pending[i] for i in
                    range(min(self.batch_size, len(self._pending)))]

    def _done(self, count):
        with self._lock:
            for _ in range(count):
                self._pending.popleft()
            if not self._pending:
                self._idle.set()

    def _run(self):
        attempts = 0
        while not self._stopping.is_set():
            batch = self._next_batch()
            if not batch:
                continue
            try:
                if attempts >= self.max_attempts:
                    self._deliver_isolating(batch, isolate_any=True)
                else:
                    self._deliver_isolating(batch)
            except Exception as exc:
                attempts = 0 if delivery.is_transient(exc) else attempts + 1
                self._failed(exc, len(batch))
                continue
            attempts = 0
            self._succeeded()
            self._done(len(batch))

    def _deliver_isolating(self, batch, isolate_any=False):
        """Publish ``batch``; refused samples are isolated and set aside
        (with ``isolate_any``, samples failing unexplained too)."""
        try:
            self.publish(batch)
            return
        except Exception as exc:
            refusal = delivery.is_refusal(exc)
            if delivery.is_transient(exc) or not (refusal or isolate_any):
                raise
            refused = getattr(exc, 'refused', None) or []
            if refused:
                ids = {sample.id for sample, _ in refused}
                for sample, reason in refused:
                    self._set_aside(sample, reason)
                rest = [s for s in batch if s.id not in ids]
                if rest:
                    self._deliver_isolating(rest, isolate_any)
                return
            if len(batch) == 1:
                self._set_aside(batch[0], exc)
                return
        middle = len(batch) // 2
        self._deliver_isolating(batch[:middle], isolate_any)
        self._deliver_isolating(batch[middle:], isolate_any)

    def _set_aside(self, sample, reason):
        metrics.polled_samples_refused(1)
        LOG.error('Polled sample %s (%s of %s at %s) refused, set aside: %s',
                  sample.id, sample.name, sample.resource_id,
                  sample.timestamp, delivery.one_line(reason))

    def _failed(self, error, count):
        delay = self.backoff.next_delay()
        metrics.publish_retried(count)
        if self._failing_since is None:
            self._failing_since = True
            LOG.error('Publishing polled samples failed: %s; %d samples '
                      'wait and are retried until the publishers accept '
                      'them', delivery.one_line(error), len(self))
        else:
            LOG.debug('Publishing polled samples failed again: %s',
                      delivery.one_line(error))
        self._stopping.wait(delay)

    def _succeeded(self):
        self.backoff.reset()
        if self._failing_since is not None:
            self._failing_since = None
            LOG.info('Publishing polled samples resumed')
