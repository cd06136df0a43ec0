"""subscription:// — tenant publish/subscribe: each sample goes to the
subscriptions it matches (calipso_agent/subscriptions.py).

The subscriptions are read from the store of ``[database] connection``
when its subscription version changes (looked at every ``[subscription]
refresh_interval`` seconds by a thread of the publisher, never per
sample), compiled into an index by meter name and pattern. A matching
sample is put in the bounded queue of the subscription's sender
(publisher/subscription_targets.py) and ``publish_samples`` returns:
it never waits for a target, never raises for one, so a slow or dead
target never holds the pipeline, the other targets or the ack of the
batch. Delivered and dropped counts (and the last error) are added to
the store every ``counter_interval`` seconds.

Deliveries are at most once: a sample dropped (queue full, target away
past the retries) is counted, not retried later.
"""

import logging
import os
import threading

from calipso_agent import dead_letter, storage, subscriptions
from calipso_agent.publisher import base, subscription_targets

LOG = logging.getLogger(__name__)


class SubscriptionPublisher(base.Publisher):

    def __init__(self, conf, parsed_url):
        super().__init__(conf, parsed_url)
        if parsed_url.netloc or parsed_url.path or parsed_url.query:
            raise base.PublisherConfigError(
                'subscription:// takes no host, path or option: the '
                'subscriptions are read from [database] connection')
        self.options = conf.subscription
        self.secret = conf.publisher.telemetry_secret
        try:
            self.networks = subscriptions.parse_networks(
                self.options.allowed_target_cidrs)
        except ValueError as exc:
            raise base.PublisherConfigError(
                f'[subscription] allowed_target_cidrs: {exc}')
        self._store = None
        self._index = subscriptions.MatcherIndex([])
        self._senders = {}
        # The store's subscription version in effect (None: not read yet).
        self.version = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self._pid = None
        self._broker_urls = None
        self._start()

    # --- the pipeline's side ------------------------------------------
    def publish_samples(self, samples):
        if self._pid != os.getpid():
            self._start()
        index = self._index
        if not index:
            return
        senders = self._senders
        for sample in samples:
            matched = index.matching(sample)
            if not matched:
                continue
            delivery = subscription_targets.Delivery(sample, self.secret)
            for matcher in matched:
                sender = senders.get(matcher.id)
                if sender is not None:
                    sender.offer(delivery)

    def _start(self):
        """Start the refresher in the process that publishes (again after
        a fork); it reads the subscriptions at once. Until then samples
        match nothing: publishing never waits for the store."""
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._store = None
            self._senders = {}
            self._index = subscriptions.MatcherIndex([])
            self.version = None
            self._stop = threading.Event()
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
            if version == self.version:
                return
            stored = store.get_subscriptions()
        except Exception as exc:
            LOG.warning('Subscriptions cannot be read now (%s: %s); the '
                        'known ones stay in effect', type(exc).__name__, exc)
            return
        self._apply(stored)
        self.version = version

    def _apply(self, stored):
        matchers = []
        senders = {}
        for record in stored:
            try:
                matcher = subscriptions.Matcher(record)
                target = subscriptions.parse_target(record['target'])
            except (KeyError, TypeError, ValueError,
                    subscriptions.SubscriptionError) as exc:
                LOG.error('Subscription %s cannot be used, skipped: %s',
                          record.get('id'), exc)
                continue
            old = self._senders.get(matcher.id)
            if old is not None and old.target.url == target.url:
                senders[matcher.id] = old
            else:
                senders[matcher.id] = self._sender(matcher.id, target)
            matchers.append(matcher)
        gone = [s for sid, s in self._senders.items()
                if senders.get(sid) is not s]
        # The new index and senders first: a sample never finds a sender
        # that is stopping.
        self._senders = senders
        self._index = subscriptions.MatcherIndex(matchers)
        for sender in gone:
            sender.stop()
            if sender.sub_id not in senders:
                sender.removed()
        LOG.info('%d subscriptions in effect', len(matchers))

    def _sender(self, sub_id, target):
        cls = subscription_targets.SENDERS[target.scheme]
        extra = {}
        if target.scheme == 'amqp':
            extra['broker_urls'] = self._amqp_urls()
        return cls(sub_id, target, self.options, self.networks, **extra)

    def _amqp_urls(self):
        if self._broker_urls is None:
            if self.options.amqp_url:
                self._broker_urls = [self.options.amqp_url]
            else:
                try:
                    self._broker_urls = dead_letter.broker_urls(
                        self.conf) or []
                except Exception as exc:
                    LOG.error('No broker for amqp:// subscriptions: %s', exc)
                    self._broker_urls = []
        return self._broker_urls

    def _flush_counters(self):
        taken = {}
        for sub_id, sender in list(self._senders.items()):
            counts = sender.take_counts()
            if counts['delivered'] or counts['dropped'] or (
                    counts['last_error']):
                taken[sub_id] = (sender, counts)
        if not taken:
            return
        try:
            self._connection().add_subscription_counters(
                {sub_id: counts for sub_id, (_, counts) in taken.items()})
        except Exception as exc:
            LOG.warning('Subscription counters cannot be written now: %s',
                        exc)
            for sender, counts in taken.values():
                sender.give_back(counts)

    def close(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        for sender in self._senders.values():
            sender.stop(wait=2)
        if self._pid == os.getpid():
            self._flush_counters()
        if self._store is not None:
            self._store.close()
            self._store = None
