"""The notification agent's listener: batches in, samples published, ack.

One oslo.messaging batch notification listener per worker consumes every
configured exchange and topic. A batch is handed to the endpoint plugins,
their samples to the pipeline; the batch is acknowledged only when every
publisher of every sink has accepted its samples. A publisher failure
that fails for now requeues the whole batch after a backoff, so nothing is
lost, and sample ids are deterministic, so the retry duplicates nothing. A
notification that can never succeed is dead-lettered alone (see
``delivery`` and ``dead_letter``).
"""

import logging
import threading

import cotyledon
import oslo_messaging
from oslo_messaging import transport as transport_mod
from stevedore import named

from calipso_agent import metrics, sample_limits
from calipso_agent import pipeline as pipeline_mod
from calipso_agent.notification import amqp_consumer, dead_letter, delivery

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


Backoff = delivery.Backoff

RESULTS = {delivery.HANDLED: oslo_messaging.NotificationResult.HANDLED,
           delivery.REQUEUE: oslo_messaging.NotificationResult.REQUEUE}


class SampleDispatcher:
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
                 probe_interval=1.0):
        self.endpoints = endpoints
        self.pipeline = pipeline
        self.limits = limits or sample_limits.SampleLimits()
        self.dead_letters = dead_letters or dead_letter.DroppingDeadLetters()
        self.origin = origin
        self._stopping = threading.Event()
        self.outage = delivery.Outage(
            'Publishing', 'publishing', pipeline_probe(pipeline),
            probe_interval, self._stopping)
        self.delivery = delivery.BatchDelivery(
            pipeline.publish_samples, self.outage,
            lambda: delivery.Backoff(*backoff), max_attempts)
        self.dropped = 0
        self.trimmed = 0

    def stop(self):
        self._stopping.set()

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
        metadata = notification.get('metadata')
        message_id = (metadata.get('message_id')
                      if isinstance(metadata, dict) else None)
        event_type = notification.get('event_type')

        def dead_letter_it(reason, attempts):
            exchange, topic = self.origin
            dead_letter.publish_notification(
                self.dead_letters, notification, priority, reason, exchange,
                f'{topic}.{priority}', attempts)

        item = delivery.Item(message_id, event_type, [], dead_letter_it)
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
        trimmed = self.limits.bound_samples(samples)
        if trimmed:
            self.trimmed += 1
            LOG.warning('Notification %s (%s): resource_metadata over '
                        '[sample_limits], fields dropped: %s',
                        item.message_id, item.event_type, ', '.join(
                            f'{name} ({count} of {len(samples)} samples)'
                            for name, count in sorted(trimmed.items())))
        item.samples = samples
        return item

    def info(self, notifications, priority='info'):
        items = [self.item_of(n, priority) for n in notifications]
        return RESULTS[self.delivery.deliver(items)]

    def sample(self, notifications):
        return self.info(notifications, 'sample')

    def ignore(self, notifications):
        metrics.ignored(len(notifications))
        return oslo_messaging.NotificationResult.HANDLED

    audit = debug = warn = error = critical = ignore


def pipeline_probe(pipeline):
    """Probe of a pipeline's publishers: True when every one that can
    tell answers (and one at least can), False when one does not."""
    def probe():
        answers = [publisher.probe() for sink in getattr(pipeline, "sinks", ())
                   for publisher in sink.publishers]
        told = [a for a in answers if a is not None]
        return bool(told) and all(told)
    return probe


def notification_transport(conf, dead_letters=None):
    """The transport the agent listens on: oslo.messaging's, or for
    rabbit:// with ``batched_amqp_consumer`` the batched consumer driver
    (which dead-letters to ``dead_letters`` what it cannot read)."""
    transport = oslo_messaging.get_notification_transport(conf)
    if not conf.notification.batched_amqp_consumer:
        return transport
    url = oslo_messaging.TransportURL.parse(
        conf, conf.oslo_messaging_notifications.transport_url
        or conf.transport_url)
    if url.transport != 'rabbit':
        return transport
    transport.cleanup()
    driver = amqp_consumer.BatchedNotificationDriver(
        conf, url, conf.control_exchange, conf.notification.prefetch,
        dead_letters, conf.delivery.max_notification_bytes)
    return transport_mod.NotificationTransport(driver)


def listener_targets(conf):
    return [oslo_messaging.Target(topic=topic, exchange=exchange)
            for exchange in conf.notification.exchanges
            for topic in conf.notification.topics]


class NotificationService(cotyledon.Service):
    """One worker of the notification agent."""

    name = 'calipso-agent-notification'

    def __init__(self, worker_id, conf):
        super().__init__(worker_id)
        self.conf = conf
        self.listener = None
        self.dispatcher = None
        self.pipeline = None
        self.dead_letters = None

    def run(self):
        conf = self.conf
        self.pipeline = load_pipeline(conf)
        endpoints = load_endpoints(conf)
        self.dead_letters = dead_letter.from_conf(
            conf, conf.notification.dead_letter_queue)
        self.dispatcher = SampleDispatcher(
            endpoints, self.pipeline,
            (conf.notification.requeue_backoff_initial,
             conf.notification.requeue_backoff_max),
            sample_limits.SampleLimits.from_conf(conf), self.dead_letters,
            (conf.notification.exchanges[0], conf.notification.topics[0]),
            conf.delivery.max_delivery_attempts,
            conf.delivery.outage_probe_interval)
        transport = notification_transport(conf, self.dead_letters)
        self.listener = oslo_messaging.get_batch_notification_listener(
            transport, listener_targets(conf), [self.dispatcher],
            executor='threading', allow_requeue=True,
            pool=conf.notification.pool,
            batch_size=conf.notification.batch_size,
            batch_timeout=conf.notification.batch_timeout)
        self.listener.start()
        LOG.info('Notification agent worker %d listening on exchanges %s, '
                 'topics %s with endpoints %s', self.worker_id,
                 ', '.join(conf.notification.exchanges),
                 ', '.join(conf.notification.topics),
                 ', '.join(type(e).__name__ for e in endpoints))

    def terminate(self):
        if self.dispatcher is not None:
            self.dispatcher.stop()
        if self.listener is not None:
            self.listener.stop()
            self.listener.wait()
        if self.pipeline is not None:
            self.pipeline.close()
        if self.dead_letters is not None:
            self.dead_letters.close()
        super().terminate()
