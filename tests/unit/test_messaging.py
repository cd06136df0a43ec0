"""The messaging layer: transport, targets, backoff, the batch listener
service every consumer builds on."""

import ast
import pathlib

import oslo_messaging
import pytest

from calipso_agent import amqp_consumer, dead_letter, messaging
from tests.helpers import basics

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_backoff_doubles_up_to_its_maximum_and_resets():
    backoff = messaging.Backoff(0.5, 3)
    assert [backoff.next_delay() for _ in range(5)] == [0.5, 1, 2, 3, 3]
    backoff.reset()
    assert backoff.next_delay() == 0.5


@pytest.mark.parametrize('pool,queues', [
    (None, {'notifications.info', 'notifications.sample'}),
    ('analytics', {'analytics'}),
])
def test_driver_binds_the_queues_oslo_messaging_would(pool, queues):
    conf = basics.make_conf(notification__exchanges=['nova', 'neutron'],
                             transport_url='rabbit://u:p@127.0.0.1:5672/')
    transport = messaging.notification_transport(conf)
    driver = transport._driver
    assert isinstance(driver, amqp_consumer.BatchedNotificationDriver)
    targets = [(t, p) for t in messaging.notification_targets(conf)
               for p in ('info', 'sample')]
    adapter = driver.listen_for_notifications(targets, pool, 100, 1)
    consumer = adapter._poll_style_listener
    assert {b.queue for b in consumer._bindings} == queues
    assert {(b.exchange, b.routing_key) for b in consumer._bindings} == {
        (e, f'notifications.{p}') for e in ('nova', 'neutron')
        for p in ('info', 'sample')}
    assert consumer._prefetch == 1000
    assert consumer._urls == ['amqp://u:p@127.0.0.1:5672/']


def test_other_transports_keep_oslo_drivers():
    conf = basics.make_conf(transport_url='fake:/')
    transport = messaging.notification_transport(conf)
    assert not isinstance(transport._driver,
                          amqp_consumer.BatchedNotificationDriver)
    conf = basics.make_conf(transport_url='rabbit://127.0.0.1/',
                             notification__batched_amqp_consumer=False)
    transport = messaging.notification_transport(conf)
    assert not isinstance(transport._driver,
                          amqp_consumer.BatchedNotificationDriver)


def test_notification_targets_are_every_topic_of_every_exchange():
    conf = basics.make_conf(notification__exchanges=['nova', 'neutron'],
                             notification__topics=['notifications', 'x'])
    targets = messaging.notification_targets(conf)
    assert [(t.exchange, t.topic) for t in targets] == [
        ('nova', 'notifications'), ('nova', 'x'),
        ('neutron', 'notifications'), ('neutron', 'x')]


def test_metering_targets_are_where_the_notifier_publisher_sends():
    conf = basics.make_conf(publisher_notifier__metering_topic='m-topic')
    (target,) = messaging.metering_targets(conf)
    assert target.topic == 'm-topic'
    assert target.exchange is None


def _private_oslo_imports(path):
    """Modules a source file imports from a private oslo package
    (``oslo_x._y``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f'{node.module}.{alias.name}'
                                     for alias in node.names]
        else:
            continue
        found.update(name for name in names if name.startswith('oslo')
                     and any(part.startswith('_')
                             for part in name.split('.')[1:]))
    return found


def test_only_the_batched_consumer_imports_private_oslo_modules():
    users = {str(path.relative_to(ROOT)): _private_oslo_imports(path)
             for package in ('calipso_agent', 'calipso_proxy', 'bench')
             for path in (ROOT / package).rglob('*.py')}
    users = {path: names for path, names in users.items() if names}
    assert users == {'calipso_agent/amqp_consumer.py': {
        'oslo_messaging._drivers', 'oslo_messaging._drivers.base'}}


@pytest.mark.parametrize('module', ['collector', 'messaging', 'delivery',
                                    'dead_letter', 'amqp_consumer'])
def test_shared_consumer_modules_import_no_consumer_of_their_own(module):
    """The collector and the modules it shares with the notification
    agent import neither the agent's package nor a publisher."""
    tree = ast.parse((ROOT / 'calipso_agent' / f'{module}.py').read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.update(f'{node.module}.{a.name}' for a in node.names)
        elif isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
    assert not {name for name in imported
                if name.startswith(('calipso_agent.notification',
                                    'calipso_agent.publisher.database'))}


class Recorder:
    def __init__(self, calls, name):
        self.calls = calls
        self.name = name

    def __getattr__(self, method):
        return lambda *args, **kwargs: self.calls.append(
            f'{self.name}.{method}')


class EchoService(messaging.BatchListenerService):
    name = 'echo'
    group = 'notification'

    def __init__(self, worker_id, conf, calls, ready=True):
        super().__init__(worker_id, conf)
        self.calls = calls
        self.ready = ready

    def prepare(self):
        self.calls.append('prepare')
        return self.ready

    def make_endpoint(self):
        assert self.delivery_options()['backoff'] == (0.25, 8.0)
        return Recorder(self.calls, 'endpoint')

    def targets(self):
        return [oslo_messaging.Target(topic='echo')]

    def pool(self):
        return 'echo-pool'

    def close(self):
        self.calls.append('close')


@pytest.fixture
def listener(monkeypatch):
    calls = []
    seen = {}

    def get_listener(transport, targets, endpoints, **kwargs):
        seen.update(targets=targets, endpoints=endpoints, **kwargs)
        return Recorder(calls, 'listener')

    monkeypatch.setattr(oslo_messaging, 'get_batch_notification_listener',
                        get_listener)
    monkeypatch.setattr(dead_letter, 'from_conf',
                        lambda conf, queue: Recorder(calls, f'dead:{queue}'))
    return calls, seen


def test_service_listens_with_its_group_options_and_closes_in_order(
        listener):
    calls, seen = listener
    conf = basics.make_conf(
        transport_url='fake://', notification__batch_size=9,
        notification__batch_timeout=4, notification__dead_letter_queue='dlq',
        notification__requeue_backoff_initial=0.25,
        notification__requeue_backoff_max=8.0)
    svc = EchoService(0, conf, calls)
    svc.run()
    assert seen['batch_size'] == 9 and seen['batch_timeout'] == 4
    assert seen['pool'] == 'echo-pool' and seen['allow_requeue'] is True
    assert seen['executor'] == 'threading'
    assert [t.topic for t in seen['targets']] == ['echo']
    assert seen['endpoints'] == [svc.endpoint]
    svc.terminate()
    assert calls == ['prepare', 'listener.start', 'endpoint.stop',
                     'listener.stop', 'listener.wait', 'close',
                     'dead:dlq.close']


def test_service_stopped_before_it_is_ready_does_not_listen(listener):
    calls, seen = listener
    svc = EchoService(0, basics.make_conf(transport_url='fake://'), calls,
                      ready=False)
    svc.run()
    assert seen == {} and svc.listener is None
    svc.terminate()
    assert calls == ['prepare', 'close']
