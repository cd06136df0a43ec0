"""The collector: meter messages to samples, signatures, ack after commit."""

import logging
import threading

import orjson
import oslo_messaging
import pytest

from calipso_agent import collector, storage
from calipso_agent.cmd import collector as collector_cmd
from calipso_agent.publisher import utils
from calipso_agent.storage import base as storage_base
from tests.helpers import basics
from tests.helpers.basics import make_sample

HANDLED = oslo_messaging.NotificationResult.HANDLED
REQUEUE = oslo_messaging.NotificationResult.REQUEUE
SECRET = 'collector-secret'


class FakeStore:
    """Records samples by id (idempotent, like the drivers); fails the
    next ``failures`` writes with ``error``."""

    def __init__(self, failures=0, error=None, reject=()):
        self.failures = failures
        self.error = error or storage_base.StorageError('connection refused')
        self.reject = set(reject)
        self.samples = {}
        self.writes = 0
        self.closed = False

    def record_samples(self, samples):
        self.writes += 1
        if self.failures:
            self.failures -= 1
            raise self.error
        rejected = [(s, 'refused by the fake store') for s in samples
                    if s.id in self.reject]
        stored = 0
        for s in samples:
            if s.id not in self.reject and s.id not in self.samples:
                self.samples[s.id] = s
                stored += 1
        return storage_base.RecordResult(stored, rejected)

    def close(self):
        self.closed = True


def wire(message):
    """``message`` as the collector gets it: through JSON."""
    return orjson.loads(orjson.dumps(message))


def notification(payload, message_id='n-1'):
    """What oslo.messaging's batch dispatcher hands the endpoint."""
    return {'ctxt': {}, 'publisher_id': 'telemetry.publisher.node-1',
            'event_type': 'metering', 'payload': payload,
            'metadata': {'message_id': message_id, 'timestamp': 'now'}}


def signed(index=0, secret=SECRET, **changes):
    """The wire meter message of make_sample(index), ``changes`` applied
    before signing (a value of None removes the field)."""
    message = utils.meter_message(make_sample(index), None)
    del message['message_signature']
    for key, value in changes.items():
        if value is None:
            message.pop(key, None)
        else:
            message[key] = value
    message['message_signature'] = utils.compute_signature(message, secret)
    return wire(message)


def endpoint(store, waits=None, secret=SECRET):
    ep = collector.SampleEndpoint(store, secret, (0.5, 4))
    if waits is not None:
        ep.outage.wait = waits.append
    return ep


# --- conversion -----------------------------------------------------------

def test_meter_message_becomes_the_sample_it_was_made_from():
    original = make_sample(3, volume=7, unit='B', source='cord',
                           recorded_at='2024-05-01T12:00:01+00:00',
                           resource_metadata={'tags': ['a'], 'n': {'x': 1}})
    message = wire(utils.meter_message(original, SECRET))
    got = collector.sample_from_meter_message(message)
    assert got.as_dict() == dict(original.as_dict(),
                                 message_id=original.id, volume=7.0)
    assert isinstance(got.volume, float)


def test_sample_id_is_the_meter_message_id():
    got = collector.sample_from_meter_message(signed(1, message_id='abc'))
    assert got.id == got.message_id == 'abc'


def test_recorded_at_defaults_to_the_time_of_the_batch():
    got = collector.sample_from_meter_message(
        signed(1), recorded_at='2024-06-01T00:00:00+00:00')
    assert got.recorded_at == '2024-06-01T00:00:00+00:00'
    assert collector.sample_from_meter_message(signed(1)).recorded_at


def test_defaults_for_optional_fields():
    message = signed(1, counter_unit=None, user_id=None, project_id=None,
                     resource_metadata=None, source=None)
    got = collector.sample_from_meter_message(message)
    assert (got.unit, got.user_id, got.project_id) == (None, None, None)
    assert got.resource_metadata == {}
    assert got.source == 'openstack'


def test_timestamps_are_normalized_to_utc():
    got = collector.sample_from_meter_message(
        signed(1, timestamp='2024-05-01T14:00:00+02:00'))
    assert got.timestamp == '2024-05-01T12:00:00+00:00'
    got = collector.sample_from_meter_message(
        signed(1, timestamp='2024-05-01T12:00:00Z'))
    assert got.timestamp == '2024-05-01T12:00:00+00:00'


@pytest.mark.parametrize('volume,expected', [(3, 3.0), ('2.5', 2.5),
                                             (10 ** 12, 1e12)])
def test_numeric_volumes(volume, expected):
    got = collector.sample_from_meter_message(signed(1,
                                                     counter_volume=volume))
    assert got.volume == expected


@pytest.mark.parametrize('changes,reason', [
    (dict(counter_name=None), 'missing counter_name'),
    (dict(resource_id=None, message_id=None),
     'missing resource_id, message_id'),
    (dict(counter_volume='lots'), "counter_volume 'lots' is not a number"),
    (dict(counter_volume=True), 'counter_volume True is not a number'),
    (dict(counter_volume=[1]), 'counter_volume [1] is not a number'),
    (dict(counter_volume='nan'), 'counter_volume nan is not finite'),
    (dict(counter_volume='inf'), 'counter_volume inf is not finite'),
    (dict(timestamp='yesterday'), "timestamp 'yesterday' is not ISO 8601"),
    (dict(timestamp=12), 'timestamp 12 is not ISO 8601'),
    (dict(counter_type='rate'), "type 'rate' is not one of"),
    (dict(counter_name=''), 'name is missing or not a string'),
    (dict(resource_metadata=['a']), 'resource_metadata is not a mapping'),
])
def test_invalid_meter_messages(changes, reason):
    with pytest.raises(collector.MeterMessageError, match='^' + reason
                       .replace('[', r'\[').replace(']', r'\]')):
        collector.sample_from_meter_message(signed(1, **changes))


def test_a_meter_message_must_be_an_object():
    with pytest.raises(collector.MeterMessageError,
                       match='meter message is a list, not an object'):
        collector.sample_from_meter_message([1])


# --- signatures and dropping -----------------------------------------------

def test_batch_is_stored_and_acked():
    store = FakeStore()
    ep = endpoint(store)
    batch = [notification([signed(i) for i in range(3)], 'n-a'),
             notification([signed(i) for i in range(3, 5)], 'n-b')]
    assert ep.sample(batch) == HANDLED
    assert sorted(store.samples) == sorted(make_sample(i).id
                                           for i in range(5))
    assert store.writes == 1
    assert ep.stored == 5


def test_bad_signature_is_dropped_alone(caplog):
    store = FakeStore()
    ep = endpoint(store)
    forged = signed(2, secret='not the secret')
    tampered = signed(3)
    tampered['counter_volume'] = 1000.0
    unsigned = signed(4)
    del unsigned['message_signature']
    with caplog.at_level(logging.ERROR):
        result = ep.sample([notification(
            [signed(1), forged, tampered, unsigned, signed(5)], 'n-x')])
    assert result == HANDLED
    assert sorted(store.samples) == sorted([make_sample(1).id,
                                            make_sample(5).id])
    assert ep.dropped['bad signature'] == 3
    assert (f'Meter message {make_sample(2).id} (notification n-x) '
            f'dropped: message_signature does not match') in caplog.text
    assert make_sample(3).id in caplog.text
    assert '[3 bad signature so far]' in caplog.text


def test_without_a_secret_nothing_is_checked():
    store = FakeStore()
    ep = endpoint(store, secret='')
    message = signed(1, secret='whatever')
    del message['message_signature']
    assert ep.sample([notification([message])]) == HANDLED
    assert list(store.samples) == [make_sample(1).id]


def test_invalid_meter_messages_are_dropped_with_their_reason(caplog):
    store = FakeStore()
    ep = endpoint(store)
    payload = [signed(1), signed(2, counter_volume='abc'),
               signed(3, timestamp='never'), signed(4, counter_name=None),
               'not a message', signed(5)]
    with caplog.at_level(logging.ERROR):
        assert ep.sample([notification(payload, 'n-bad')]) == HANDLED
    assert sorted(store.samples) == sorted([make_sample(1).id,
                                            make_sample(5).id])
    assert ep.dropped == {'invalid': 4}
    text = caplog.text
    assert (f'Meter message {make_sample(2).id} (notification n-bad) '
            "dropped: counter_volume 'abc' is not a number") in text
    assert "timestamp 'never' is not ISO 8601" in text
    assert 'missing counter_name' in text
    assert 'meter message is a str, not an object' in text


def test_payload_that_is_not_a_list_drops_the_notification(caplog):
    store = FakeStore()
    ep = endpoint(store)
    with caplog.at_level(logging.ERROR):
        assert ep.sample([notification('oops', 'n-str'),
                          notification([signed(1)])]) == HANDLED
    assert list(store.samples) == [make_sample(1).id]
    assert ('Notification n-str dropped: payload is a str, not a list '
            'of meter messages [1 notification dropped so far]'
            ) in caplog.text
    assert ep.dropped == {'notification': 1}


def test_a_single_meter_message_payload_is_accepted():
    store = FakeStore()
    assert endpoint(store).sample([notification(signed(1))]) == HANDLED
    assert list(store.samples) == [make_sample(1).id]


def test_batch_without_valid_samples_is_acked_without_writing():
    store = FakeStore()
    ep = endpoint(store)
    assert ep.sample([notification([signed(1, secret='x')])]) == HANDLED
    assert store.writes == 0


# --- store failures ---------------------------------------------------------

def test_store_failure_requeues_with_growing_backoff(caplog):
    store = FakeStore(failures=4)
    waits = []
    ep = endpoint(store, waits)
    batch = [notification([signed(i) for i in range(3)])]
    caplog.set_level(logging.INFO)
    results = [ep.sample(batch) for _ in range(5)]
    assert results == [REQUEUE] * 4 + [HANDLED]
    assert waits == [0.5, 1.0, 2.0, 4.0]
    assert len(store.samples) == 3
    lines = caplog.text.splitlines()
    assert len([line for line in lines if 'unavailable since' in line]) == 1
    assert ('Store unavailable since ' in caplog.text
            and ': StorageError: connection refused; batches are requeued '
                'until it answers' in caplog.text)
    assert 'storing resumed after ' in caplog.text
    assert ', 4 batches retried' in caplog.text
    # Redelivered after the write committed: nothing stored twice, said.
    assert ep.sample(batch) == HANDLED
    assert len(store.samples) == 3
    assert ep.already_stored == 3
    assert '3 of 3 samples already stored (redelivery)' in caplog.text
    store.failures = 1
    assert ep.sample(batch) == REQUEUE
    assert waits[-1] == 0.5


def test_unexplained_store_error_is_retried_then_dead_lettered(caplog):
    store = FakeStore(failures=3, error=RuntimeError('driver bug'))
    waits = []
    letters = []
    ep = collector.SampleEndpoint(store, SECRET, (0.5, 4),
                                  dead_letters=Letters(letters),
                                  max_attempts=3)
    ep.outage.wait = waits.append
    batch = [notification([signed(1)], message_id='n-odd')]
    with caplog.at_level(logging.WARNING):
        assert [ep.sample(batch) for _ in range(3)] == [
            REQUEUE, REQUEUE, HANDLED]
    assert waits == [0.5, 1.0]
    assert [(m, r) for m, r in letters] == [
        ('n-odd', 'failed 3 times: RuntimeError: driver bug')]
    assert 'Traceback' not in caplog.text
    assert ('Notification n-odd (metering) failed alone, attempt 1 of 3: '
            'RuntimeError: driver bug') in caplog.text


def test_stop_ends_the_backoff_wait():
    store = FakeStore(failures=1)
    ep = collector.SampleEndpoint(store, SECRET, (60, 60))
    ep.stop()
    assert ep.sample([notification([signed(1)])]) == REQUEUE


def test_a_notification_the_store_refuses_is_dead_lettered_alone(caplog):
    store = FakeStore(reject={make_sample(2).id})
    letters = []
    ep = collector.SampleEndpoint(store, SECRET, dead_letters=Letters(
        letters))
    batch = [notification([signed(1)], message_id='n-1'),
             notification([signed(2)], message_id='n-2'),
             notification([signed(3)], message_id='n-3')]
    with caplog.at_level(logging.ERROR):
        assert ep.sample(batch) == HANDLED
    assert sorted(store.samples) == sorted([make_sample(1).id,
                                            make_sample(3).id])
    assert letters == [('n-2', f'{make_sample(2).name}: refused by the '
                               'fake store')]
    assert 'Notification n-2 (metering) dead-lettered: ' in caplog.text


def test_a_sample_over_the_limits_dead_letters_its_notification(caplog):
    store = FakeStore()
    letters = []
    ep = collector.SampleEndpoint(store, SECRET, dead_letters=Letters(
        letters))
    batch = [notification([signed(1, resource_id='r' * 300)],
                          message_id='n-long'),
             notification([signed(2)], message_id='n-ok')]
    assert ep.sample(batch) == HANDLED
    assert list(store.samples) == [make_sample(2).id]
    assert letters == [('n-long', f'meter message {make_sample(1).id}: '
                                  'resource_id of 300 characters is longer '
                                  'than 255')]


class Letters:
    """A dead-letter queue recording (message id, reason)."""

    def __init__(self, letters):
        self.letters = letters

    def publish(self, body, reason, message_id=None, **kwargs):
        self.letters.append((message_id, reason))


# --- connecting, the service -------------------------------------------------

def test_connect_retries_while_the_store_is_unreachable(monkeypatch):
    conf = basics.make_conf(database__retry_interval=0.25)
    attempts = []
    store = FakeStore()

    def get_connection(conf):
        attempts.append(1)
        if len(attempts) < 3:
            raise storage_base.StorageError('refused')
        return store

    monkeypatch.setattr(storage, 'get_connection', get_connection)
    waits = []
    assert collector.connect(conf, threading.Event(),
                             sleep=waits.append) is store
    assert waits == [0.25, 0.25]


def test_connect_gives_up_after_max_retries(monkeypatch):
    conf = basics.make_conf(database__max_retries=2)

    def get_connection(conf):
        raise storage_base.StorageError('refused')

    monkeypatch.setattr(storage, 'get_connection', get_connection)
    waits = []
    with pytest.raises(storage_base.StorageError):
        collector.connect(conf, threading.Event(), sleep=waits.append)
    assert len(waits) == 2


def test_connect_stops_when_the_service_stops(monkeypatch):
    conf = basics.make_conf()
    stopping = threading.Event()

    def get_connection(conf):
        stopping.set()
        raise storage_base.StorageError('refused')

    monkeypatch.setattr(storage, 'get_connection', get_connection)
    assert collector.connect(conf, stopping) is None


def test_service_listens_in_batches_and_closes_everything(monkeypatch):
    conf = basics.make_conf(transport_url='fake://',
                             collector__batch_size=7,
                             collector__batch_timeout=3,
                             publisher__telemetry_secret=SECRET)
    store = FakeStore()
    monkeypatch.setattr(storage, 'get_connection', lambda conf: store)
    calls = {}

    class Listener:
        def start(self):
            calls['started'] = True

        def stop(self):
            calls['stopped'] = True

        def wait(self):
            calls['waited'] = True

    def get_listener(transport, targets, endpoints, **kwargs):
        calls.update(targets=targets, endpoints=endpoints, **kwargs)
        return Listener()

    monkeypatch.setattr(oslo_messaging, 'get_batch_notification_listener',
                        get_listener)
    svc = collector.CollectorService(0, conf)
    svc.run()
    assert calls['started']
    assert calls['batch_size'] == 7 and calls['batch_timeout'] == 3
    assert calls['allow_requeue'] is True
    (ep,) = calls['endpoints']
    assert ep.store is store and ep.secret == SECRET
    assert [t.topic for t in calls['targets']] == ['metering']
    svc.terminate()
    assert calls['stopped'] and calls['waited'] and store.closed


def test_safe_url_hides_the_password():
    assert storage.safe_url('postgresql+psycopg://u:p@ss@db:5432/c') == (
        'postgresql+psycopg://u:***@db:5432/c')
    assert storage.safe_url('sqlite:////var/x.db') == 'sqlite:////var/x.db'
    assert storage.safe_url('mongodb://u@h/db') == 'mongodb://u@h/db'


def test_collector_refuses_a_database_without_driver(tmp_path):
    config = tmp_path / 'calipso.conf'
    config.write_text('[database]\nconnection = nosuch://u:secret@h/db\n')
    with pytest.raises(SystemExit) as exit_info:
        collector_cmd.main(['--config-file', str(config)])
    message = str(exit_info.value.code)
    assert message.startswith('calipso-collector: cannot use the database '
                              'nosuch://u:***@h/db ([database] connection)')
    assert 'secret' not in message


def test_collector_starts_while_the_database_is_down(monkeypatch, caplog):
    def get_connection(conf):
        raise storage_base.StorageError('connection refused')

    monkeypatch.setattr(storage, 'get_connection', get_connection)
    # The workers retry ([database] max_retries): no exit here.
    collector_cmd.check_database(basics.make_conf(
        database__connection='postgresql://u:secret@h/db'))
    assert ('Database postgresql://u:***@h/db unreachable for now: '
            'connection refused') in caplog.text
    assert 'secret' not in caplog.text
