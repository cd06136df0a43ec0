"""calipso_agent.metrics: the counts of a batch delivery, the WSGI
filters, and the multiprocess directory summing forked workers."""

import os
import subprocess
import sys
import textwrap

import prometheus_client
import pytest
import webob
import webob.dec

from calipso_agent import delivery, messaging, metrics
from calipso_agent.publisher import base as publisher_base
from calipso_proxy import metrics as proxy_metrics
from tests.helpers import basics


def value(name, **labels):
    return prometheus_client.REGISTRY.get_sample_value(name, labels) or 0


class Counts:
    """Values of some samples now; ``delta()`` their change since."""

    def __init__(self, *samples):
        self.samples = samples
        self.before = [value(name, **labels) for name, labels in samples]

    def delta(self):
        return [value(name, **labels) - before for (name, labels), before
                in zip(self.samples, self.before, strict=True)]


RECEIVED = ('calipso_notifications_received_total', {})
ACKED = ('calipso_notifications_acked_total', {})


def dead(reason):
    return ('calipso_notifications_dead_lettered_total', {'reason': reason})


def requeued(reason):
    return ('calipso_notifications_requeued_total', {'reason': reason})


def batches(outcome):
    return ('calipso_batch_duration_seconds_count', {'outcome': outcome})


def batch_delivery(publish, max_attempts=2):
    return delivery.BatchDelivery(
        publish, delivery.Outage('Publishing', 'publishing'),
        lambda: messaging.Backoff(0, 0), max_attempts)


def item(index, refused=None, letters=None):
    """A notification of one sample; its dead letter's reason goes to
    ``letters``."""
    letters = letters if letters is not None else []
    return delivery.Item(f'm{index}', 'compute.instance.exists',
                         [basics.make_sample(index)],
                         lambda reason, attempts: letters.append(reason),
                         refused)


def test_a_delivered_batch_counts_received_acked_and_dead_letters():
    def publish(samples):
        refused = [(s, 'no') for s in samples if s.resource_id.endswith('1')]
        if refused:
            raise publisher_base.PublisherDataError('refused', refused)

    counts = Counts(RECEIVED, ACKED, dead('refused'), dead('unprocessable'),
                    batches('acked'))
    letters = []
    items = [item(0, letters=letters), item(1, letters=letters), item(2),
             item(3, refused='over the limit', letters=letters)]
    result = batch_delivery(publish).deliver(items)
    assert result == delivery.HANDLED
    assert len(letters) == 2
    assert counts.delta() == [4, 4, 1, 1, 1]


def test_a_requeued_batch_counts_its_reason_and_no_ack():
    def publish(samples):
        raise publisher_base.PublisherError('connection refused')

    counts = Counts(RECEIVED, ACKED, requeued('unavailable'),
                    batches('requeued'))
    assert batch_delivery(publish).deliver([item(0), item(1)]) == (
        delivery.REQUEUE)
    assert counts.delta() == [2, 0, 2, 1]


def test_a_notification_failing_alone_is_retried_then_dead_lettered():
    def publish(samples):
        raise RuntimeError('nobody foresaw this')

    counts = Counts(requeued('retry'), dead('attempts_exhausted'), ACKED)
    target = batch_delivery(publish, max_attempts=2)
    assert target.deliver([item(0)]) == delivery.REQUEUE
    assert target.deliver([item(0)]) == delivery.HANDLED
    assert counts.delta() == [1, 1, 1]


def test_store_writes_are_timed_by_outcome():
    class Store:
        def __init__(self, error=None):
            self.error = error

        def record_samples(self, samples):
            if self.error:
                raise self.error
            return len(samples)

    counts = Counts(('calipso_store_write_duration_seconds_count',
                     {'outcome': 'ok'}),
                    ('calipso_store_write_duration_seconds_count',
                     {'outcome': 'error'}))
    assert metrics.record_samples(Store(), [1, 2]) == 2
    with pytest.raises(ValueError):
        metrics.record_samples(Store(ValueError('down')), [1])
    assert counts.delta() == [1, 1]


def downstream(request):
    return webob.Response(status=418 if request.path == '/tea' else 200,
                          text='below')


def test_the_filter_answers_metrics_and_counts_the_other_requests():
    app = metrics.MetricsFilter(webob.dec.wsgify(downstream))
    counts = Counts(('calipso_http_requests_total',
                     {'method': 'GET', 'status': '418'}),
                    ('calipso_http_requests_total',
                     {'method': 'other', 'status': '200'}))
    assert webob.Request.blank('/tea').get_response(app).status_int == 418
    assert webob.Request.blank(
        '/', method='BREW').get_response(app).status_int == 200
    answer = webob.Request.blank('/metrics').get_response(app)
    assert answer.status_int == 200
    assert answer.content_type == 'text/plain'
    assert ('calipso_http_requests_total{method="GET",status="418"}'
            in answer.text)
    assert webob.Request.blank(
        '/metrics', method='DELETE').get_response(app).status_int == 405
    assert counts.delta() == [1, 1]


def test_the_proxy_counts_its_answers_by_channel_but_not_its_probes():
    app = proxy_metrics.RequestCounter(webob.dec.wsgify(downstream), 'ch1')
    counts = Counts(('calipso_proxy_requests_total',
                     {'channel': 'ch1', 'status': '418'}),
                    ('calipso_proxy_requests_total',
                     {'channel': 'ch1', 'status': '200'}))
    for path in ('/tea', '/tea', '/healthcheck', '/metrics'):
        webob.Request.blank(path).get_response(app)
    assert counts.delta() == [2, 0]


FORKED_WORKERS = textwrap.dedent('''
    import os, sys
    from calipso_agent import metrics
    directory = metrics.setup('test-daemon', sys.argv[1])
    print(directory)
    metrics.requeued(1, 'master')
    for worker in (1, 2, 3):
        pid = os.fork()
        if pid == 0:
            metrics.requeued(worker, 'worker')
            metrics.NOTIFICATIONS_RECEIVED.inc(10)
            os._exit(0)
        os.waitpid(pid, 0)
    sys.stdout.write(metrics.exposition()[1].decode())
''')


def test_forked_workers_are_summed_and_the_directory_removed(tmp_path):
    stale = tmp_path / f'{metrics.DIR_PREFIX}gone.{dead_pid()}'
    stale.mkdir()
    live = tmp_path / f'{metrics.DIR_PREFIX}alive.{os.getpid()}'
    live.mkdir()
    out = subprocess.run([sys.executable, '-c', FORKED_WORKERS,
                          str(tmp_path)], capture_output=True, text=True,
                         check=True, cwd=basics.REPO).stdout
    directory, page = out.split('\n', 1)
    assert ('calipso_notifications_requeued_total{reason="worker"} 6.0'
            in page), page
    assert ('calipso_notifications_requeued_total{reason="master"} 1.0'
            in page), page
    assert 'calipso_notifications_received_total 30.0' in page, page
    assert directory.startswith(str(tmp_path))
    # Removed at the master's exit, as the stale directory at its start.
    assert not os.path.exists(directory)
    assert not stale.exists()
    assert live.exists()


def dead_pid():
    process = subprocess.Popen([sys.executable, '-c', ''])
    process.wait()
    return process.pid
