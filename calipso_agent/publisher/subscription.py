"""subscription:// — tenant publish/subscribe: each sample goes to the
subscriptions it matches (calipso_agent/subscriptions.py).

The subscriptions are read from the store of ``[database] connection``
when its subscription version changes (looked at every ``[subscription]
refresh_interval`` seconds by a thread of the publisher, never per
sample), compiled into an index by meter name and pattern. The
pipeline's thread only matches: the samples that match go, with their
subscription ids, to the publisher's delivery process
(publisher/subscription_delivery.py), which signs, encodes and sends
them to the targets, so that this work never takes the GIL from the
pipeline. ``publish_samples`` never waits for it nor for a target and
never raises for one: a slow or dead target never holds the pipeline,
the other targets or the ack of the batch. What waits for the delivery
process is bounded (``queue_size`` samples), and so is each target's
queue there; the excess is dropped and counted. Delivered and dropped
counts (and the last error) are added to the store every
``counter_interval`` seconds.

Deliveries are at most once: a sample dropped (queue full, target away
past the retries, delivery process restarting) is counted, not retried.
"""

import collections
import contextlib
import fcntl
import logging
import os
import select
import subprocess
import sys
import threading
import time

import orjson

from calipso_agent import dead_letter, storage, subscriptions
from calipso_agent.publisher import base, subscription_delivery

LOG = logging.getLogger(__name__)

DELIVERY_MODULE = 'calipso_agent.publisher.subscription_delivery'
# Samples a frame to the delivery process holds at most: small frames let
# it start on a batch's first samples while the rest is on the way.
FRAME_SAMPLES = 64
# Bytes the writer thread sends to the delivery process in one write.
WRITE_BYTES = 1 << 20
# Bytes the pipe to the delivery process holds (Linux: at most
# /proc/sys/fs/pipe-max-size; the system's default where refused).
PIPE_BYTES = 1 << 20
# Seconds the writer waits once the full pipe has room again, so that it
# wakes (and takes the GIL from the pipeline) once per batch of the
# delivery process's reads rather than for every page it frees.
REFILL_WAIT = 0.005


def _merge(into, counts):
    for sub_id, added in counts.items():
        kept = into.setdefault(sub_id, {'delivered': 0, 'dropped': 0,
                                        'last_error': None})
        kept['delivered'] += added.get('delivered') or 0
        kept['dropped'] += added.get('dropped') or 0
        if added.get('last_error'):
            kept['last_error'] = added['last_error']


class DeliveryProcess:
    """The delivery process as the agent sees it. Its stdin is a
    non-blocking pipe: the publishing thread writes its frames there
    itself when nothing waits before them and the pipe takes them whole
    (no thread hand-over per batch); else they are queued (at most
    ``capacity`` samples waiting) for a writer thread, which waits for
    the pipe and starts the process again when it died. Counts are read
    back by another thread."""

    def __init__(self, config, capacity):
        self.config = config
        self.capacity = capacity
        self._frames = collections.deque()
        self._waiting = 0
        self._subscriptions = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        # Held while writing to the pipe (one writer at a time, in order).
        self._write_lock = threading.Lock()
        self._counts = {}
        self._process = None
        self._fd = None
        self._writer = threading.Thread(target=self._write, daemon=True,
                                        name='subscription-delivery')
        self._writer.start()

    # --- the agent's side -------------------------------------------------
    def set_subscriptions(self, records):
        self._subscriptions = subscription_delivery.frame('subscriptions',
                                                          records)
        self._frames.append((self._subscriptions, None))
        self._wake.set()

    def full(self):
        return self._waiting >= self.capacity

    def submit(self, entries):
        """Queue ``[(subscription ids, Sample), ...]``; never waits: past
        ``capacity`` they are dropped (counted)."""
        if self._waiting + len(entries) > self.capacity:
            self._dropped(entries)
            return
        frames = [(subscription_delivery.samples_frame(
            entries[start:start + FRAME_SAMPLES]),
            entries[start:start + FRAME_SAMPLES])
            for start in range(0, len(entries), FRAME_SAMPLES)]
        if self._write_now(frames):
            return
        with self._lock:
            self._waiting += len(entries)
        self._frames.extend(frames)
        if not self._wake.is_set():
            self._wake.set()

    def _write_now(self, frames):
        """Write ``frames`` to the pipe from this thread if nothing is
        queued before them and the pipe takes them whole; never waits."""
        if self._frames or self._fd is None:
            return False
        if not self._write_lock.acquire(blocking=False):
            return False
        try:
            if self._frames or self._fd is None:
                return False
            data = b''.join(d for d, _ in frames)
            try:
                written = os.write(self._fd, data)
            except BlockingIOError:
                return False
            except OSError:
                # The process is gone: the writer starts it again.
                return False
            if written < len(data):
                # The rest goes first, by the writer; its samples are
                # not counted as waiting (they are on their way).
                self._frames.appendleft((data[written:], None))
                self._wake.set()
            return True
        finally:
            self._write_lock.release()

    def take_counts(self):
        with self._lock:
            counts, self._counts = self._counts, {}
        return counts

    def give_back(self, counts):
        with self._lock:
            _merge(self._counts, counts)

    def _dropped(self, entries, error=None):
        self.count_dropped(collections.Counter(
            sub_id for ids, _ in entries for sub_id in ids), error)

    def count_dropped(self, dropped, error=None):
        """Count ``{subscription id: samples}`` as dropped."""
        self.give_back({sub_id: {'dropped': count, 'last_error': error}
                        for sub_id, count in dropped.items()})

    # --- the writer and reader threads ---------------------------------
    def _spawn(self):
        process = subprocess.Popen(
            [sys.executable, '-m', DELIVERY_MODULE], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, close_fds=True, bufsize=0)
        fd = process.stdin.fileno()
        os.set_blocking(fd, False)
        with contextlib.suppress(OSError, AttributeError):
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        first = subscription_delivery.frame('config', self.config)
        if self._subscriptions is not None:
            first += self._subscriptions
        self._write_all(fd, first)
        threading.Thread(target=self._read, args=(process.stdout,),
                         daemon=True, name='subscription-counts').start()
        LOG.info('Subscription delivery process %d started', process.pid)
        return process

    def _write_all(self, fd, data):
        """Write ``data`` to the non-blocking pipe, waiting for room."""
        view = memoryview(data)
        while view:
            try:
                written = os.write(fd, view)
            except BlockingIOError:
                written = 0
            view = view[written:]
            if view:
                select.select([], [fd], [], 1.0)
                time.sleep(REFILL_WAIT)

    def _write(self):
        while not self._stop.is_set():
            if not self._frames:
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            failed = None
            # Frames are taken under the write lock: none of the
            # publishing thread's gets written before them.
            with self._write_lock:
                taken = self._take_frames()
                try:
                    self._running_process()
                    self._write_all(self._fd, b''.join(d for d, _ in taken))
                except (OSError, ValueError) as exc:
                    failed = exc
            if failed is not None:
                for _, entries in taken:
                    if entries is not None:
                        self._dropped(entries, f'delivery process: {failed}')
                if self._stop.wait(0.5):
                    return

    def _take_frames(self):
        """What is queued, up to WRITE_BYTES, for one write: a backlog
        costs few system calls and GIL hand-offs."""
        taken, size = [], 0
        while self._frames and size < WRITE_BYTES:
            data, entries = self._frames.popleft()
            taken.append((data, entries))
            size += len(data)
        waiting = sum(len(e) for _, e in taken if e is not None)
        with self._lock:
            self._waiting -= waiting
        return taken

    def _running_process(self):
        """Start the process if it is not running (under the write
        lock)."""
        if self._process is not None and self._process.poll() is None:
            return
        if self._process is not None:
            LOG.error('Subscription delivery process exited (%s); starting '
                      'it again', self._process.returncode)
            self._fd = None
        self._process = self._spawn()
        self._fd = self._process.stdin.fileno()

    def _read(self, stream):
        for line in stream:
            try:
                counts = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            self.give_back(counts)

    def close(self):
        self._stop.set()
        self._wake.set()
        self._writer.join(5)
        process = self._process
        if process is None:
            return
        try:
            process.stdin.close()
        except OSError:
            pass
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


class SubscriptionPublisher(base.Publisher):

    def __init__(self, conf, parsed_url):
        super().__init__(conf, parsed_url)
        if parsed_url.netloc or parsed_url.path or parsed_url.query:
            raise base.PublisherConfigError(
                'subscription:// takes no host, path or option: the '
                'subscriptions are read from [database] connection')
        self.options = conf.subscription
        try:
            networks = subscriptions.parse_networks(
                self.options.allowed_target_cidrs)
        except ValueError as exc:
            raise base.PublisherConfigError(
                f'[subscription] allowed_target_cidrs: {exc}')
        self._delivery_config = {
            'options': {name: getattr(self.options, name) for name in (
                'queue_size', 'http_batch_size', 'http_timeout',
                'http_max_retries', 'http_retry_backoff',
                'counter_interval', 'delivery_niceness')},
            'secret': conf.publisher.telemetry_secret,
            'networks': [str(n) for n in networks],
            'broker_urls': None}
        self._store = None
        self._index = subscriptions.MatcherIndex([])
        self._delivery = None
        # The store's subscription version in effect (None: not read yet).
        self.version = None
        self._channels = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self._pid = None
        self._start()

    # --- the pipeline's side ------------------------------------------
    def publish_samples(self, samples):
        if self._pid != os.getpid():
            self._start()
        index = self._index
        if not index:
            return
        if self._delivery.full():
            # A backlog the delivery process cannot take now: count its
            # drops without encoding anything.
            self._delivery.count_dropped(collections.Counter(
                m.id for sample in samples
                for m in index.matching(sample)))
            return
        entries = []
        for sample in samples:
            matched = index.matching(sample)
            if matched:
                entries.append(([m.id for m in matched], sample))
        if entries:
            self._delivery.submit(entries)

    def _start(self):
        """Start the refresher in the process that publishes (again after
        a fork); it reads the subscriptions at once. Until then samples
        match nothing: publishing never waits for the store."""
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._store = None
            self._index = subscriptions.MatcherIndex([])
            self.version = None
            self._channels = None
            self._stop = threading.Event()
            self._delivery = None
            self._thread = threading.Thread(target=self._run,
                                            name='subscription-refresher',
                                            daemon=True)
            self._thread.start()

    # --- the refresher --------------------------------------------------
    def _connection(self):
        if self._store is None:
            self._store = storage.get_connection(self.conf)
        return self._store

    def _run(self):
        self._refresh()
        since_flush = 0.0
        interval = self.options.refresh_interval
        while not self._stop.wait(interval):
            self._refresh()
            since_flush += interval
            if since_flush >= self.options.counter_interval:
                since_flush = 0.0
                self._flush_counters()

    def _refresh(self):
        try:
            store = self._connection()
            version = store.subscriptions_version()
            # The channels too (a few rows): a channel that lost a
            # project stops its subscriptions' deliveries of it at once.
            channels = {c['id']: frozenset(c.get('tenant_list') or ())
                        for c in store.get_channels()}
            if version == self.version and channels == self._channels:
                return
            stored = store.get_subscriptions()
        except Exception as exc:
            LOG.warning('Subscriptions cannot be read now (%s: %s); the '
                        'known ones stay in effect', type(exc).__name__, exc)
            return
        self._apply(stored, channels)
        self._channels = channels
        self.version = version

    def _apply(self, stored, channels):
        matchers, records = [], []
        for record in stored:
            try:
                projects = frozenset(record.get('projects') or ()) & (
                    channels.get(record.get('channel_id'), frozenset()))
                if not projects:
                    continue
                matcher = subscriptions.Matcher(
                    dict(record, projects=sorted(projects)))
                subscriptions.parse_target(record['target'])
            except (KeyError, TypeError, ValueError,
                    subscriptions.SubscriptionError) as exc:
                LOG.error('Subscription %s cannot be used, skipped: %s',
                          record.get('id'), exc)
                continue
            matchers.append(matcher)
            records.append({'id': record['id'],
                            'target': record['target']})
        if self._delivery is None:
            self._delivery_config['broker_urls'] = self._amqp_urls()
            self._delivery = DeliveryProcess(self._delivery_config,
                                             self.options.queue_size)
        # The delivery process learns them first: a sample matched with
        # the new index finds its sender there.
        self._delivery.set_subscriptions(records)
        self._index = subscriptions.MatcherIndex(matchers)
        LOG.info('%d subscriptions in effect', len(matchers))

    def _amqp_urls(self):
        if self.options.amqp_url:
            return [self.options.amqp_url]
        try:
            return dead_letter.broker_urls(self.conf) or []
        except Exception as exc:
            LOG.error('No broker for amqp:// subscriptions: %s', exc)
            return []

    def _flush_counters(self):
        if self._delivery is None:
            return
        counts = self._delivery.take_counts()
        if not counts:
            return
        try:
            self._connection().add_subscription_counters(counts)
        except Exception as exc:
            LOG.warning('Subscription counters cannot be written now: %s',
                        exc)
            self._delivery.give_back(counts)

    def close(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._delivery is not None and self._pid == os.getpid():
            self._delivery.close()
            self._flush_counters()
        if self._store is not None:
            self._store.close()
            self._store = None
