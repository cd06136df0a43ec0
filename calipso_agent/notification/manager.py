"""The notification agent's listener: batches in, samples published, ack.

One oslo.messaging batch notification listener per worker consumes every
configured exchange and topic. A batch is handed to the endpoint plugins,
their samples to the pipeline; the batch is acknowledged only when every
publisher of every sink has accepted its samples. A publisher failure
requeues the whole batch after a backoff, so nothing is lost, and sample ids
are deterministic, so the retry duplicates nothing. A notification that
cannot be processed at all is logged with its message id and dropped alone.
"""

import logging
import threading

import cotyledon
import oslo_messaging
from oslo_messaging import transport as transport_mod
from stevedore import named

from calipso_agent import pipeline as pipeline_mod
from calipso_agent.notification import amqp_consumer

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


class Backoff:
    """Exponential wait between retries of a failing batch."""

    def __init__(self, initial, maximum):
        self.initial = initial
        self.maximum = maximum
        self.failures = 0

    def next_delay(self):
        delay = min(self.maximum, self.initial * (2 ** self.failures))
        self.failures += 1
        return delay

    def reset(self):
        self.failures = 0


class SampleDispatcher:
    """The oslo.messaging endpoint: one call per batch and priority.

    Only ``info`` and ``sample`` notifications carry measurements; the
    other priorities are consumed and acknowledged, so their queues do not
    grow without bound.
    """

    def __init__(self, endpoints, pipeline, backoff):
        self.endpoints = endpoints
        self.pipeline = pipeline
        self.backoff = backoff
        self._stopping = threading.Event()
        self.dropped = 0

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

    def info(self, notifications):
        samples = []
        for notification in notifications:
            try:
                samples.extend(self.samples_of(notification))
            except Exception as exc:
                self.dropped += 1
                metadata = notification.get('metadata') or {}
                LOG.error('Notification %s (%s) dropped: %s: %s',
                          metadata.get('message_id'),
                          notification.get('event_type'),
                          type(exc).__name__, exc)
        if not samples:
            return oslo_messaging.NotificationResult.HANDLED
        try:
            self.pipeline.publish_samples(samples)
        except Exception as exc:
            delay = self.backoff.next_delay()
            LOG.error('Publishing %d samples of %d notifications failed '
                      '(%s: %s); requeueing them in %.1fs', len(samples),
                      len(notifications), type(exc).__name__, exc, delay)
            self._stopping.wait(delay)
            return oslo_messaging.NotificationResult.REQUEUE
        self.backoff.reset()
        return oslo_messaging.NotificationResult.HANDLED

    sample = info

    def ignore(self, notifications):
        return oslo_messaging.NotificationResult.HANDLED

    audit = debug = warn = error = critical = ignore


def notification_transport(conf):
    """The transport the agent listens on: oslo.messaging's, or for
    rabbit:// with ``batched_amqp_consumer`` the batched consumer driver."""
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
        conf, url, conf.control_exchange, conf.notification.prefetch)
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

    def run(self):
        conf = self.conf
        self.pipeline = load_pipeline(conf)
        endpoints = load_endpoints(conf)
        self.dispatcher = SampleDispatcher(
            endpoints, self.pipeline,
            Backoff(conf.notification.requeue_backoff_initial,
                    conf.notification.requeue_backoff_max))
        transport = notification_transport(conf)
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
        super().terminate()
