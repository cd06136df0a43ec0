"""The notification agent end to end: a real subprocess, real RabbitMQ.

Every test has its own topic (so its own queues, deleted at the end) on the
shared broker, sends notifications with oslo.messaging's Notifier as nova
and neutron do, runs ``python -m calipso_agent.cmd.agent_notification``
and reads what the publishers delivered.
"""

import json
import os
import time

import pytest

from calipso_agent import sample as sample_mod
from calipso_agent.publisher import utils as publisher_utils
from tests.helpers import basics, bus, daemons, fixtures, receivers

pytestmark = [pytest.mark.functional, pytest.mark.usefixtures('broker')]

GOLDEN_FIXTURES = (
    # (fixture, exchange it is sent on)
    (fixtures.INSTANCE_EXISTS, 'nova'),
    ('nova_legacy__ceilometer-tests__metrics_update', 'nova'),
    ('neutron__ceilometer-tests__l3_meter', 'neutron'),
)
VCPE = 'vcpe__cord-sample-publisher__vcpe'




@pytest.fixture
def agents(tmp_path, topic, consumer):
    """Makes AgentProcess objects for this test; all are stopped (the
    whole process group killed if need be) at teardown."""
    made = []

    def make(pipeline, **kwargs):
        workdir = tmp_path / f'agent{len(made)}'
        kwargs.setdefault('batched_consumer', consumer == 'batched')
        agent = daemons.AgentProcess(workdir, topic, pipeline, **kwargs)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.stop()


@pytest.fixture
def consumer():
    """Which AMQP consumer the agent runs: calipso's batched consumer (the
    default); the delivery tests also run on oslo.messaging's own rabbit
    driver (``both_consumers``)."""
    return 'batched'


both_consumers = pytest.mark.parametrize('consumer', ['batched', 'oslo'])


def file_pipeline(path):
    return {'sources': [{'name': 'all', 'meters': ['*'], 'sinks': ['file']}],
            'sinks': [{'name': 'file', 'publishers': [f'file://{path}']}]}


def info_ready(topic):
    counts = bus.queue_counts(f'{topic}.info')
    return counts[0] if counts else None


def expected_ids(message_ids, resource_ids, meters=fixtures.INSTANCE_METERS):
    return {sample_mod.sample_id(mid, name, rid)
            for mid, rid in zip(message_ids, resource_ids, strict=True)
            for name in meters}


def assert_drained_and_acked(agent, topic):
    """The info queue is empty with the agent running, and still empty
    once it stopped: nothing was left unacknowledged either (unacked
    messages go back to the queue when their consumer goes away)."""
    assert basics.wait_until(lambda: info_ready(topic) == 0, 10), (
        f'{info_ready(topic)} notifications still ready')
    assert agent.alive(), agent.log()[-3000:]
    agent.stop()
    assert bus.queue_counts(f'{topic}.info') == (0, 0)


@both_consumers
def test_file_and_udp_publishers_get_the_golden_samples(agents, topic,
                                                         tmp_path):
    out = tmp_path / 'samples.jsonl'
    udp = receivers.UDPCollector()
    try:
        agent = agents({
            'sources': [{'name': 'all', 'meters': ['*'],
                         'sinks': ['to_file', 'to_udp']}],
            'sinks': [{'name': 'to_file', 'publishers': [f'file://{out}']},
                      {'name': 'to_udp', 'publishers': [udp.url]}]})
        agent.start()
        sent = {}
        for name, exchange in GOLDEN_FIXTURES:
            envelope = fixtures.load_envelope(name)
            (message_id,) = bus.publish_notifications(
                topic, [envelope], exchange=exchange, keep_timestamps=True)
            sent[message_id] = (name, envelope)
        total = sum(len(fixtures.load_expected(name))
                    for name, _ in GOLDEN_FIXTURES)
        assert total == 15

        assert basics.wait_until(
            lambda: (basics.count_lines(out) >= total
                     and len(udp.messages) >= total), 20), (
            f'{basics.count_lines(out)} lines in the file, '
            f'{len(udp.messages)} datagrams; want {total} of each; log:\n'
            f'{agent.log()[-3000:]}')
        time.sleep(1.5)  # more than the batch timeout: no extra samples
        samples = basics.read_jsonl(out)
        messages = list(udp.messages)
    finally:
        udp.close()
    assert len(samples) == total
    assert len(messages) == total
    assert not udp.errors

    by_message = {}
    for sample in samples:
        by_message.setdefault(sample['message_id'], []).append(sample)
    assert set(by_message) == set(sent)
    for message_id, (name, envelope) in sent.items():
        got = by_message[message_id]
        assert fixtures.sample_differences(
            got, fixtures.load_expected(name), envelope['ctxt']) == [], name
        for sample in got:
            assert sample['id'] == sample_mod.sample_id(
                message_id, sample['name'], sample['resource_id']), sample

    # The same samples over UDP, in Ceilometer's signed meter format.
    by_id = {sample['id']: sample for sample in samples}
    assert len(by_id) == total
    for message in messages:
        assert publisher_utils.verify_signature(
            message, bus.TELEMETRY_SECRET), message
        sample = by_id.pop(message['message_id'])
        assert message['counter_name'] == sample['name']
        assert message['resource_id'] == sample['resource_id']
        assert message['counter_volume'] == sample['volume']
        assert message['counter_type'] == sample['type']
        assert message['timestamp'] == sample['timestamp']
    assert by_id == {}
    assert_drained_and_acked(agent, topic)


@both_consumers
def test_http_receiver_down_keeps_notifications_queued(agents, topic):
    port = basics.free_port()
    pipeline = {
        'sources': [{'name': 'all', 'meters': ['*'], 'sinks': ['http']}],
        'sinks': [{'name': 'http', 'publishers': [
            f'http://127.0.0.1:{port}/v1/samples?timeout=2']}]}
    count = 20
    resource_ids = [f'http-vm-{i:02d}' for i in range(count)]
    message_ids = bus.publish_notifications(
        topic, [fixtures.instance_exists(rid) for rid in resource_ids])
    want = {(name, rid) for rid in resource_ids
            for name in fixtures.INSTANCE_METERS}

    # Receiver down: the agent keeps retrying and acknowledges nothing.
    first = agents(pipeline)
    first.start()
    assert first.wait_for_log('Publishing unavailable since', 15), (
        first.log()[-3000:])
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        assert first.alive(), first.log()[-3000:]
        assert bus.queue_counts(f'{topic}.info')[1] == 1
        time.sleep(0.5)
    log = first.log()
    assert 'Connection refused' in log or 'Max retries' in log, log[-3000:]
    assert first.stop() == 0
    # Every notification is still there once the consumer has gone.
    assert bus.queue_counts(f'{topic}.info') == (count, 0)

    second = agents(pipeline)
    second.start()
    assert second.wait_for_log('Publishing unavailable since', 15), (
        second.log()[-3000:])
    server = receivers.SampleHTTPServer(port)
    try:
        def delivered():
            return {(s['name'], s['resource_id'])
                    for s in server.samples()} >= want

        assert basics.wait_until(delivered, 20), (
            f'{len(server.samples())} samples received; log:\n'
            f'{second.log()[-3000:]}')
        assert_drained_and_acked(second, topic)
        got = server.samples()
    finally:
        server.close()
    assert {(s['name'], s['resource_id']) for s in got} == want
    assert {s['id'] for s in got} == expected_ids(message_ids, resource_ids)


@both_consumers
def test_sigkill_loses_no_sample(agents, topic, tmp_path):
    out = tmp_path / 'samples.jsonl'
    count = 5000
    total = count * len(fixtures.INSTANCE_METERS)
    resource_ids = [f'kill-vm-{i:05d}' for i in range(count)]
    message_ids = bus.publish_notifications(
        topic, (fixtures.instance_exists(rid) for rid in resource_ids))
    assert bus.queue_counts(f'{topic}.info') == (count, 0)
    want = expected_ids(message_ids, resource_ids)
    assert len(want) == total

    agent = agents(file_pipeline(out))
    agent.start(wait_ready=False)
    lines_at_kill = basics.wait_until(
        lambda: (basics.count_lines(out) >= total // 5
                 or not agent.alive()) and basics.count_lines(out),
        30, interval=0.005)
    agent.kill()
    size_at_kill = os.path.getsize(out) if lines_at_kill else 0
    # SIGKILL can cut a write at a page: the line it tore, if any (the
    # next agent ends it, and it stays one unreadable line).
    torn = (out.read_bytes()[:size_at_kill].rpartition(b'\n')[2]
            if size_at_kill else b'')
    first_run = basics.read_jsonl(out)
    assert 0 < len(first_run) < total, (
        f'{len(first_run)} of {total} samples written before SIGKILL; '
        f'log:\n{agent.log()[-3000:]}')
    # Acknowledged only once written: whatever is not complete in the
    # file is back in the queue.
    complete = {}
    for sample in first_run:
        complete.setdefault(sample['message_id'], set()).add(sample['name'])
    complete = sum(1 for names in complete.values()
                   if len(names) == len(fixtures.INSTANCE_METERS))
    assert basics.wait_until(
        lambda: bus.queue_counts(f'{topic}.info')[1] == 0, 10)
    ready = info_ready(topic)
    assert ready >= count - complete, (ready, complete)
    assert ready < count, 'nothing was acknowledged before SIGKILL'

    agent.start(wait_ready=False)

    def all_ids_written():
        return {s['id'] for s in basics.read_jsonl(out, [])} >= want

    assert basics.wait_until(all_ids_written, 40, interval=0.5), (
        f'{len(want - {s["id"] for s in basics.read_jsonl(out, [])})} '
        f'samples missing; log:\n{agent.log()[-3000:]}')
    assert_drained_and_acked(agent, topic)

    bad_lines = []
    samples = basics.read_jsonl(out, bad_lines)
    assert [line for _, line in bad_lines] == (
        [torn[:200]] if torn else []), 'corrupt lines in the file output'
    assert {s['id'] for s in samples} == want
    assert len(samples) >= total
    pair_ids = {}
    for sample in samples:
        pair_ids.setdefault((sample['name'], sample['resource_id']),
                            set()).add(sample['id'])
    assert len(pair_ids) == total
    assert all(len(ids) == 1 for ids in pair_ids.values())
    assert {s['id'] for s in samples} >= {s['id'] for s in first_run}
    with open(out, 'rb') as handle:
        handle.seek(size_at_kill)
        second_run = [json.loads(line) for line in handle if line.strip()]
    assert second_run
    print(f'SIGKILL after {len(first_run)} of {total} samples; '
          f'{ready} notifications back in the queue; '
          f'{len(samples) - total} duplicate lines in the end')
    for sample in second_run:
        assert pair_ids[(sample['name'], sample['resource_id'])] == {
            sample['id']}


MALFORMED_BODIES = (
    # (body, content type)
    (b'\x00 not JSON at all {', 'application/json'),
    (b'[1, 2, 3]', 'application/json'),
    (b'{"hello": "world"}', 'application/json'),
    (json.dumps({'oslo.version': '2.0',
                 'oslo.message': '{"event_type": broken'}).encode(),
     'application/json'),
    (b'binary \xff\xfe payload', 'application/octet-stream'),
)


def test_malformed_messages_are_dropped_and_logged(agents, topic,
                                                    tmp_path):
    out = tmp_path / 'samples.jsonl'
    agent = agents(file_pipeline(out))
    agent.start()
    for body, content_type in MALFORMED_BODIES:
        bus.publish_raw(f'{topic}.info', body,
                            content_type=content_type)
    message_ids = bus.publish_notifications(
        topic, [fixtures.instance_exists('after-garbage')])

    assert basics.wait_until(lambda: basics.count_lines(out) >= 4, 15), (
        agent.log()[-4000:])
    assert agent.alive()
    samples = basics.read_jsonl(out)
    assert {s['id'] for s in samples} == expected_ids(message_ids,
                                                      ['after-garbage'])
    log = agent.log()
    assert log.count(' dead-lettered (delivery ') == len(
        MALFORMED_BODIES), log
    assert 'undecodable: the message has no event_type' in log
    assert 'Exception during messages handling' not in log
    assert 'unavailable since' not in log
    assert_drained_and_acked(agent, topic)
    # Dead-lettered as they came, with where they came from.
    letters = bus.read_dead_letters(f'{topic}.dead')
    assert [body for _, body in letters] == [
        body for body, _ in MALFORMED_BODIES]
    assert {h['x-calipso-original-routing-key'] for h, _ in letters} == {
        f'{topic}.info'}
    assert all(h['x-calipso-reason'].startswith('undecodable: ')
               for h, _ in letters)


def test_notification_with_null_priority_does_not_block_the_queue(
        agents, topic, tmp_path):
    out = tmp_path / 'samples.jsonl'
    agent = agents(file_pipeline(out))
    agent.start()
    poison = {'message_id': 'poison-1', 'publisher_id': 'compute.host1',
              'event_type': 'compute.instance.exists', 'priority': None,
              'payload': fixtures.instance_exists('poisoned')['payload'],
              'timestamp': '2024-05-01 12:00:00'}
    bus.publish_raw(f'{topic}.info', json.dumps(
        {'oslo.version': '2.0', 'oslo.message': json.dumps(poison)}).encode())
    message_ids = bus.publish_notifications(
        topic, [fixtures.instance_exists('behind-the-poison')])
    assert basics.wait_until(lambda: basics.count_lines(out) >= 4, 15), (
        f'the valid notification was not processed; the batch failed '
        f'{agent.log().count("Exception during messages handling")} '
        f'times; log:\n{agent.log()[-2000:]}')
    assert {s['id'] for s in basics.read_jsonl(out)} == expected_ids(
        message_ids, ['behind-the-poison'])
    assert_drained_and_acked(agent, topic)


def test_unprocessable_notification_is_dropped_alone(agents, topic,
                                                     tmp_path):
    out = tmp_path / 'samples.jsonl'
    vcpe = fixtures.load_envelope(VCPE)
    del vcpe['payload']['vcpe_id']
    notifications = [
        # No resource id: no meter can be built.
        fixtures.instance_exists(None),
        # The vSG endpoint raises: the dispatcher drops the notification.
        vcpe,
        # One meter (vcpus) cannot be built, the three others are.
        fixtures.instance_exists('partial-vm', vcpus='lots'),
        fixtures.instance_exists('valid-vm'),
    ]
    # Queued before the agent starts: one batch.
    no_id, bad_vcpe, partial, valid = bus.publish_notifications(
        topic, notifications)
    agent = agents(file_pipeline(out))
    agent.start()
    want = (expected_ids([valid], ['valid-vm'])
            | expected_ids([partial], ['partial-vm'],
                           ('disk.ephemeral.size', 'disk.root.size',
                            'memory')))
    assert basics.wait_until(lambda: basics.count_lines(out) >= 7, 15), (
        agent.log()[-4000:])
    time.sleep(1.5)
    assert {s['id'] for s in basics.read_jsonl(out)} == want
    assert basics.count_lines(out) == 7
    log = agent.log()
    # One line per notification, however many meters it fails.
    (no_id_line,) = [x for x in log.splitlines() if no_id in x]
    assert (f'Notification {no_id} (compute.instance.exists): meter '
            in no_id_line), no_id_line
    for meter in fixtures.INSTANCE_METERS:
        assert f'meter {meter} not built: resource_id' in no_id_line
    assert (f'Notification {bad_vcpe} (vcpe) dead-lettered: no sample can '
            f'be made of it: NotificationError: payload has no vcpe_id'
            in log), log
    assert (f'Notification {partial} (compute.instance.exists): meter '
            f"vcpus not built: volume: 'lots' is not a number" in log), log
    assert valid not in log
    assert 'unavailable since' not in log
    assert [h['x-calipso-message-id'] for h, _ in bus.read_dead_letters(
        f'{topic}.dead')] == [bad_vcpe]
    assert_drained_and_acked(agent, topic)


def test_error_priority_on_info_queue_is_acked_and_ignored(agents, topic,
                                                           tmp_path):
    """A notification labelled ERROR arriving on ``<topic>.info`` (the
    agent's own queue): acknowledged, no samples."""
    out = tmp_path / 'samples.jsonl'
    agent = agents(file_pipeline(out))
    agent.start()
    envelope = fixtures.instance_exists('error-vm')
    message = {'message_id': 'error-on-info', 'priority': 'ERROR',
               'publisher_id': 'compute.host1',
               'event_type': envelope['event_type'],
               'payload': envelope['payload'],
               'timestamp': '2024-05-01 12:00:00'}
    bus.publish_raw(f'{topic}.info', json.dumps(
        {'oslo.version': '2.0', 'oslo.message': json.dumps(message)}).encode())
    (valid,) = bus.publish_notifications(
        topic, [fixtures.instance_exists('info-vm')])
    assert basics.wait_until(lambda: basics.count_lines(out) >= 4, 15)
    time.sleep(1.5)
    assert {s['id'] for s in basics.read_jsonl(out)} == expected_ids(
        [valid], ['info-vm'])
    assert_drained_and_acked(agent, topic)


@both_consumers
def test_error_priority_notifications_are_acked(agents, topic, tmp_path):
    out = tmp_path / 'samples.jsonl'
    agent = agents(file_pipeline(out))
    agent.start()
    bus.publish_notifications(
        topic, [fixtures.instance_exists(f'error-vm-{i}') for i in range(3)],
        priority='error')
    (valid,) = bus.publish_notifications(
        topic, [fixtures.instance_exists('info-vm')])
    assert basics.wait_until(lambda: basics.count_lines(out) >= 4, 15)
    assert {s['id'] for s in basics.read_jsonl(out)} == expected_ids(
        [valid], ['info-vm'])
    try:
        assert basics.wait_until(
            lambda: bus.queue_counts(f'{topic}.error') == (0, 1), 5), (
            f'{topic}.error: (ready, consumers) = '
            f'{bus.queue_counts(f"{topic}.error")}')
    finally:
        agent.stop()
    assert bus.queue_counts(f'{topic}.error') == (0, 0)
    assert basics.count_lines(out) == 4


def test_broker_closing_the_connection_loses_nothing(agents, topic):
    """RabbitMQ drops the consumer's connection mid-stream: the consumer
    reconnects, the broker redelivers what was not acknowledged, and every
    sample arrives (a slow HTTP receiver keeps the stream going)."""
    count = 600
    resource_ids = [f'conn-vm-{i:05d}' for i in range(count)]
    message_ids = bus.publish_notifications(
        topic, (fixtures.instance_exists(rid) for rid in resource_ids))
    want = expected_ids(message_ids, resource_ids)
    receiver = receivers.SampleHTTPServer(delay=0.3)
    try:
        agent = agents(
            {'sources': [{'name': 'all', 'meters': ['*'],
                          'sinks': ['http']}],
             'sinks': [{'name': 'http', 'publishers': [
                 f'http://127.0.0.1:{receiver.port}/samples']}]},
            batch_size=20, extra_config='[notification]\nprefetch = 20\n')
        agent.start()
        assert basics.wait_until(lambda: receiver.samples(), 30)
        group = os.getpgid(agent.process.pid)
        pids = {int(p) for p in os.listdir('/proc') if p.isdigit()
                and _process_group(int(p)) == group}
        assert bus.close_broker_connections(
            'calipso notification consumer', pids) == 1
        assert len({s['id'] for s in receiver.samples()}) < len(want)

        def delivered():
            return {s['id'] for s in receiver.samples()}

        assert basics.wait_until(lambda: delivered() >= want, 60,
                                  interval=0.5), agent.log()[-3000:]
        assert delivered() == want
    finally:
        receiver.close()
    log = agent.log()
    assert 'AMQP connection to amqp://127.0.0.1:5672/ failed' in log, log
    assert log.count('Consuming notifications from') == 2, log
    assert_drained_and_acked(agent, topic)


def _process_group(pid):
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def test_workers_share_the_queues(agents, topic, tmp_path):
    """Two worker processes consume the same queues (competing consumers):
    every sample arrives exactly once."""
    out = tmp_path / 'samples.jsonl'
    count = 2000
    resource_ids = [f'worker-vm-{i:05d}' for i in range(count)]
    message_ids = bus.publish_notifications(
        topic, (fixtures.instance_exists(rid) for rid in resource_ids))
    agent = agents(file_pipeline(out), workers=2, batch_size=50,
                   extra_config='[notification]\nprefetch = 50\n')
    agent.start()
    want = expected_ids(message_ids, resource_ids)
    assert basics.wait_until(
        lambda: basics.count_lines(out) >= len(want), 60), agent.log()[-2000:]
    assert basics.wait_until(
        lambda: bus.queue_counts(f'{topic}.info') == (0, 2), 10)
    samples = basics.read_jsonl(out)
    assert {s['id'] for s in samples} == want
    assert len(samples) == len(want)
    assert agent.log().count('Consuming notifications from') == 2
    assert_drained_and_acked(agent, topic)
