"""The dispatcher: ack only after publishing; requeue with backoff."""

import logging

import oslo_messaging
import pytest

from calipso_agent.notification import base, manager, meters
from tests.helpers import basics, fixtures

HANDLED = oslo_messaging.NotificationResult.HANDLED
REQUEUE = oslo_messaging.NotificationResult.REQUEUE


class RecordingPipeline:
    def __init__(self, failures=0):
        self.failures = failures
        self.published = []

    def publish_samples(self, samples):
        if self.failures:
            self.failures -= 1
            raise OSError('disk full')
        self.published.extend(samples)


class ExplodingEndpoint(base.NotificationEndpoint):
    event_types = ('compute.instance.exists',)

    def process_notification(self, notification):
        if notification['payload'].get('explode'):
            raise KeyError('boom')
        return []


def nova_exists(message_id='m-1', **payload_changes):
    envelope = fixtures.load_envelope(
        'nova_legacy__ceilometer-tests__instance_exists')
    envelope['message_id'] = message_id
    envelope['payload'].update(payload_changes)
    return base.from_envelope(envelope)[1]


@pytest.fixture
def meter_endpoint():
    conf = basics.make_conf()
    return meters.MeterEndpoint(
        conf, meters.MeterDefinitions.from_files([fixtures.CEILOMETER_METERS]))


def dispatcher(endpoints, pipeline, waits, **kwargs):
    d = manager.SampleDispatcher(endpoints, pipeline, (0.5, 4), **kwargs)
    d.outage.wait = waits.append
    return d


def test_batch_is_acked_after_publishing(meter_endpoint):
    pipeline = RecordingPipeline()
    d = dispatcher([meter_endpoint], pipeline, [])
    assert d.info([nova_exists('a'), nova_exists('b')]) == HANDLED
    assert len(pipeline.published) == 8


def test_publisher_failure_requeues_with_growing_backoff(meter_endpoint):
    pipeline = RecordingPipeline(failures=4)
    waits = []
    d = dispatcher([meter_endpoint], pipeline, waits)
    batch = [nova_exists('a')]
    results = [d.info(batch) for _ in range(5)]
    assert results == [REQUEUE] * 4 + [HANDLED]
    assert waits == [0.5, 1.0, 2.0, 4.0]
    first_ids = [s.id for s in pipeline.published]
    assert len(first_ids) == 4
    assert d.info(batch) == HANDLED
    assert [s.id for s in pipeline.published[4:]] == first_ids
    pipeline.failures = 1
    d.info(batch)
    assert waits[-1] == 0.5


def test_notification_no_endpoint_can_process_is_dead_lettered_alone(
        meter_endpoint, caplog):
    pipeline = RecordingPipeline()
    letters = Letters()
    d = dispatcher([ExplodingEndpoint(basics.make_conf()), meter_endpoint],
                   pipeline, [], dead_letters=letters)
    with caplog.at_level(logging.ERROR):
        result = d.info([nova_exists('bad', explode=True),
                         nova_exists('good')])
    assert result == HANDLED
    assert {s.message_id for s in pipeline.published} == {'good'}
    assert d.dropped == 1
    assert [(k['message_id'], reason) for k, reason in letters.letters] == [
        ('bad', "no sample can be made of it: KeyError: 'boom'")]
    assert ("Notification bad (compute.instance.exists) dead-lettered: no "
            "sample can be made of it: KeyError: 'boom'") in caplog.text


class Letters:
    def __init__(self):
        self.letters = []

    def publish(self, body, reason, **kwargs):
        self.letters.append((dict(kwargs, body=body), reason))


def test_definition_failure_is_logged_with_the_message_id(meter_endpoint,
                                                          caplog):
    pipeline = RecordingPipeline()
    d = dispatcher([meter_endpoint], pipeline, [])
    broken = nova_exists('no-memory')
    del broken['payload']['memory_mb']
    with caplog.at_level(logging.WARNING):
        assert d.info([broken]) == HANDLED
    assert sorted(s.name for s in pipeline.published) == [
        'disk.ephemeral.size', 'disk.root.size', 'vcpus']
    assert ('Notification no-memory (compute.instance.exists): meter '
            'memory not built') in caplog.text


def test_same_sample_from_two_endpoints_is_kept_once(meter_endpoint):
    pipeline = RecordingPipeline()
    d = dispatcher([meter_endpoint, meter_endpoint], pipeline, [])
    d.info([nova_exists('a')])
    assert len(pipeline.published) == 4


def test_other_priorities_are_consumed_without_samples(meter_endpoint):
    pipeline = RecordingPipeline()
    d = dispatcher([meter_endpoint], pipeline, [])
    for priority in ('audit', 'debug', 'warn', 'error', 'critical'):
        assert getattr(d, priority)([nova_exists('x')]) == HANDLED
    assert pipeline.published == []
    assert d.sample([nova_exists('s')]) == HANDLED
    assert len(pipeline.published) == 4


def test_load_endpoints_in_configured_order():
    conf = basics.make_conf(meter__meter_definitions_dirs=[basics.METERS_D])
    endpoints = manager.load_endpoints(conf, ['vsg', 'meter'])
    assert [type(e).__name__ for e in endpoints] == ['VsgEndpoint',
                                                     'MeterEndpoint']
