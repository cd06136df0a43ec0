"""The subscription publisher in this process: real UDP, HTTP and AMQP
receivers, a real SQLite store holding the subscriptions; a dead target
holds nothing but itself."""

import time

import msgpack
import pytest

from calipso_agent import storage, subscriptions
from calipso_agent.publisher import utils
from tests.helpers import bus, pubsub
from tests.helpers.basics import (
    load_publisher,
    make_conf,
    make_sample,
    wait_until,
)
from tests.helpers.bus import RABBIT_URL, TELEMETRY_SECRET
from tests.helpers.receivers import (
    HangingHTTPServer,
    SampleHTTPServer,
    UDPCollector,
)

pytestmark = pytest.mark.functional

PROJECTS = ['p-a', 'p-b']


@pytest.fixture
def setup(tmp_path):
    conf = make_conf(database__connection=f'sqlite:///{tmp_path}/s.db',
                     publisher__telemetry_secret=TELEMETRY_SECRET,
                     transport_url=RABBIT_URL,
                     subscription__refresh_interval=0.2,
                     subscription__counter_interval=0.2,
                     subscription__http_timeout=0.5,
                     subscription__http_max_retries=1,
                     subscription__http_retry_backoff=0.05,
                     # What is timed here is the targets, not how the
                     # machine's other loads share the CPU with a niced
                     # delivery process.
                     subscription__delivery_niceness=0)
    store = storage.get_connection(conf)
    channel = pubsub.make_channel(store, PROJECTS)
    publisher = load_publisher(conf, 'subscription://')
    yield conf, store, channel, publisher
    publisher.close()
    store.close()


def subscribe(store, channel, publisher=None, **body):
    """Store a subscription; with ``publisher``, wait until it is in
    effect there."""
    body.setdefault('sub_info', 'cpu')
    record = pubsub.store_subscription(store, channel, PROJECTS, body)
    if publisher is not None:
        version = store.subscriptions_version()
        assert wait_until(lambda: publisher.version == version, 10)
    return record


def test_udp_gets_cord_datagrams_of_its_projects_only(setup):
    _, store, channel, publisher = setup
    udp = UDPCollector()
    try:
        subscribe(store, channel, publisher, app_id='a', target=udp.url,
                  query=[{'field': 'volume', 'op': 'ge', 'value': 2}])
        samples = [make_sample(i, project_id=p)
                   for i, p in enumerate(['p-a', 'p-x', 'p-b', 'p-a',
                                          'p-x'])]
        samples.append(make_sample(9, name='memory', project_id='p-a'))
        publisher.publish_samples(samples)
        assert wait_until(lambda: len(udp.messages) >= 2, 10)
        wanted = [s for s in samples[:5]
                  if s.project_id in PROJECTS and s.volume >= 2]
        assert sorted(m['resource_id'] for m in udp.messages) == sorted(
            s.resource_id for s in wanted)
        # CORD's wire: the udp:// publisher's datagram, signed.
        by_id = {s.id: s for s in wanted}
        for message in udp.messages:
            expected = msgpack.unpackb(utils.datagram(
                by_id[message['message_id']], TELEMETRY_SECRET), raw=False)
            assert message == expected
            assert utils.verify_signature(message, TELEMETRY_SECRET)
    finally:
        udp.close()


def test_a_killed_delivery_process_is_started_again(setup):
    _, store, channel, publisher = setup
    udp = UDPCollector()
    try:
        subscribe(store, channel, publisher, app_id='a', target=udp.url)
        batches = [[make_sample(100 * batch + i, project_id='p-a')
                    for i in range(100)] for batch in range(3)]
        publisher.publish_samples(batches[0])
        assert wait_until(lambda: len(udp.messages) == 100, 10)
        first = publisher._delivery._process
        first.kill()
        first.wait(10)
        # Written to the dead pipe or queued: either way the process
        # comes back and the later batches arrive.
        publisher.publish_samples(batches[1])
        assert wait_until(
            lambda: publisher._delivery._process is not first, 10)
        publisher.publish_samples(batches[2])
        assert wait_until(lambda: {m['message_id'] for m in udp.messages}
                          >= {s.id for s in batches[2]}, 10)
    finally:
        udp.close()


def test_a_udp_application_that_is_down_shows_in_the_counters(setup):
    """Its closed port is reported by the kernel at the next datagram:
    counted as dropped with the error, not all as delivered."""
    _, store, channel, publisher = setup
    udp = UDPCollector()
    udp.close()
    sub = subscribe(store, channel, publisher, app_id='gone',
                    target=udp.url)

    def counters():
        return store.get_subscription_counters().get(sub['id'], {})

    for batch in range(20):
        publisher.publish_samples([make_sample(10 * batch + i,
                                               project_id='p-a')
                                   for i in range(10)])
        if counters().get('dropped'):
            break
        time.sleep(0.1)
    assert wait_until(lambda: counters().get('dropped', 0) > 0, 10), (
        counters())
    assert 'refused' in counters()['last_error'].lower()


def test_change_takes_effect_and_unsubscribe_stops(setup):
    _, store, channel, publisher = setup
    udp, marker = UDPCollector(), UDPCollector()
    try:
        publisher.publish_samples([make_sample(0, project_id='p-a')])
        record = subscribe(store, channel, publisher, app_id='late',
                           target=udp.url)
        publisher.publish_samples([make_sample(1, project_id='p-a')])
        assert wait_until(lambda: udp.messages, 5)
        assert [m['resource_id'] for m in udp.messages] == ['vm-1']
        store.delete_subscription(record['id'])
        subscribe(store, channel, publisher, app_id='marker',
                  target=marker.url, sub_info='memory')
        publisher.publish_samples([make_sample(i, project_id='p-a')
                                   for i in range(10, 20)])
        publisher.publish_samples([make_sample(99, name='memory',
                                               project_id='p-a')])
        # Delivered in order: once the marker is there, the samples
        # before it would have been too.
        assert wait_until(lambda: marker.messages, 10)
        assert [m['resource_id'] for m in udp.messages] == ['vm-1']
    finally:
        udp.close()
        marker.close()


def test_a_project_taken_from_the_channel_is_no_longer_delivered(setup):
    _, store, channel, publisher = setup
    udp = UDPCollector()
    try:
        subscribe(store, channel, publisher, app_id='both', target=udp.url)
        store.update_channel(channel, {'tenant_list': ['p-a']})
        assert wait_until(lambda: publisher.version is not None and
                          publisher._channels[channel] == {'p-a'}, 10)
        publisher.publish_samples([make_sample(1, project_id='p-b'),
                                   make_sample(2, project_id='p-a')])
        assert wait_until(lambda: udp.messages, 10)
        publisher.publish_samples([make_sample(3, project_id='p-a')])
        assert wait_until(lambda: len(udp.messages) == 2, 10)
        assert [m['resource_id'] for m in udp.messages] == ['vm-2', 'vm-3']
    finally:
        udp.close()


def test_dead_http_target_holds_only_itself(setup):
    _, store, channel, publisher = setup
    live = SampleHTTPServer()
    dead = HangingHTTPServer()
    try:
        live_sub = subscribe(store, channel, publisher, app_id='live',
                             target=f'http://u:secret@127.0.0.1:'
                                    f'{live.port}/hook')
        dead_sub = subscribe(store, channel, publisher, app_id='dead',
                             target=dead.url)
        samples = [make_sample(i, project_id='p-a')
                   for i in range(15000)]
        # The dead target's queue (10000) overflows; the live one gets
        # every sample, batch after batch. The first batch also waits for
        # the delivery process to be ready (seconds on a loaded machine).
        # A POST that timed out after the target took it is sent again:
        # samples are counted by id.
        def live_ids():
            return {s['id'] for s in live.samples()}

        for end in range(1000, len(samples) + 1, 1000):
            publisher.publish_samples(samples[end - 1000:end])
            assert wait_until(
                lambda end=end: len(live_ids()) == end,
                60 if end == 1000 else 20), (end, len(live_ids()))
        assert live_ids() == {s.id for s in samples}

        def counters():
            return store.get_subscription_counters()

        assert wait_until(lambda: counters().get(dead_sub['id'], {}).get(
            'dropped', 0) >= len(samples) - 10000, 20)
        assert counters()[dead_sub['id']]['delivered'] == 0
        assert 'secret' not in str(counters())
        assert wait_until(lambda: counters().get(live_sub['id'], {}).get(
            'delivered') == len(samples), 10)
        assert counters()[live_sub['id']]['dropped'] == 0
    finally:
        dead.close()
        live.close()


def test_amqp_target_keeps_samples_on_its_queue(setup):
    _, store, channel, publisher = setup
    record = subscribe(store, channel, publisher, app_id='queue',
                       target='amqp://')
    queue = subscriptions.amqp_queue(record['id'])
    try:
        publisher.publish_samples([make_sample(i, project_id='p-b')
                                   for i in range(1, 6)] +
                                  [make_sample(9, project_id='p-x')])
        assert wait_until(lambda: store.get_subscription_counters().get(
            record['id'], {}).get('delivered') == 5, 10)
        got = pubsub.read_queue(queue)
        assert sorted(m['resource_id'] for m in got) == [
            f'vm-{i}' for i in range(1, 6)]
    finally:
        store.delete_subscription(record['id'])
        bus.delete_queues([queue])
