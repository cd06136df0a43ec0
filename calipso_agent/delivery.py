"""How a batch of notifications is delivered: stored, requeued, dead-lettered.

The notification agent (samples to the pipeline's publishers) and the
collector (samples to the store) share this. A failure is classified:

* **transient**: ``PublisherError`` or ``StorageError`` other than their
  data variants: the receiver is away (connection, timeout,
  serialization failure, deadlock). The whole batch is requeued after a
  backoff; nothing counts against its notifications. The first failure
  logs "<what> unavailable since T", the first success after it
  "<...> resumed after N s, M batches retried".
* **permanent for this input**: ``PublisherDataError`` or
  ``StorageDataError``. Retrying the same batch cannot help: it is split
  in halves, recursively, until the notifications at fault are alone;
  the others are handed over and the offenders dead-lettered with the
  reason. When the receiver names the refused samples (``refused``),
  their notifications are set aside at once, without bisecting.
* **unexplained**: any other exception. The batch is bisected as for a
  permanent error, but a notification left alone with such an error is
  retried (the batch requeued) up to ``max_delivery_attempts`` times
  before it is dead-lettered, so a message failing for a reason nobody
  foresaw cannot cycle forever. Attempts are counted per worker
  process, by message id: RabbitMQ's classic queues keep no delivery
  count, and a count in a header would need the message republished.

The backoff (``messaging.Backoff``) belongs to the thread handling the
batch (the executor runs several), and its wait is cut short when the
receiver answers again: a probe every ``outage_probe_interval`` seconds,
or another thread storing a batch. So the backlog flows at full speed
within one batch of the store coming back.
"""

import collections
import datetime
import logging
import threading
import time

from calipso_agent import metrics
from calipso_agent.publisher import base as publisher_base
from calipso_agent.storage import base as storage_base

LOG = logging.getLogger(__name__)

# Message ids whose attempts are counted, per process.
REMEMBERED = 100000
# A reason in a log line or a header is cut to this many characters.
REASON_LENGTH = 500

# Rejected samples named in the log line of one batch.
REJECTED_LOGGED = 5

# Longest a wait goes without looking at the stop event.
STOP_CHECK = 0.25

HANDLED = 'handled'
REQUEUE = 'requeue'


def encodable(text):
    """``text`` with what UTF-8 cannot encode (lone surrogates, which a
    broken notification may hold) backslash-escaped: a log handler or a
    header would fail on it, and the line saying what was wrong be lost.
    ASCII text (nearly every id and event type) is answered at once."""
    if text.isascii():
        return text
    try:
        text.encode('utf-8')
    except UnicodeEncodeError:
        return text.encode('utf-8', 'backslashreplace').decode('utf-8')
    return text


def one_line(error, limit=REASON_LENGTH):
    """``Type: text`` of an exception (or a text) on one line, cut."""
    if isinstance(error, BaseException):
        error = f'{type(error).__name__}: {error}'
    text = encodable(' '.join(str(error).split()))
    return text if len(text) <= limit else text[:limit - 3] + '...'


def text_of(value, limit=200):
    """A message id or event type as logs and headers show it: text as
    it is (escaped where UTF-8 cannot encode it), anything else (a bad
    envelope) as its cut repr; None stays."""
    if value is None:
        return value
    text = encodable(value) if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit - 3] + '...'


def is_transient(error):
    """Whether ``error`` says the receiver failed for now (retry the
    batch) rather than refusing its data or failing unexplained."""
    if isinstance(error, (publisher_base.PublisherDataError,
                          storage_base.StorageDataError)):
        return False
    return isinstance(error, (publisher_base.PublisherError,
                              storage_base.StorageError))


def is_refusal(error):
    return isinstance(error, (publisher_base.PublisherDataError,
                              storage_base.StorageDataError))


def describe_rejected(rejected):
    """A short text naming the first samples a store rejected (a
    ``WriteResult.rejected`` list) and their reasons."""
    shown = '; '.join(_describe(item) for item in rejected[:REJECTED_LOGGED])
    more = len(rejected) - REJECTED_LOGGED
    return shown + (f'; and {more} more' if more > 0 else '')


def _describe(item):
    if isinstance(item, (tuple, list)) and len(item) == 2:
        what, reason = item
        what = getattr(what, 'id', what)
        return f'{what}: {reason}'
    return str(item)


def redelivered(samples, result):
    """How many distinct samples of a store write were stored already:
    neither new (``result.stored``) nor rejected."""
    return max(0, len({getattr(s, 'id', None) for s in samples})
               - result.stored - len(result.rejected))


class Item:
    """One notification of a batch and the samples made of it (and the
    inventory changes, ``changes``).

    ``refused`` is set when the notification must be dead-lettered
    whatever happens to the others (a sample over the limits).
    """

    __slots__ = ('message_id', 'event_type', 'samples', 'dead_letter',
                 'refused', 'changes')

    def __init__(self, message_id, event_type, samples, dead_letter,
                 refused=None, changes=()):
        self.message_id = text_of(message_id)
        self.event_type = text_of(event_type)
        self.samples = samples
        self.changes = changes
        #: Callable(reason, attempts) putting it on the dead-letter queue.
        self.dead_letter = dead_letter
        self.refused = refused


class _TransientError(Exception):
    def __init__(self, error):
        super().__init__(error)
        self.error = error


class Outage:
    """When the receiver became unavailable, and waits that end when it
    answers again."""

    def __init__(self, what, done, probe=None, probe_interval=1.0,
                 stopping=None):
        #: ('Store', 'storing') or ('Publishing', 'publishing').
        self.what, self.done = what, done
        self.done_word = 'stored' if done == 'storing' else 'published'

        self.probe = probe
        self.probe_interval = probe_interval
        self.stopping = stopping or threading.Event()
        self.since = None
        self.retried = 0
        self._started = None
        self._lock = threading.Lock()
        self._answered = threading.Condition(self._lock)
        self._generation = 0

    def failed(self, error):
        with self._lock:
            self.retried += 1
            if self.since is not None:
                return False
            self.since = datetime.datetime.now(datetime.UTC)
            self._started = time.monotonic()
        LOG.error('%s unavailable since %s: %s; batches are requeued until '
                  'it answers', self.what,
                  self.since.isoformat(timespec='seconds'), one_line(error))
        return True

    def succeeded(self):
        with self._lock:
            self._generation += 1
            self._answered.notify_all()
            if self.since is None:
                return
            elapsed = time.monotonic() - self._started
            retried, self.retried, self.since = self.retried, 0, None
        LOG.info('%s resumed after %.1f s, %d batches retried', self.done,
                 elapsed, retried)

    def wait(self, delay):
        """Wait ``delay`` seconds, less when the receiver answers first (a
        probe says so, or another thread succeeded) or on stop."""
        now = time.monotonic()
        deadline = now + delay
        next_probe = now + self.probe_interval
        with self._lock:
            generation = self._generation
        while not self.stopping.is_set():
            now = time.monotonic()
            if now >= deadline:
                return
            with self._lock:
                if self._generation != generation:
                    return
                self._answered.wait(min(deadline, next_probe) - now
                                    if self.probe else min(deadline - now,
                                                           STOP_CHECK))
                if self._generation != generation:
                    return
            if self.probe is not None and time.monotonic() >= next_probe:
                next_probe = time.monotonic() + self.probe_interval
                try:
                    if self.probe():
                        return
                except Exception:
                    LOG.debug('Probe failed', exc_info=True)


class BatchDelivery:
    """Hands the samples of a batch to ``publish`` and its inventory
    changes to ``apply_changes`` (both must succeed: a failure of either
    is handled alike); what is done with each notification follows the
    module docstring. ``deliver`` returns HANDLED (acknowledge the batch)
    or REQUEUE. ``publish`` may return how many of the samples the
    receiver had already (a redelivery): they are counted and logged."""

    def __init__(self, publish, outage, backoff_factory, max_attempts,
                 apply_changes=None):
        self.publish = publish
        self.apply_changes = apply_changes
        self.outage = outage
        self.backoff_factory = backoff_factory
        self.max_attempts = max_attempts
        self._local = threading.local()
        self._lock = threading.Lock()
        self._attempts = collections.OrderedDict()
        self.dead_lettered = 0
        self.redelivered = 0

    @property
    def backoff(self):
        """This thread's backoff."""
        backoff = getattr(self._local, 'backoff', None)
        if backoff is None:
            backoff = self._local.backoff = self.backoff_factory()
        return backoff

    def _requeue(self, error=None):
        if error is not None and not self.outage.failed(error):
            LOG.debug('Batch requeued (%s)', one_line(error))
        self.outage.wait(self.backoff.next_delay())
        return REQUEUE

    @metrics.counted_delivery(HANDLED)
    def deliver(self, items):
        dead = [(item, item.refused) for item in items if item.refused]
        sendable = [item for item in items
                    if not item.refused and (item.samples or item.changes)]
        suspects = []
        if sendable:
            try:
                published = self._isolate(sendable, dead, suspects,
                                          first=True)
            except _TransientError as exc:
                metrics.requeued(len(items), 'unavailable')
                return self._requeue(exc.error)
            if published:
                self.outage.succeeded()
            if not suspects:
                self.backoff.reset()
            self._forget_attempts(sendable, suspects)
        retried = 0
        for item, reason in suspects:
            attempts = self._count_attempt(item.message_id)
            if attempts >= self.max_attempts:
                dead.append((item, f'failed {attempts} times: {reason}'))
            else:
                retried += 1
                LOG.warning('Notification %s (%s) failed alone, attempt %d '
                            'of %d: %s', item.message_id, item.event_type,
                            attempts, self.max_attempts, reason)
        if retried:
            # The whole batch comes back: what is refused now is found
            # again then, and dead-lettered once, with the last attempt.
            metrics.requeued(len(items), 'retry')
            return self._requeue()
        try:
            for item, reason in dead:
                self._dead_letter(item, reason)
        except Exception as exc:
            LOG.error('Dead-lettering failed (%s); requeueing the batch',
                      one_line(exc))
            metrics.requeued(len(items), 'dead_letter_failed')
            return self._requeue()
        return HANDLED

    def _isolate(self, group, dead, suspects, first=False):
        """Publish the samples of ``group``; on refusal, split it until
        the notifications at fault are alone, appended to ``dead``
        (refused) or ``suspects`` (unexplained). _TransientError when the
        receiver fails for now. Returns how many publish calls
        succeeded."""
        samples = [s for item in group for s in item.samples]
        changes = [c for item in group for c in item.changes]
        try:
            known = self.publish(samples) if samples else 0
            if changes:
                self.apply_changes(changes)
        except Exception as exc:
            error = exc
        else:
            if first and known:
                # Only the batch as it came: the calls made while
                # bisecting send again what the first one stored.
                self._count_redelivered(known, len(samples))
            return 1
        if is_transient(error):
            raise _TransientError(error)
        refused = getattr(error, 'refused', None)
        if refused:
            owner = {id(s): item for item in group for s in item.samples}
            reasons = {}
            for sample, reason in refused:
                item = owner.get(id(sample))
                if item is not None and item not in reasons:
                    reasons[item] = (f'{getattr(sample, "name", "?")}: '
                                     f'{one_line(reason)}')
            if reasons:
                dead.extend(reasons.items())
                rest = [item for item in group if item not in reasons]
                return self._isolate(rest, dead, suspects) if rest else 0
        if len(group) == 1:
            (dead if is_refusal(error) else suspects).append(
                (group[0], one_line(error)))
            return 0
        middle = len(group) // 2
        return (self._isolate(group[:middle], dead, suspects)
                + self._isolate(group[middle:], dead, suspects))

    def _count_redelivered(self, known, count):
        with self._lock:
            self.redelivered += known
            total = self.redelivered
        LOG.info('%d of %d samples already %s (redelivery) [%d so far]',
                 known, count, self.outage.done_word, total)

    def _remember(self, table, key, value):
        table[key] = value
        table.move_to_end(key)
        while len(table) > REMEMBERED:
            table.popitem(last=False)

    def _count_attempt(self, message_id):
        with self._lock:
            attempts = self._attempts.get(message_id, 0) + 1
            self._remember(self._attempts, message_id, attempts)
            return attempts

    def _forget_attempts(self, items, suspects):
        """Items handed over start afresh if they ever fail again."""
        if not self._attempts:
            return
        failed = {id(item) for item, _ in suspects}
        with self._lock:
            for item in items:
                if id(item) not in failed:
                    self._attempts.pop(item.message_id, None)

    def _attempts_of(self, message_id):
        with self._lock:
            return self._attempts.get(message_id, 0)

    def _dead_letter(self, item, reason):
        attempts = self._attempts_of(item.message_id) or None
        item.dead_letter(reason, attempts)
        metrics.dead_lettered(item.refused, attempts, self.max_attempts)
        self.dead_lettered += 1
        with self._lock:
            self._attempts.pop(item.message_id, None)
        LOG.error('Notification %s (%s) dead-lettered: %s [%d so far]',
                  item.message_id, item.event_type, reason,
                  self.dead_lettered)
