"""Fixtures of the functional tests that talk to the real broker."""

import pytest

from tests.helpers import bus

# Every queue an agent or collector of a test may leave on its topic.
TOPIC_QUEUES = ('audit', 'critical', 'debug', 'error', 'info', 'sample',
                'warn', 'dead')


@pytest.fixture(scope='module')
def broker():
    """Skip the module when RabbitMQ does not answer."""
    if not bus.broker_available():
        pytest.skip(f'no RabbitMQ at {bus.AMQP_URL}')


@pytest.fixture
def topic(broker):
    """A topic of the test's own; its queues are deleted afterwards."""
    name = bus.unique_topic()
    yield name
    bus.delete_queues(bus.topic_queues(name, TOPIC_QUEUES))
