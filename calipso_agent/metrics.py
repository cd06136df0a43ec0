"""Self-metrics of the calipso daemons, in the Prometheus format.

Every daemon runs several processes (cotyledon workers for the agent and
the collector, gunicorn workers for the HTTP services), so the counters
live in prometheus-client's multiprocess mode: ``setup(daemon)``, called
by the daemon's master before it forks, gives it a directory of its own
(``<tmp>/calipso-metrics.<daemon>.<pid>``, removed at exit; those of
daemons that died without removing theirs are removed by the next
``setup``) where each process writes its values. Whichever process
answers ``/metrics`` reads the whole directory: the sum over every worker,
those that have exited included, so a total never goes back.

The metrics are made on first use, after ``setup``: prometheus-client
decides per value, when it is made, whether it is kept in memory or in
the shared directory. Without ``setup`` (tests, tools) they are kept in
this process and ``/metrics`` answers them.

The HTTP services answer ``/metrics`` with ``MetricsFilter`` (first in
their paste pipelines, no token needed, like ``/healthcheck``; a
proxy counts its requests with ``calipso_proxy.metrics``); the agent
and the collector with a cotyledon worker of their own, ``MetricsServer``,
on ``[notification] metrics_port`` and ``[collector] metrics_port``.
doc/metrics.md lists the metrics.
"""

import atexit
import functools
import glob
import logging
import os
import shutil
import tempfile
import threading
import time
from wsgiref import simple_server

import cotyledon
import prometheus_client
from prometheus_client import multiprocess, values

LOG = logging.getLogger(__name__)

DIR_PREFIX = 'calipso-metrics.'
PATH = '/metrics'
# The ``method`` label: these, or ``other`` (a label per client-made
# method would grow without bound).
METHODS = frozenset(('GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE',
                     'OPTIONS'))

# Seconds: a batch of a few notifications up to a store write of
# thousands of samples, or a batch waiting out a requeue backoff.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0)


class LazyMetric:
    """A prometheus-client metric made on its first use (see the module
    docstring); attribute access is the metric's."""

    def __init__(self, kind, name, documentation, labelnames=(), **kwargs):
        self._make = functools.partial(kind, name, documentation,
                                       labelnames=labelnames, **kwargs)
        self._metric = None
        self._lock = threading.Lock()

    def __getattr__(self, attribute):
        if self._metric is None:
            with self._lock:
                if self._metric is None:
                    self._metric = self._make()
        return getattr(self._metric, attribute)


NOTIFICATIONS_RECEIVED = LazyMetric(
    prometheus_client.Counter, 'calipso_notifications_received_total',
    'Notifications taken from the bus (a redelivered one again).')
NOTIFICATIONS_ACKED = LazyMetric(
    prometheus_client.Counter, 'calipso_notifications_acked_total',
    'Notifications acknowledged: their samples handed over, or '
    'dead-lettered, or of a priority without samples.')
NOTIFICATIONS_REQUEUED = LazyMetric(
    prometheus_client.Counter, 'calipso_notifications_requeued_total',
    'Notifications put back on their queue, by reason.', ('reason',))
NOTIFICATIONS_DEAD_LETTERED = LazyMetric(
    prometheus_client.Counter, 'calipso_notifications_dead_lettered_total',
    'Notifications set aside on the dead-letter queue (dropped when none '
    'is configured), by reason.', ('reason',))
METER_MESSAGES_DROPPED = LazyMetric(
    prometheus_client.Counter, 'calipso_meter_messages_dropped_total',
    'Meter messages of a notification the collector dropped, by reason.',
    ('reason',))
SAMPLES_PUBLISHED = LazyMetric(
    prometheus_client.Counter, 'calipso_samples_published_total',
    'Samples a publisher accepted, by sink and publisher (URL scheme).',
    ('sink', 'publisher'))
BATCH_DURATION = LazyMetric(
    prometheus_client.Histogram, 'calipso_batch_duration_seconds',
    'Time to handle one batch of notifications, by outcome (acked or '
    'requeued; a requeue includes its backoff).', ('outcome',),
    buckets=LATENCY_BUCKETS)
STORE_WRITE_DURATION = LazyMetric(
    prometheus_client.Histogram, 'calipso_store_write_duration_seconds',
    'Time of one write of samples to the store, by outcome.',
    ('outcome',), buckets=LATENCY_BUCKETS)
HTTP_REQUESTS = LazyMetric(
    prometheus_client.Counter, 'calipso_http_requests_total',
    'Requests an HTTP service answered (/metrics excepted), by method '
    'and status.', ('method', 'status'))
PROXY_REQUESTS = LazyMetric(
    prometheus_client.Counter, 'calipso_proxy_requests_total',
    'Requests a channel\'s proxy answered, by channel and HTTP status.',
    ('channel', 'status'))
PROXY_RESTARTS = LazyMetric(
    prometheus_client.Counter, 'calipso_proxy_restarts_total',
    'Proxies the controller\'s reconciler started again, by channel and '
    'reason.', ('channel', 'reason'))
POLLING_CYCLES = LazyMetric(
    prometheus_client.Counter, 'calipso_polling_cycles_total',
    'Polling cycles run, by source and outcome (polled; skipped: '
    'disabled, backlog, coordination).', ('source', 'outcome'))
POLLING_OVERRUNS = LazyMetric(
    prometheus_client.Counter, 'calipso_polling_overruns_total',
    'Polling cycles that lasted longer than their interval (the ticks '
    'they covered are skipped, never stacked), by source.', ('source',))
POLLSTER_FAILURES = LazyMetric(
    prometheus_client.Counter, 'calipso_pollster_failures_total',
    'Pollster or discovery calls that failed, by plugin and reason '
    '(error, timeout, hung: still running since a timeout).',
    ('plugin', 'reason'))
SAMPLES_POLLED = LazyMetric(
    prometheus_client.Counter, 'calipso_samples_polled_total',
    'Samples the pollsters made, by source.', ('source',))
POLLED_PUBLISH_RETRIES = LazyMetric(
    prometheus_client.Counter, 'calipso_polled_publish_retries_total',
    'Polled samples whose publish failed and is retried.')
POLLED_SAMPLES_REFUSED = LazyMetric(
    prometheus_client.Counter, 'calipso_polled_samples_refused_total',
    'Polled samples a publisher refused (logged with their ids).')

# Why a notification is dead-lettered (the ``reason`` label).
UNPROCESSABLE = 'unprocessable'
REFUSED = 'refused'
ATTEMPTS_EXHAUSTED = 'attempts_exhausted'
UNDECODABLE = 'undecodable'
TOO_LARGE = 'too_large'


def setup(daemon, tmp_dir=None):
    """Multiprocess mode for this daemon's processes; its directory."""
    tmp_dir = tmp_dir or tempfile.gettempdir()
    remove_stale_dirs(tmp_dir)
    directory = os.path.join(tmp_dir, f'{DIR_PREFIX}{daemon}.{os.getpid()}')
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, mode=0o700)
    os.environ['PROMETHEUS_MULTIPROC_DIR'] = directory
    values.ValueClass = values.get_value_class()
    owner = os.getpid()

    def remove():
        # The workers inherit this handler with the fork.
        if os.getpid() == owner:
            shutil.rmtree(directory, ignore_errors=True)
    atexit.register(remove)
    return directory


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_dirs(tmp_dir):
    """Remove the directories of daemons no longer running."""
    for path in glob.glob(os.path.join(glob.escape(tmp_dir),
                                       DIR_PREFIX + '*')):
        pid = path.rsplit('.', 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def multiprocess_dir():
    return os.environ.get('PROMETHEUS_MULTIPROC_DIR')


def exposition():
    """(content type, body) of every metric of this daemon."""
    directory = multiprocess_dir()
    if directory and values.ValueClass is not values.MutexValue:
        registry = prometheus_client.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)
    else:
        registry = prometheus_client.REGISTRY
    return (prometheus_client.CONTENT_TYPE_LATEST,
            prometheus_client.generate_latest(registry))


def metrics_app(environ, start_response):
    """WSGI application answering the metrics (GET or HEAD)."""
    if environ.get('REQUEST_METHOD') not in ('GET', 'HEAD'):
        start_response('405 Method Not Allowed',
                       [('Allow', 'GET, HEAD'),
                        ('Content-Type', 'text/plain; charset=UTF-8')])
        return [b'Method not allowed']
    content_type, body = exposition()
    start_response('200 OK', [('Content-Type', content_type),
                              ('Content-Length', str(len(body)))])
    return [] if environ['REQUEST_METHOD'] == 'HEAD' else [body]


class MetricsFilter:
    """WSGI filter answering ``/metrics`` itself, before authentication,
    and counting the answers to the other requests."""

    def __init__(self, application):
        self.application = application

    @classmethod
    def factory(cls, global_conf, **local_conf):
        return cls

    def __call__(self, environ, start_response):
        if environ.get('PATH_INFO', '').rstrip('/') == PATH:
            return metrics_app(environ, start_response)
        method = environ.get('REQUEST_METHOD', '')
        if method not in METHODS:
            method = 'other'

        def counting_start_response(status, headers, exc_info=None):
            HTTP_REQUESTS.labels(method, status.split(' ', 1)[0]).inc()
            return start_response(status, headers, exc_info)
        return self.application(environ, counting_start_response)


def counted_delivery(handled):
    """Decorator of a batch delivery ``deliver(self, items)``: counts the
    notifications received and acknowledged (the result is ``handled``)
    and times the batch. Requeues are counted where their reason is
    known (``requeued``)."""
    def decorate(deliver):
        @functools.wraps(deliver)
        def wrapper(self, items):
            started = time.perf_counter()
            NOTIFICATIONS_RECEIVED.inc(len(items))
            result = deliver(self, items)
            acked = result == handled
            if acked:
                NOTIFICATIONS_ACKED.inc(len(items))
            BATCH_DURATION.labels('acked' if acked else 'requeued').observe(
                time.perf_counter() - started)
            return result
        return wrapper
    return decorate


def requeued(count, reason):
    NOTIFICATIONS_REQUEUED.labels(reason).inc(count)


def dead_lettered(refused, attempts, max_attempts):
    """Count a dead letter of a delivery: ``refused`` when it could not
    be made into samples, else failed too often, else refused by the
    receiver."""
    if refused:
        reason = UNPROCESSABLE
    elif attempts and attempts >= max_attempts:
        reason = ATTEMPTS_EXHAUSTED
    else:
        reason = REFUSED
    NOTIFICATIONS_DEAD_LETTERED.labels(reason).inc()


def unread(reason, acked):
    """Count a message the AMQP consumer could not read (``reason``:
    UNDECODABLE or TOO_LARGE), dead-lettered and acknowledged, or
    requeued because the dead letter could not be published."""
    NOTIFICATIONS_RECEIVED.inc()
    if acked:
        NOTIFICATIONS_DEAD_LETTERED.labels(reason).inc()
        NOTIFICATIONS_ACKED.inc()
    else:
        requeued(1, 'dead_letter_failed')


def ignored(count):
    """Notifications of a priority carrying no samples, acknowledged."""
    NOTIFICATIONS_RECEIVED.inc(count)
    NOTIFICATIONS_ACKED.inc(count)


def published(sink, publisher, count):
    SAMPLES_PUBLISHED.labels(sink, publisher.url.scheme).inc(count)


def record_samples(store, samples):
    """``store.record_samples(samples)``, timed."""
    started = time.perf_counter()
    outcome = 'error'
    try:
        result = store.record_samples(samples)
        outcome = 'ok'
        return result
    finally:
        STORE_WRITE_DURATION.labels(outcome).observe(
            time.perf_counter() - started)


def polling_cycle(source, outcome):
    POLLING_CYCLES.labels(source, outcome).inc()


def polling_overrun(source):
    POLLING_OVERRUNS.labels(source).inc()


def pollster_failed(plugin, reason):
    POLLSTER_FAILURES.labels(plugin, reason).inc()


def samples_polled(source, count):
    SAMPLES_POLLED.labels(source).inc(count)


def polled_cycle_counters(source):
    """(cycles polled, samples polled) counters of ``source``, bound once
    by its runner (it bumps them at every cycle)."""
    return POLLING_CYCLES.labels(source, 'polled'), SAMPLES_POLLED.labels(
        source)


def publish_retried(count):
    POLLED_PUBLISH_RETRIES.inc(count)


def polled_samples_refused(count):
    POLLED_SAMPLES_REFUSED.inc(count)


def proxy_restarted(channel_id, reason):
    PROXY_RESTARTS.labels(channel_id, reason).inc()


class QuietHandler(simple_server.WSGIRequestHandler):
    """Scrapes are logged at debug level, not on stderr."""

    def log_message(self, format, *args):
        LOG.debug('metrics: %s', format % args)


class MetricsServer(cotyledon.Service):
    """The worker of the agent or the collector answering ``/metrics`` of
    every worker on (host, port)."""

    name = 'calipso-metrics'

    def __init__(self, worker_id, host, port):
        super().__init__(worker_id)
        self.host, self.port = host, port
        self.server = None

    def run(self):
        self.server = simple_server.make_server(
            self.host, self.port, metrics_app,
            handler_class=QuietHandler)
        LOG.info('Metrics on http://%s:%d%s', self.host,
                 self.server.server_port, PATH)
        threading.Thread(target=self.server.serve_forever, daemon=True,
                         name='calipso-metrics').start()

    def terminate(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        super().terminate()


def add_server(services, daemon, host, port):
    """With a port, multiprocess mode for ``daemon`` and a MetricsServer
    among its cotyledon ``services``."""
    if not port:
        return
    setup(daemon)
    services.add(MetricsServer, workers=1, args=(host, port))


