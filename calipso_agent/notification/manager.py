"""The notification agent's listener: batches in, samples published,
inventory changes stored, ack.

One oslo.messaging batch notification listener per worker consumes every
configured exchange and topic. A batch is handed to the endpoint plugins,
their samples to the pipeline and their inventory changes to the
inventory store (``[inventory] connection``, in one write per batch); the
batch is acknowledged only when every publisher of every sink has accepted
its samples and the store has committed its changes. A publisher failure
that fails for now requeues the whole batch after a backoff, so nothing is
lost, and sample ids are deterministic, so the retry duplicates nothing. A
notification that can never succeed is dead-lettered alone (see
``calipso_agent.delivery`` and ``calipso_agent.dead_letter``). The listener
itself is ``messaging``'s.
"""

import functools
import logging
import threading

import oslo_messaging
from stevedore import named

from calipso_agent import delivery, messaging, metrics, storage
from calipso_agent import pipeline as pipeline_mod
from calipso_agent.storage import base as storage_base

LOG = logging.getLogger(__name__)

ENDPOINT_NAMESPACE = 'calipso.notification'


def load_endpoints(conf, names=None):
    """The endpoint plugins named in ``[notification] endpoints``, in that
    order (a sample id yielded twice for one notification is kept once:
    the first endpoint wins)."""
    names = list(names if names is not None else conf.notification.endpoints)

    def on_missing(missing):
        LOG.error('Notification endpoints not found in %s: %s',
                  ENDPOINT_NAMESPACE, ', '.join(sorted(missing)))

    manager = named.NamedExtensionManager(
        ENDPOINT_NAMESPACE, names, invoke_on_load=True, invoke_args=(conf,),
        name_order=True, on_missing_entrypoints_callback=on_missing,
        propagate_map_exceptions=True)
    return [ext.obj for ext in manager]


def pipeline_path(conf):
    """The pipeline file: as configured, or found in the config dirs."""
    path = conf.notification.pipeline_cfg_file
    return conf.find_file(path) or path


def load_pipeline(conf):
    return pipeline_mod.Pipeline.from_file(conf, pipeline_path(conf))


class SampleDispatcher(messaging.BatchEndpoint):
    """The oslo.messaging endpoint: one call per batch and priority.

    Only ``info`` and ``sample`` notifications carry measurements; the
    other priorities are consumed and acknowledged, so their queues do not
    grow without bound. What happens to each notification of a batch
    (published, requeued, dead-lettered) is ``delivery``'s; samples are
    bounded by ``sample_limits`` first. ``origin`` is the (exchange,
    topic) a dead letter is requeued to: every configured exchange feeds
    the queue of the topic.
    """

    def __init__(self, endpoints, pipeline, backoff=(0.5, 30.0),
                 limits=None, dead_letters=None,
                 origin=('nova', 'notifications'), max_attempts=5,
                 probe_interval=1.0, inventory_store=None):
        self.inventory_store = inventory_store
        super().__init__(pipeline.publish_samples,
                         pipeline_probe(pipeline, inventory_store),
                         'Publishing', 'publishing', backoff, limits,
                         dead_letters, origin, max_attempts, probe_interval,
                         self.apply_changes)
        self.endpoints = endpoints
        self.inventory_endpoints = [e for e in endpoints
                                    if e.makes_inventory]
        if self.inventory_endpoints and inventory_store is None:
            raise ValueError('inventory endpoints need an inventory store')
        self.pipeline = pipeline
        self.dropped = 0
        self.trimmed = 0
        self.inventory_dropped = 0

    def apply_changes(self, changes):
        """Write the inventory changes of a batch, or of the part of it
        being delivered: one write. The changes of a notification that a
        newer one of the same subject replaces are not made."""
        objects, links = [], []
        for change in _made(changes):
            (links if 'link_type' in change else objects).append(change)
        self.inventory_store.apply_inventory(objects, links)

    def changes_of(self, notification, item):
        """The inventory changes of one notification (or the notification
        planned, when its endpoint says its subject); [] (logged) when
        they cannot be made: its samples still go."""
        event_type = notification.get('event_type')
        changes = []
        for endpoint in self.inventory_endpoints:
            if not endpoint.handles(event_type):
                continue
            try:
                subject = endpoint.inventory_subject(notification)
                if subject is not None:
                    # Not the item: it holds the changes, and a cycle
                    # would leave each batch to the garbage collector.
                    changes.append(PlannedNotification(
                        endpoint, notification, subject,
                        functools.partial(self._dropped_changes,
                                          item.message_id, item.event_type)))
                    continue
                changes.extend(endpoint.inventory_changes(notification))
            except Exception as exc:
                self._dropped_changes(item.message_id, item.event_type, exc)
                return []
        return changes

    def _dropped_changes(self, message_id, event_type, error):
        self.inventory_dropped += 1
        LOG.error('Notification %s (%s): no inventory change can be made '
                  'of it, dropped: %s', message_id, event_type,
                  delivery.one_line(error))

    def samples_of(self, notification):
        """The samples every endpoint yields for one notification."""
        event_type = notification.get('event_type')
        samples = []
        seen = set()
        for endpoint in self.endpoints:
            if not endpoint.handles(event_type):
                continue
            for sample in endpoint.process_notification(notification):
                if sample.id not in seen:
                    seen.add(sample.id)
                    samples.append(sample)
        return samples

    def item_of(self, notification, priority):
        """The delivery item of one notification: its samples within the
        limits, or the reason it is refused."""
        item = self.item(notification, priority,
                         f'{self.origin[1]}.{priority}')
        try:
            samples = self.samples_of(notification)
        except Exception as exc:
            self.dropped += 1
            item.refused = (f'no sample can be made of it: '
                            f'{delivery.one_line(exc)}')
            return item
        for sample in samples:
            reason = self.limits.check(sample)
            if reason is not None:
                item.refused = f'meter {sample.name}: {reason}'
                return item
        if self.inventory_endpoints:
            item.changes = self.changes_of(notification, item)
        trimmed = self.limits.bound_samples(samples) if samples else None
        if trimmed:
            self.trimmed += 1
            LOG.warning('Notification %s (%s): resource_metadata over '
                        '[sample_limits], fields dropped: %s',
                        item.message_id, item.event_type,
                        delivery.encodable(', '.join(
                            f'{name} ({count} of {len(samples)} samples)'
                            for name, count in sorted(trimmed.items()))))
        item.samples = samples
        return item

    def info(self, notifications, priority='info'):
        return self.deliver([self.item_of(n, priority)
                             for n in notifications])

    def sample(self, notifications):
        return self.info(notifications, 'sample')

    def ignore(self, notifications):
        metrics.ignored(len(notifications))
        return oslo_messaging.NotificationResult.HANDLED

    audit = debug = warn = error = critical = ignore


class PlannedNotification:
    """A notification whose inventory changes are made only if no newer
    one of the batch has its subject (``inventory_subject``): a burst of
    updates of one port or instance costs one making. Made once, when the
    part of the batch holding it is written; a notification they cannot
    be made of is logged and dropped then (its changes alone)."""

    __slots__ = ('endpoint', 'notification', 'key', 'at', 'dropped', '_made')

    def __init__(self, endpoint, notification, subject, dropped):
        """``subject``: the endpoint's (subject, instant) of it;
        ``dropped(error)``: says it is dropped."""
        self.endpoint = endpoint
        self.notification = notification
        subject, self.at = subject
        self.key = (id(endpoint), subject)
        self.dropped = dropped
        self._made = None

    def changes(self):
        if self._made is None:
            try:
                self._made = self.endpoint.inventory_changes(
                    self.notification)
            except Exception as exc:
                self.dropped(exc)
                self._made = []
        return self._made


def _made(changes):
    """The changes of a batch made: those of the planned notifications
    no newer one of their subject replaces, and the others."""
    newest = {}
    for change in changes:
        if change.__class__ is PlannedNotification and (
                change.at > newest.get(change.key, '')):
            newest[change.key] = change.at
    if not newest:
        return changes
    made = []
    for change in changes:
        if change.__class__ is not PlannedNotification:
            made.append(change)
        elif change.at == newest[change.key]:
            made.extend(change.changes())
    return made


def pipeline_probe(pipeline, inventory_store=None):
    """Probe of a pipeline's publishers (and the inventory store): True
    when every one that can tell answers (and one at least can), False
    when one does not."""
    def probe():
        answers = [publisher.probe() for sink in getattr(pipeline, "sinks", ())
                   for publisher in sink.publishers]
        if inventory_store is not None:
            answers.append(store_answers(inventory_store))
        told = [a for a in answers if a is not None]
        return bool(told) and all(told)
    return probe


def store_answers(store):
    try:
        store.ping()
    except Exception:
        return False
    return True


class InventoryStore:
    """The store of ``[inventory] connection``, connected on first use
    when it cannot be reached at start: the agent starts, and requeues
    the batches until the store answers. A URL no driver takes fails at
    once."""

    def __init__(self, conf):
        self.url = storage.inventory_url(conf)
        self.conf = conf
        self._lock = threading.Lock()
        self._store = None
        try:
            self._store = storage.get_connection_from_url(conf, self.url)
        except storage_base.StorageError as exc:
            LOG.warning('Inventory store %s unreachable (%s); connecting on '
                        'first write', storage.safe_url(self.url), exc)

    def connection(self):
        with self._lock:
            if self._store is None:
                self._store = storage.get_connection_from_url(self.conf,
                                                              self.url)
            return self._store

    def apply_inventory(self, objects, links):
        return self.connection().apply_inventory(objects, links)

    def ping(self):
        self.connection().ping()

    def close(self):
        with self._lock:
            store, self._store = self._store, None
        if store is not None:
            store.close()


def open_inventory_store(conf, endpoints):
    """The inventory store when an endpoint makes inventory changes."""
    if not any(e.makes_inventory for e in endpoints):
        return None
    return InventoryStore(conf)


class NotificationService(messaging.BatchListenerService):
    """One worker of the notification agent."""

    name = 'calipso-agent-notification'
    group = 'notification'

    def __init__(self, worker_id, conf):
        super().__init__(worker_id, conf)
        self.pipeline = None
        self.endpoints = None
        self.inventory_store = None

    def prepare(self):
        self.pipeline = load_pipeline(self.conf)
        self.endpoints = load_endpoints(self.conf)
        self.inventory_store = open_inventory_store(self.conf, self.endpoints)
        return True

    def make_endpoint(self):
        options = self.options
        return SampleDispatcher(
            self.endpoints, self.pipeline,
            origin=(options.exchanges[0], options.topics[0]),
            inventory_store=self.inventory_store,
            **self.delivery_options())

    def targets(self):
        return messaging.notification_targets(self.conf)

    def pool(self):
        return self.options.pool

    def log_listening(self):
        options = self.options
        LOG.info('Notification agent worker %d listening on exchanges %s, '
                 'topics %s with endpoints %s', self.worker_id,
                 ', '.join(options.exchanges), ', '.join(options.topics),
                 ', '.join(type(e).__name__ for e in self.endpoints))

    def close(self):
        if self.pipeline is not None:
            self.pipeline.close()
        if self.inventory_store is not None:
            self.inventory_store.close()
