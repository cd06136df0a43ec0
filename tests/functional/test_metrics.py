"""Self-metrics of the notification agent and the collector: the real
daemons with two workers each, real RabbitMQ, their /metrics read over
HTTP (the sum over the workers, whichever took the notifications)."""

import glob
import os

import pytest

from tests.helpers import basics, bus, daemons, fixtures

pytestmark = [pytest.mark.functional, pytest.mark.usefixtures('broker')]

VCPE = 'vcpe__cord-sample-publisher__vcpe'




def worker_files(tmp_dir):
    """Pids of the processes that wrote counters in a metrics directory
    under ``tmp_dir``."""
    return {os.path.basename(path)[len('counter_'):-len('.db')]
            for path in glob.glob(os.path.join(
                tmp_dir, 'calipso-metrics.*', 'counter_*.db'))}


def test_agent_counts_what_it_received_acked_dead_lettered_published(
        tmp_path, topic, monkeypatch):
    out = tmp_path / 'samples.jsonl'
    database = f'sqlite:///{tmp_path}/calipso.sqlite'
    metrics_tmp = tmp_path / 'tmp'
    metrics_tmp.mkdir()
    monkeypatch.setenv('TMPDIR', str(metrics_tmp))
    port = basics.free_port()
    count = 12
    valid = [fixtures.instance_exists(f'vm-{i}') for i in range(count)]
    unprocessable = fixtures.load_envelope(VCPE)
    del unprocessable['payload']['vcpe_id']
    agent = daemons.AgentProcess(
        tmp_path / 'agent', topic, {
            'sources': [
                {'name': 'all', 'meters': ['*'], 'sinks': ['to_file']},
                {'name': 'memory', 'meters': ['memory'],
                 'sinks': ['to_db']}],
            'sinks': [{'name': 'to_file', 'publishers': [f'file://{out}']},
                      {'name': 'to_db', 'publishers': ['database://']}]},
        workers=2, batch_size=5,
        extra_config=(f'[database]\nconnection = {database}\n'
                      f'[notification]\nmetrics_port = {port}\n'))
    url = f'http://127.0.0.1:{port}/metrics'
    total = count + 2
    try:
        agent.start()
        assert basics.wait_until(
            lambda: agent.log().count('listening on exchanges') == 2, 30)
        # Both workers consume: the broker hands them turns.
        for notification in valid + [unprocessable]:
            bus.publish_notifications(topic, [notification])
        bus.publish_raw(f'{topic}.info', b'{not json')
        assert basics.wait_until(
            lambda: basics.metric(basics.read_metrics(url),
                                   'calipso_notifications_acked_total')
            >= total, 30), agent.log()[-4000:]
        values = basics.read_metrics(url)
        writers = worker_files(str(metrics_tmp))
    finally:
        agent.stop()
    assert len(writers) == 2, writers
    assert basics.count_lines(out) == count * len(fixtures.INSTANCE_METERS)
    assert basics.metric(values,
                          'calipso_notifications_received_total') == total
    assert basics.metric(values,
                          'calipso_notifications_acked_total') == total
    assert basics.metric(
        values, 'calipso_notifications_dead_lettered_total',
        reason='unprocessable') == 1
    assert basics.metric(
        values, 'calipso_notifications_dead_lettered_total',
        reason='undecodable') == 1
    assert not any(name == 'calipso_notifications_requeued_total'
                   for name, _ in values), values
    assert basics.metric(
        values, 'calipso_samples_published_total', sink='to_file',
        publisher='file') == count * len(fixtures.INSTANCE_METERS)
    assert basics.metric(
        values, 'calipso_samples_published_total', sink='to_db',
        publisher='database') == count
    assert basics.metric(values, 'calipso_batch_duration_seconds_count',
                          outcome='acked') >= 1
    assert basics.metric(values, 'calipso_batch_duration_seconds_sum',
                          outcome='acked') > 0
    assert basics.metric(values,
                          'calipso_store_write_duration_seconds_count',
                          outcome='ok') >= 1
    # The master removed its directory at exit.
    assert not glob.glob(str(metrics_tmp / 'calipso-metrics.*'))


def test_collector_counts_store_writes_and_dropped_meter_messages(
        tmp_path, topic):
    database = f'sqlite:///{tmp_path}/calipso.sqlite'
    port = basics.free_port()
    collector = daemons.CollectorProcess(
        tmp_path / 'collector', topic, database, workers=2,
        extra_config=f'[collector]\nmetrics_port = {port}\n')
    url = f'http://127.0.0.1:{port}/metrics'
    try:
        collector.start()
        samples = [basics.make_sample(i) for i in range(30)]
        bus.publish_samples(topic, samples, per_notification=10)
        bus.publish_samples(topic, [basics.make_sample(100)],
                                secret='not-the-secret')
        assert basics.wait_until(
            lambda: basics.metric(basics.read_metrics(url),
                                   'calipso_notifications_acked_total')
            >= 4, 30), collector.log()[-4000:]
        values = basics.read_metrics(url)
    finally:
        collector.stop()
    assert basics.metric(values,
                          'calipso_notifications_received_total') == 4
    assert basics.metric(values,
                          'calipso_notifications_acked_total') == 4
    assert basics.metric(values, 'calipso_meter_messages_dropped_total',
                          reason='bad signature') == 1
    writes = basics.metric(values,
                            'calipso_store_write_duration_seconds_count',
                            outcome='ok')
    assert 1 <= writes <= 3
