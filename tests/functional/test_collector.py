"""The collector end to end: real RabbitMQ, real subprocesses, real stores.

Every test has its own metering topic (so its own ``<topic>.sample`` queue
on the control exchange, deleted at the end). The fault test runs a
PostgreSQL server of its own on a spare port and crashes it mid-stream;
the two-worker test uses a database of its own (``calipso_test_<hex>``,
dropped at the end) on the shared PostgreSQL server
(``CALIPSO_TEST_SHARED_POSTGRESQL_URL``) and touches nothing else there.
"""

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
import uuid

import psycopg
import pytest
import sqlalchemy as sa
from oslo_log import log as oslo_log

from calipso_agent import sample as sample_mod
from calipso_agent import storage
from calipso_agent.cmd import storage as storage_cmd
from calipso_agent.publisher import utils as publisher_utils
from calipso_agent.storage import base as storage_base
from tests.helpers import basics, bus, daemons, databases, fixtures
from tests.helpers.basics import make_sample

pytestmark = [pytest.mark.functional, pytest.mark.usefixtures('broker')]

SHARED_POSTGRESQL_URL = os.environ.get(
    'CALIPSO_TEST_SHARED_POSTGRESQL_URL',
    'postgresql://root@127.0.0.1:5432/postgres')


@pytest.fixture
def metering_topic():
    name = bus.unique_topic('calipso_metering')
    yield name
    bus.delete_queues([f'{name}.sample', f'{name}.dead'])


@pytest.fixture
def processes():
    """Collects the AgentProcess/CollectorProcess objects of a test; all
    are stopped (their process groups killed if need be) at teardown."""
    made = []
    yield made.append
    for process in made:
        process.stop()


def store_of(url):
    return storage.get_connection(
        basics.make_conf(database__connection=url))


def synced_sqlite(tmp_path):
    url = f'sqlite:///{tmp_path}/samples.sqlite'
    storage_cmd.sync(basics.make_conf(database__connection=url))
    return url


def stored_samples(url):
    store = store_of(url)
    try:
        return store.get_samples()
    finally:
        store.close()


def pg_params(pg):
    return dict(host='127.0.0.1', port=pg.port, user=pg.USER,
                dbname='postgres')


def stored_count(store, meter):
    """How many samples of ``meter`` the store holds (counted by it)."""
    stats = store.get_statistics(storage_base.SampleFilter(meter=meter))
    return sum(s.count for s in stats)


def assert_stored_once(store, meter, want):
    """The samples of ``meter`` are those of ids ``want``, each once (as
    listed and as counted by the store)."""
    ids = [s.id for s in store.get_samples(
        storage_base.SampleFilter(meter=meter))]
    assert len(ids) == stored_count(store, meter) == len(want)
    assert len(set(ids)) == len(want)
    assert set(ids) == want


def sample_queue(topic):
    counts = bus.queue_counts(f'{topic}.sample')
    return counts[0] if counts else None


def assert_drained_and_acked(collector, topic, stop=None):
    """Nothing ready with the collector running, nothing coming back once
    it stopped (unacknowledged deliveries would be requeued). ``stop``
    stops it and returns its exit code (default: ``collector.stop``)."""
    assert basics.wait_until(lambda: sample_queue(topic) == 0, 10), (
        f'{sample_queue(topic)} notifications still ready')
    assert collector.alive(), collector.log()[-3000:]
    assert (stop or collector.stop)() == 0, collector.log()[-3000:]
    assert bus.queue_counts(f'{topic}.sample') == (0, 0)


def test_agent_notifier_collector_sqlite(tmp_path, metering_topic,
                                         processes):
    """Notifications → agent → notifier:// → bus → collector → SQLite."""
    db = synced_sqlite(tmp_path)
    topic = bus.unique_topic()
    try:
        agent = daemons.AgentProcess(
            tmp_path / 'agent', topic,
            {'sources': [{'name': 'all', 'meters': ['*'],
                          'sinks': ['bus']}],
             'sinks': [{'name': 'bus', 'publishers': [
                 f'notifier://?topic={metering_topic}']}]})
        processes(agent)
        collector = daemons.CollectorProcess(tmp_path / 'collector',
                                             metering_topic, db)
        processes(collector)
        collector.start()
        agent.start()
        resource_ids = [f'e2e-vm-{i}' for i in range(10)]
        message_ids = bus.publish_notifications(
            topic, [fixtures.instance_exists(rid) for rid in resource_ids])
        want = {sample_mod.sample_id(mid, name, rid)
                for mid, rid in zip(message_ids, resource_ids, strict=True)
                for name in fixtures.INSTANCE_METERS}
        assert len(want) == 40

        def stored():
            return {s.id for s in stored_samples(db)}

        assert basics.wait_until(lambda: stored() == want, 20), (
            f'{len(stored())} of 40 stored; collector log:\n'
            f'{collector.log()[-3000:]}\nagent log:\n{agent.log()[-2000:]}')
        samples = stored_samples(db)
        assert len(samples) == 40
        by_key = {(s.name, s.resource_id): s for s in samples}
        memory = by_key[('memory', 'e2e-vm-3')]
        assert memory.type == 'gauge' and memory.unit == 'MiB'
        assert memory.volume == 512
        assert memory.message_id == memory.id
        assert memory.resource_metadata['display_name']
        assert_drained_and_acked(collector, metering_topic)
        assert 'dropped' not in collector.log()
    finally:
        bus.delete_queues(bus.topic_queues(
            topic, ('info', 'sample', 'error', 'warn', 'critical', 'audit',
                    'debug')))


def test_private_postgresql_crash_mid_stream_loses_and_duplicates_nothing(
        tmp_path, metering_topic, processes):
    """20,000 samples on the bus; the collector's PostgreSQL is crashed
    (pg_ctl stop -m immediate) while they stream in and started again a
    few seconds later: every sample is stored exactly once."""
    total = 20000
    samples = [make_sample(i, name='fault.cpu', resource_id=f'r-{i % 97}',
                           message_id=f'fault-{i}') for i in range(total)]
    want = {s.id for s in samples}
    assert len(want) == total
    budget = time.monotonic() + 50

    def left(most):
        """At most ``most`` seconds, within the test's 50 s budget."""
        return max(0.0, min(most, budget - time.monotonic()))

    pg = databases.PrivatePostgres()
    publisher = None
    stop_publishing = threading.Event()
    try:
        pg.start()
        storage_cmd.sync(basics.make_conf(database__connection=pg.url))
        collector = daemons.CollectorProcess(
            tmp_path / 'collector', metering_topic, pg.url, batch_size=20,
            batch_timeout=1, backoff=(0.2, 1))
        processes(collector)
        collector.start()

        # About 10 s of stream: 400 notifications of 50 samples.
        sent = []
        publisher = threading.Thread(target=lambda: sent.append(
            bus.publish_samples(metering_topic, samples,
                                    per_notification=50, pause=0.025,
                                    stop=stop_publishing)))
        started = time.monotonic()
        publisher.start()

        store = store_of(pg.url)
        try:
            assert basics.wait_until(
                lambda: stored_count(store, 'fault.cpu') >= 3000, left(15),
                0.2), collector.log()[-3000:]
        finally:
            store.close()
        # Crash in the middle of a write: hold the collector's next insert
        # on a table lock, then crash with its transaction open.
        locker = psycopg.connect(**pg_params(pg))
        try:
            locker.execute('LOCK TABLE sample IN SHARE MODE')
            at_crash = locker.execute(
                "SELECT count(*) FROM sample WHERE name = 'fault.cpu'"
            ).fetchone()[0]
            with psycopg.connect(**pg_params(pg),
                                 autocommit=True) as watcher:
                assert basics.wait_until(lambda: watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE "
                    "wait_event_type = 'Lock' AND (query LIKE "
                    "'COPY sample %' OR query LIKE '%INSERT INTO sample %')"
                ).fetchone()[0], left(10),
                    0.05), collector.log()[-3000:]
                assert pg.stop('immediate')
        finally:
            with contextlib.suppress(psycopg.Error):
                locker.close()
        crashed_at = time.monotonic() - started
        assert publisher.is_alive(), 'the stream ended before the crash'
        assert at_crash < total
        time.sleep(4)
        assert collector.wait_for_log('Store unavailable since', 5), (
            collector.log()[-3000:])
        # The write held on the lock failed with the crash, uncommitted
        # (the writes after it found the server gone).
        assert [line for line in collector.log().splitlines()
                if 'StorageUnavailableError: OperationalError' in line
                and 'Connection refused' not in line], collector.log()[-3000:]
        assert collector.alive(), collector.log()[-3000:]
        pg.start()
        restarted_at = time.monotonic() - started

        publisher.join(left(20))
        assert not publisher.is_alive() and sent == [total]
        store = store_of(pg.url)
        try:
            assert basics.wait_until(
                lambda: stored_count(store, 'fault.cpu') >= total,
                left(20), 0.25), (
                f'{stored_count(store, "fault.cpu")} of {total} stored; '
                f'log:\n{collector.log()[-3000:]}')
            done_at = time.monotonic() - started
            time.sleep(1.5)  # more than a batch timeout: nothing more comes
            assert_stored_once(store, 'fault.cpu', want)
        finally:
            store.close()
        with psycopg.connect(**pg_params(pg)) as db:
            assert db.execute(
                "SELECT count(*), count(DISTINCT id) FROM sample "
                "WHERE name = 'fault.cpu'").fetchone() == (total, total)
        assert_drained_and_acked(collector, metering_topic)
        print(f'crash after {crashed_at:.1f}s with {at_crash} stored, '
              f'restart at {restarted_at:.1f}s, all {total} stored at '
              f'{done_at:.1f}s')
    finally:
        stop_publishing.set()
        if publisher is not None:
            publisher.join(30)
        pg.cleanup()


def test_bad_meter_messages_are_dropped_alone(tmp_path, metering_topic,
                                              processes):
    """Missing fields, bad volumes and timestamps, bad signatures, a
    payload that is no list: each logged with its reason and counted, the
    rest of the batch stored and everything acknowledged."""
    db = synced_sqlite(tmp_path)
    collector = daemons.CollectorProcess(tmp_path / 'collector',
                                         metering_topic, db, batch_size=50)
    processes(collector)
    collector.start()
    secret = bus.TELEMETRY_SECRET

    def signed(index, key=secret, **changes):
        message = publisher_utils.meter_message(make_sample(index), None)
        del message['message_signature']
        for field, value in changes.items():
            if value is None:
                message.pop(field)
            else:
                message[field] = value
        message['message_signature'] = publisher_utils.compute_signature(
            message, key)
        return message

    tampered = signed(9)
    tampered['counter_volume'] = 1e9
    bad = {
        make_sample(2).id: signed(2, counter_name=None),
        make_sample(3).id: signed(3, counter_volume='a lot'),
        make_sample(4).id: signed(4, timestamp='31/12/2024 25:00'),
        make_sample(5).id: signed(5, key='not the secret'),
        make_sample(6).id: signed(6, resource_id=None),
        make_sample(9).id: tampered,
    }
    good = [signed(i) for i in (1, 7, 8, 10)]
    payload = [good[0], *list(bad.values())[:3], good[1],
               *list(bad.values())[3:], *good[2:]]
    bus.publish_notifications(
        metering_topic, [
            {'event_type': 'metering', 'payload': payload},
            {'event_type': 'metering', 'payload': 'not a list'},
        ], exchange='calipso', priority='sample',
        publisher_id='telemetry.publisher.test')
    bus.publish_samples(metering_topic, [make_sample(11)])

    want = {m['message_id'] for m in good} | {make_sample(11).id}
    assert basics.wait_until(
        lambda: {s.id for s in stored_samples(db)} == want, 15), (
        collector.log()[-3000:])
    log = collector.log()
    for message_id, reason in (
            (make_sample(2).id, 'missing counter_name'),
            (make_sample(3).id, "counter_volume 'a lot' is not a number"),
            (make_sample(4).id, "timestamp '31/12/2024 25:00' is not ISO"),
            (make_sample(5).id, 'message_signature does not match'),
            (make_sample(6).id, 'missing resource_id'),
            (make_sample(9).id, 'message_signature does not match')):
        assert f'Meter message {message_id} (notification ' in log, log
        line = next(x for x in log.splitlines()
                    if f'Meter message {message_id}' in x)
        assert reason in line, line
    assert 'payload is a str, not a list of meter messages' in log
    assert '[4 invalid so far]' in log
    assert '[2 bad signature so far]' in log
    assert 'unavailable since' not in log
    assert_drained_and_acked(collector, metering_topic)


# --- Two workers on the shared PostgreSQL server ---------------------------


def libpq_url(url):
    """An SQLAlchemy PostgreSQL URL as psycopg (libpq) takes it."""
    return sa.engine.make_url(url).set(
        drivername='postgresql').render_as_string(hide_password=False)


@pytest.fixture
def shared_postgresql_database():
    """The URL of a database of the test's own on the shared PostgreSQL
    server, created empty and dropped (WITH (FORCE)) at the end; the test
    is skipped when the server does not answer."""
    server = sa.engine.make_url(SHARED_POSTGRESQL_URL)
    name = f'calipso_test_{uuid.uuid4().hex}'
    try:
        with psycopg.connect(libpq_url(server), autocommit=True,
                             connect_timeout=3) as admin:
            admin.execute(f'CREATE DATABASE {name}')
    except psycopg.OperationalError as exc:
        pytest.skip(f'PostgreSQL at {server.render_as_string()} does not '
                    f'answer: {exc}')
    try:
        yield server.set(drivername='postgresql+psycopg',
                         database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(libpq_url(server), autocommit=True,
                             connect_timeout=10) as admin:
            admin.execute(f'DROP DATABASE {name} WITH (FORCE)')


def proc_stat(pid):
    """(state, parent pid, process group) of ``pid``; None when gone."""
    try:
        with open(f'/proc/{pid}/stat') as handle:
            fields = handle.read().rsplit(')', 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return fields[0], int(fields[1]), int(fields[2])


def running(pid):
    stat = proc_stat(pid)
    return stat is not None and stat[0] != 'Z'


def group_members(pgid):
    """The live processes of process group ``pgid``."""
    members = set()
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            stat = proc_stat(int(entry))
            if stat is not None and stat[0] != 'Z' and stat[2] == pgid:
                members.add(int(entry))
    return members


# oslo.log's default format: "<date> <time> <pid> <LEVEL> <logger> [...] "
# (DEBUG lines end with the function and source line).
WORKER_LISTENING = re.compile(
    r'^\S+ \S+ (\d+) INFO calipso_agent\.collector \[[^\]]*\] Collector '
    r'worker (\d+) listening on topic ', re.M)
WORKER_STORED = re.compile(
    r'^\S+ \S+ (\d+) DEBUG calipso_agent\.collector \[[^\]]*\] Stored '
    r'(\d+) samples of (\d+) notifications(?: |$)', re.M)


def stored_by_worker(log):
    """{pid: [samples stored, notifications handled]} of the collector's
    "Stored ..." DEBUG lines."""
    took = {}
    for pid, stored, handled in WORKER_STORED.findall(log):
        counts = took.setdefault(int(pid), [0, 0])
        counts[0] += int(stored)
        counts[1] += int(handled)
    return took


def test_two_workers_share_the_stream_into_shared_postgresql(
        tmp_path, metering_topic, processes, shared_postgresql_database):
    """``[collector] workers = 2``: two worker processes consume the
    ``<topic>.sample`` queue side by side, both store samples, 5,000
    samples are stored exactly once, the queue ends drained and
    acknowledged, and SIGTERM to the master stops it (exit 0) and both
    workers."""
    total, per_notification = 5000, 25
    notifications = total // per_notification
    # Resources shared by both workers' batches: their writes overlap on
    # the same resource and meter rows.
    samples = [make_sample(i, name='workers.cpu', resource_id=f'r-{i % 97}',
                           message_id=f'workers-{i}') for i in range(total)]
    want = {s.id for s in samples}
    assert len(want) == total
    db = shared_postgresql_database
    storage_cmd.sync(basics.make_conf(database__connection=db))
    queue = f'{metering_topic}.sample'
    # Each worker logs its "Stored N samples of M notifications" (DEBUG,
    # with its pid); the other loggers keep oslo.log's default levels.
    log_levels = ','.join(oslo_log.get_default_log_levels()
                          + ['calipso_agent.collector=DEBUG'])
    collector = daemons.CollectorProcess(
        tmp_path / 'collector', metering_topic, db, workers=2,
        batch_size=10, batch_timeout=1, backoff=(0.2, 1),
        extra_config=(f'[notification]\nprefetch = 20\n'
                      f'[DEFAULT]\ndefault_log_levels = {log_levels}\n'))
    processes(collector)
    collector.start(timeout=60)
    master = collector.pid

    # Two consumers on the queue before anything is published, one per
    # worker process (children of the master, in its process group).
    assert basics.wait_until(lambda: bus.queue_counts(queue) == (0, 2),
                              60), (bus.queue_counts(queue),
                                    collector.log()[-3000:])
    assert basics.wait_until(
        lambda: len(WORKER_LISTENING.findall(collector.log())) >= 2, 30), (
        collector.log()[-3000:])
    listening = WORKER_LISTENING.findall(collector.log())
    workers = {int(worker): int(pid) for pid, worker in listening}
    assert len(listening) == 2 and sorted(workers) == [0, 1], listening
    pids = set(workers.values())
    assert len(pids) == 2 and master not in pids, (master, workers)
    for pid in pids:
        stat = proc_stat(pid)
        assert stat is not None and stat[0] != 'Z', (pid, stat)
        assert stat[1:] == (master, master), (pid, stat, master)
    assert collector.log().count('Consuming notifications from '
                                 f'{queue} ') == 2, collector.log()[-3000:]

    assert bus.publish_samples(metering_topic, samples,
                                   per_notification=per_notification) == total

    store = store_of(db)
    try:
        assert basics.wait_until(
            lambda: stored_count(store, 'workers.cpu') >= total, 180, 0.5), (
            f'{stored_count(store, "workers.cpu")} of {total} stored; '
            f'log:\n{collector.log()[-3000:]}')
        # Every write committed is logged after its commit.
        assert basics.wait_until(
            lambda: sum(s for s, _ in stored_by_worker(
                collector.log()).values()) >= total, 30), (
            stored_by_worker(collector.log()))
        time.sleep(2)  # more than a batch timeout: nothing more comes
        assert_stored_once(store, 'workers.cpu', want)
    finally:
        store.close()
    with psycopg.connect(libpq_url(db)) as conn:
        assert conn.execute(
            'SELECT count(*), count(DISTINCT id) FROM sample').fetchone() == (
            total, total)

    # Both workers stored samples; together every sample once and every
    # notification once (no batch written twice, none requeued).
    log = collector.log()
    took = stored_by_worker(log)
    assert set(took) == pids, (took, workers)
    assert all(stored > 0 for stored, _ in took.values()), took
    assert sum(stored for stored, _ in took.values()) == total, took
    assert sum(handled for _, handled in took.values()) == notifications, (
        took)
    for unexpected in ('unavailable since', 'dropped', 'rejected',
                       'Traceback', ' ERROR ', ' WARNING '):
        assert unexpected not in log, log[-3000:]
    # Both still consuming, nothing left ready.
    assert basics.wait_until(lambda: bus.queue_counts(queue) == (0, 2),
                              10), bus.queue_counts(queue)

    def sigterm_master():
        """SIGTERM to the master alone; its exit code once it and both
        workers are gone (None if it did not exit)."""
        os.kill(master, signal.SIGTERM)
        try:
            code = collector.process.wait(60)
        except subprocess.TimeoutExpired:
            return None
        assert basics.wait_until(
            lambda: not any(running(pid) for pid in pids), 10), (
            {pid: proc_stat(pid) for pid in pids})
        assert basics.wait_until(lambda: not group_members(master), 10), (
            group_members(master))
        return code

    assert_drained_and_acked(collector, metering_topic, stop=sigterm_master)
    print(f'worker pids {workers}; samples, notifications by pid: {took}')
