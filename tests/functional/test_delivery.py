"""Poison notifications end to end: real RabbitMQ, real stores, real agent.

Each of the issue's four poisons is mixed into 200 good notifications
sent to an agent whose pipeline writes into a store (a database of the
test's own on the shared PostgreSQL server, or an SQLite file): the 200
good ones are stored exactly once without a batch being requeued, the
poison is dead-lettered (with its reason) or bounded as documented, and
the queue is left empty with nothing unacknowledged. With the limits of
``[sample_limits]`` lifted, the store itself refuses the poisons and the
agent bisects its batch to the offender.
"""

import json
import secrets

import pytest

from calipso_agent import dead_letter, storage
from calipso_agent import sample as sample_mod
from tests.helpers import basics, bus, daemons, databases, fixtures

pytestmark = [pytest.mark.functional, pytest.mark.usefixtures('broker')]

GOOD = 200
NO_LIMITS = ('[sample_limits]\nmax_id_length = 100000000\n'
             'max_metadata_depth = 100000\n'
             'max_metadata_bytes = 100000000\n')




@pytest.fixture(params=['postgresql', 'sqlite'])
def database(request, tmp_path):
    if request.param == 'sqlite':
        yield f'sqlite:///{tmp_path}/samples.sqlite'
        return
    with databases.shared_postgresql_database() as url:
        if url is None:
            pytest.skip('the shared PostgreSQL server does not answer')
        yield url


def agent_for(tmp_path, topic, database, extra='', **kwargs):
    pipeline = {'sources': [{'name': 'all', 'meters': ['*'],
                             'sinks': ['db']}],
                'sinks': [{'name': 'db', 'publishers': ['database://']}]}
    return daemons.AgentProcess(
        tmp_path / 'agent', topic, pipeline, backoff=(0.5, 4),
        extra_config=f'[database]\nconnection = {database}\n{extra}',
        **kwargs)


def stored(database):
    store = storage.get_connection(
        basics.make_conf(database__connection=database))
    try:
        return store.get_samples()
    finally:
        store.close()


def good_notifications(topic, first, count):
    resource_ids = [f'good-{first + i}' for i in range(count)]
    message_ids = bus.publish_notifications(
        topic, [fixtures.instance_exists(r) for r in resource_ids])
    return list(zip(message_ids, resource_ids, strict=True))


def nested_poison(topic, levels=1000):
    """instance exists with ``image_meta`` nested ``levels`` deep (sent
    raw: no JSON encoder writes it); its message id."""
    message_id = 'poison-nested-' + bus.unique_topic('')
    envelope = fixtures.instance_exists('poison-nested')
    message = {'message_id': message_id, 'publisher_id': 'compute.host1',
               'event_type': envelope['event_type'], 'priority': 'INFO',
               'timestamp': '2024-05-01 12:00:00.000000',
               'payload': dict(envelope['payload'], image_meta='@NESTED@')}
    text = json.dumps(message).replace(
        '"@NESTED@"', '{"base_image_ref": "img-1", "deep": '
        + basics.nested_json(levels) + '}')
    bus.publish_raw(f'{topic}.info', bus.oslo_body(text))
    return message_id


def random_text(length):
    return secrets.token_urlsafe(length)[:length]


def send_poison(topic, kind):
    if kind == 'nested_image_meta':
        return nested_poison(topic), 'poison-nested'
    # Random text: PostgreSQL compresses index entries, so a repeated
    # character would fit its index rows.
    payload = {'instance_id_3kb': {'instance_id': random_text(3000)},
               'tenant_id_3kb': {'instance_id': 'poison-tenant',
                                 'tenant_id': random_text(3000)},
               'instance_id_5mb': {'instance_id': random_text(5_000_000)}
               }[kind]
    resource_id = payload.pop('instance_id')
    [message_id] = bus.publish_notifications(
        topic, [fixtures.instance_exists(resource_id, **payload)])
    return message_id, resource_id


def expected_ids(pairs):
    return {sample_mod.sample_id(mid, name, rid) for mid, rid in pairs
            for name in fixtures.INSTANCE_METERS}


def run_poison(tmp_path, topic, database, kind, extra='', **kwargs):
    """200 good notifications with the poison in the middle, queued
    before the agent starts; returns (agent, poison id, poison resource,
    good pairs) once the 800 good samples are stored."""
    good = good_notifications(topic, 0, GOOD // 2)
    poison_id, poison_resource = send_poison(topic, kind)
    good += good_notifications(topic, GOOD // 2, GOOD // 2)
    agent = agent_for(tmp_path, topic, database, extra, **kwargs)
    agent.start()
    want = expected_ids(good)
    assert basics.wait_until(
        lambda: want <= {s.id for s in stored(database)}, 30), (
        agent.log()[-4000:])
    return agent, poison_id, poison_resource, want


def assert_drained(agent, topic):
    assert basics.wait_until(
        lambda: bus.queue_counts(f'{topic}.info')[0] == 0, 10)
    assert agent.alive(), agent.log()[-3000:]
    log = agent.log()
    agent.stop()
    assert bus.queue_counts(f'{topic}.info') == (0, 0)
    return log


def assert_no_batch_requeued(log):
    for text in ('unavailable since', 'requeued', 'failed alone',
                 'Traceback', 'Dead-lettering failed'):
        assert text not in log, log[-4000:]


def the_dead_letter(topic, poison_id):
    letters = bus.read_dead_letters(f'{topic}.dead')
    assert [h[dead_letter.MESSAGE_ID] for h, _ in letters] == [poison_id]
    return letters[0]


REASONS = {
    'instance_id_3kb': 'meter {meter}: resource_id of 3000 characters is '
                       'longer than 255',
    'tenant_id_3kb': 'meter {meter}: project_id of 3000 characters is '
                     'longer than 255',
}


@pytest.mark.parametrize('kind', ['instance_id_3kb', 'tenant_id_3kb',
                                  'instance_id_5mb', 'nested_image_meta'])
def test_poison_among_200_good_never_stalls_the_batch(tmp_path, topic,
                                                      database, kind):
    agent, poison_id, poison_resource, want = run_poison(
        tmp_path, topic, database, kind)
    samples = stored(database)
    log = assert_drained(agent, topic)
    assert_no_batch_requeued(log)
    good = [s for s in samples if s.id in want]
    assert len(good) == len(want) == GOOD * 4
    if kind == 'nested_image_meta':
        # Bounded, not refused: stored without the field, said once.
        poisoned = [s for s in samples if s.resource_id == poison_resource]
        assert len(samples) == GOOD * 4 + 4
        assert len(poisoned) == 4
        assert all('image_meta' not in s.resource_metadata
                   and s.resource_metadata['image_ref'] == 'img-1'
                   for s in poisoned)
        assert log.count(f'Notification {poison_id} ') == 1, log[-3000:]
        assert ('resource_metadata over [sample_limits], fields dropped: '
                in log)
        assert bus.read_dead_letters(f'{topic}.dead') == []
        return
    assert len(samples) == GOOD * 4
    headers, body = the_dead_letter(topic, poison_id)
    reason = headers[dead_letter.REASON]
    if kind == 'instance_id_5mb':
        assert reason.endswith('bytes, more than the 1048576 accepted')
        assert len(body) > 5_000_000
    else:
        assert reason in {REASONS[kind].format(meter=m)
                          for m in fixtures.INSTANCE_METERS}
        message = json.loads(json.loads(body)['oslo.message'])
        assert message['message_id'] == poison_id
        # The body as it came (oslo.messaging's private keys too), not
        # the notification re-encoded.
        assert '_unique_id' in message
    assert headers[dead_letter.ORIGINAL_ROUTING_KEY] == f'{topic}.info'
    assert headers[dead_letter.ORIGINAL_EXCHANGE] == 'nova'
    lines = [line for line in log.splitlines() if poison_id in line]
    assert len(lines) == 1 and 'dead-lettered' in lines[0], lines


def test_on_oslo_messaging_driver_the_poison_is_dead_lettered_re_encoded(
        tmp_path, topic):
    """Without the batched consumer the body is not at hand: the dead
    letter is the notification re-encoded as an oslo.messaging envelope,
    for the first exchange and topic, which requeues it all the same."""
    database = f'sqlite:///{tmp_path}/samples.sqlite'
    agent, poison_id, poison_resource, want = run_poison(
        tmp_path, topic, database, 'instance_id_3kb',
        batched_consumer=False)
    log = assert_drained(agent, topic)
    assert_no_batch_requeued(log)
    assert {s.id for s in stored(database)} == want
    headers, body = the_dead_letter(topic, poison_id)
    assert headers[dead_letter.REASON].endswith(
        'resource_id of 3000 characters is longer than 255')
    message = json.loads(json.loads(body)['oslo.message'])
    assert (message['message_id'], message['payload']['instance_id'],
            message['priority']) == (poison_id, poison_resource, 'INFO')
    assert (headers[dead_letter.ORIGINAL_EXCHANGE],
            headers[dead_letter.ORIGINAL_ROUTING_KEY]) == (
        'nova', f'{topic}.info')


@pytest.mark.parametrize('kind,reason', [
    ('instance_id_3kb', 'index row size'),
    ('tenant_id_3kb', 'index row size'),
])
def test_without_limits_the_store_refusal_is_bisected_to_the_poison(
        tmp_path, topic, kind, reason):
    """PostgreSQL refuses an index row over 2704 bytes (StorageDataError):
    the batch is split until the poison is alone, the others stored."""
    with databases.shared_postgresql_database() as database:
        if database is None:
            pytest.skip('the shared PostgreSQL server does not answer')
        agent, poison_id, _, want = run_poison(tmp_path, topic, database,
                                               kind, NO_LIMITS)
        samples = stored(database)
        log = assert_drained(agent, topic)
    assert_no_batch_requeued(log)
    assert {s.id for s in samples} == want
    assert len(samples) == GOOD * 4
    headers, _ = the_dead_letter(topic, poison_id)
    assert reason in headers[dead_letter.REASON]
    assert 'ProgramLimitExceeded' in headers[dead_letter.REASON]
    lines = [line for line in log.splitlines() if poison_id in line]
    assert len(lines) == 1 and 'dead-lettered' in lines[0], lines


def test_recovery_after_a_database_outage_is_measured(tmp_path, topic):
    """Notifications flow while a private PostgreSQL is crashed for 12 s
    and started again: the store is said unavailable once, resumed once,
    and the backlog is stored at full speed within seconds of the
    database answering (the backoff, up to requeue_backoff_max = 30 s,
    is cut short by the probe). Prints the measurements."""
    import threading
    import time

    import psycopg

    with databases.PrivatePostgres() as pg:
        pg.start()
        pipeline = {'sources': [{'name': 'all', 'meters': ['*'],
                                 'sinks': ['db']}],
                    'sinks': [{'name': 'db', 'publishers': ['database://']}]}
        agent = daemons.AgentProcess(
            tmp_path / 'agent', topic, pipeline, backoff=(0.5, 30),
            extra_config=f'[database]\nconnection = {pg.url}\n')
        agent.start()
        sent = []
        stop = threading.Event()

        def publish():
            index = 0
            while not stop.is_set():
                chunk = [fixtures.instance_exists(f'flow-{index + i}')
                         for i in range(50)]
                sent.extend(bus.publish_notifications(topic, chunk))
                index += 50
                time.sleep(0.2)

        def stored():
            try:
                with psycopg.connect(host='127.0.0.1', port=pg.port,
                                     user=pg.USER, dbname='postgres',
                                     connect_timeout=2) as db:
                    return db.execute('SELECT count(*) FROM sample'
                                      ).fetchone()[0]
            except psycopg.OperationalError:
                return None

        publisher = threading.Thread(target=publish)
        publisher.start()
        try:
            assert basics.wait_until(lambda: (stored() or 0) > 400, 30), (
                agent.log()[-3000:])
            assert pg.stop('immediate')
            crashed = time.monotonic()
            time.sleep(12)
            assert pg.start()
            answering = time.monotonic()
            backlog = bus.queue_counts(f'{topic}.info')[0]
            stop.set()
            publisher.join(30)
            total = len(sent) * 4
            assert basics.wait_until(lambda: stored() == total, 60, 0.05), (
                f'{stored()} of {total} stored; {agent.log()[-3000:]}')
            drained = time.monotonic()
        finally:
            stop.set()
            publisher.join(30)
        log = assert_drained(agent, topic)
    resumed = [line for line in log.splitlines()
               if 'publishing resumed after' in line]
    assert log.count('Publishing unavailable since') == 1, log[-3000:]
    assert len(resumed) == 1, log[-3000:]
    recovery = drained - answering
    print(f'\nDB down {answering - crashed:.1f} s with notifications '
          f'flowing; {backlog} notifications ready at restart; all '
          f'{len(sent)} notifications ({total} samples) stored '
          f'{recovery:.2f} s after the database answered again; '
          f'log: {resumed[0].split("] ", 1)[-1]}')
    # Before: ~24 s (the shared backoff had reached 30 s).
    assert recovery < 8, recovery


def test_collector_dead_letters_a_poison_and_stores_the_rest(tmp_path):
    """notifier:// notifications on the bus, one with a sample whose
    resource id is 3 KB: the collector stores the others and
    dead-letters that notification (queue ``<topic>.dead``)."""
    from tests.helpers.basics import make_sample

    topic = bus.unique_topic('calipso_poison_metering')
    try:
        with databases.shared_postgresql_database() as database:
            if database is None:
                pytest.skip('the shared PostgreSQL server does not answer')
            good = [make_sample(i, resource_id=f'vm-{i % 7}')
                    for i in range(300)]
            poison = make_sample(1000, resource_id=random_text(3000))
            bus.publish_samples(topic, good[:150], per_notification=50)
            bus.publish_samples(topic, [poison], per_notification=50)
            bus.publish_samples(topic, good[150:], per_notification=50)
            collector = daemons.CollectorProcess(tmp_path / 'collector',
                                                 topic, database)
            collector.start()
            try:
                want = {s.id for s in good}
                assert basics.wait_until(
                    lambda: want <= {s.id for s in stored(database)}, 30), (
                    collector.log()[-3000:])
                assert basics.wait_until(
                    lambda: bus.queue_counts(f'{topic}.sample')[0] == 0,
                    10)
                log = collector.log()
                assert collector.stop() == 0
            finally:
                collector.stop()
            assert {s.id for s in stored(database)} == want
        assert bus.queue_counts(f'{topic}.sample') == (0, 0)
        assert_no_batch_requeued(log)
        letters = bus.read_dead_letters(f'{topic}.dead')
        assert len(letters) == 1
        headers, _ = letters[0]
        assert headers[dead_letter.REASON] == (
            f'meter message {poison.id}: resource_id of 3000 characters '
            'is longer than 255')
        assert headers[dead_letter.ORIGINAL_ROUTING_KEY] == f'{topic}.sample'
    finally:
        bus.delete_queues([f'{topic}.sample', f'{topic}.dead'])


def test_dead_letters_are_listed_and_requeued_once_the_cause_is_fixed(
        tmp_path, topic):
    """A 3 KB instance id is dead-lettered; with [sample_limits]
    max_id_length raised (SQLite takes it), calipso-dead-letters puts it
    back on the bus and the agent stores it."""
    import subprocess
    import sys

    database = f'sqlite:///{tmp_path}/samples.sqlite'
    resource_id = random_text(3000)
    [poison_id] = bus.publish_notifications(
        topic, [fixtures.instance_exists(resource_id)])
    agent = agent_for(tmp_path, topic, database)
    agent.start()
    try:
        assert basics.wait_until(lambda: bus.read_dead_letters(
            f'{topic}.dead'), 15), agent.log()[-3000:]
    finally:
        agent.stop()

    def command(*args):
        return subprocess.run(
            [sys.executable, '-m', 'calipso_agent.cmd.dead_letters',
             '--config-file', agent.config_file, *args],
            capture_output=True, text=True, timeout=60, cwd=basics.REPO)

    listed = command('list')
    assert listed.returncode == 0, listed.stderr
    (line, summary) = listed.stdout.splitlines()
    assert line.startswith(f'{poison_id}\t')
    assert line.endswith('resource_id of 3000 characters is longer than '
                         '255')
    assert summary == f'1 dead letters in {topic}.dead'
    shown = command('show', '--id', poison_id)
    assert json.loads(shown.stdout)['headers'][dead_letter.MESSAGE_ID] == (
        poison_id)
    assert command('show', '--id', 'nosuch').returncode == 1

    fixed = agent_for(tmp_path / 'fixed', topic, database,
                      '[sample_limits]\nmax_id_length = 4000\n')
    fixed.start()
    try:
        requeued = command('requeue', '--id', poison_id)
        assert requeued.returncode == 0, requeued.stderr
        assert requeued.stdout.splitlines() == [
            f'requeued {poison_id}', f'1 dead letters requeued from '
                                     f'{topic}.dead']
        want = expected_ids([(poison_id, resource_id)])
        assert basics.wait_until(
            lambda: want <= {s.id for s in stored(database)}, 15), (
            fixed.log()[-3000:])
        assert bus.read_dead_letters(f'{topic}.dead') == []
    finally:
        fixed.stop()
    assert bus.queue_counts(f'{topic}.info') == (0, 0)


def test_wrong_types_and_oversize_metadata_are_bounded_as_documented(
        tmp_path, topic):
    """``vcpus: true`` makes no vcpus sample (the other meters are
    stored); nova ``metadata`` that is not a mapping is left out of
    user_metadata; a 200 KB ``display_name`` is dropped from the
    resource_metadata. One log line per notification, naming it."""
    database = f'sqlite:///{tmp_path}/samples.sqlite'
    boolean, not_a_dict, oversize = bus.publish_notifications(topic, [
        fixtures.instance_exists('vm-bool', vcpus=True),
        fixtures.instance_exists('vm-meta', metadata='not a dict'),
        fixtures.instance_exists('vm-big', display_name='n' * 200_000)])
    agent = agent_for(tmp_path, topic, database)
    agent.start()
    assert basics.wait_until(lambda: len(stored(database)) >= 11, 15), (
        agent.log()[-3000:])
    log = assert_drained(agent, topic)
    samples = stored(database)
    by_resource = {}
    for s in samples:
        by_resource.setdefault(s.resource_id, {})[s.name] = s
    assert sorted(by_resource['vm-bool']) == sorted(
        set(fixtures.INSTANCE_METERS) - {'vcpus'})
    assert sorted(by_resource['vm-meta']) == sorted(fixtures.INSTANCE_METERS)
    assert all('user_metadata' not in s.resource_metadata
               for s in by_resource['vm-meta'].values())
    assert sorted(by_resource['vm-big']) == sorted(fixtures.INSTANCE_METERS)
    assert all('display_name' not in s.resource_metadata
               and s.resource_metadata.get('host')
               for s in by_resource['vm-big'].values())
    lines = {mid: [x for x in log.splitlines() if mid in x]
             for mid in (boolean, not_a_dict, oversize)}
    assert all(len(found) == 1 for found in lines.values()), lines
    assert ('meter vcpus not built: volume: True is a boolean, not a '
            'number') in lines[boolean][0]
    assert "is a str, not a mapping: left out" in lines[not_a_dict][0]
    assert ('resource_metadata over [sample_limits], fields dropped: '
            'display_name (4 of 4 samples)') in lines[oversize][0]
    assert bus.read_dead_letters(f'{topic}.dead') == []
