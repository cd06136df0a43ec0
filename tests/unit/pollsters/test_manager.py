"""The polling agent's manager in this process: cycles, failures,
reloads, overrides, publishing retries."""

import datetime
import logging
import threading
import time

import pytest

from calipso_agent.pollsters import base, partitioning, runner, sources
from calipso_agent.pollsters import manager as manager_mod
from tests.helpers import polling
from tests.helpers.basics import make_conf, wait_until


def make_pollster(cls, meter, conf):
    made = cls(conf)
    made.meter = meter
    return made


class SlowPollster(polling.ProbePollster):
    """Takes ``delay`` seconds; counts how many run at once."""

    delay = 0.0
    running = 0
    most = 0
    lock = threading.Lock()

    def get_samples(self, context, cache, resources):
        cls = type(self)
        with cls.lock:
            cls.running += 1
            cls.most = max(cls.most, cls.running)
        time.sleep(self.delay)
        with cls.lock:
            cls.running -= 1
        return [self.make_sample(context, resources[0], 1)]


class Overrides:
    """A store exposing only the overrides (the API helper's method)."""

    def __init__(self):
        self.overrides = {}
        self.reads = 0

    def get_polling_overrides(self):
        self.reads += 1
        return dict(self.overrides)


@pytest.fixture
def agent(tmp_path):
    """A function starting a PollingManager on ``sources`` with the test
    plugins; stopped at the end."""
    started = []

    def start(sources, publisher=None, store=None, extra=(), **options):
        path = str(tmp_path / 'polling.yaml')
        polling.write_polling(path, sources)
        settings = dict(pollster_timeout=5.0, cfg_check_interval=0.2,
                        retry_backoff_initial=0.05, retry_backoff_max=0.2)
        settings.update(options)
        conf = make_conf(host='h', **{f'polling__{k}': v
                                      for k, v in settings.items()})
        conf.set_override('cfg_file', path, group='polling')
        publisher = publisher or polling.RecordingPublisher()
        pollsters = [make_pollster(cls, meter, conf) for meter, cls in (
            ('test.probe', polling.ProbePollster),
            ('test.broken', polling.BrokenPollster),
            ('test.hang', polling.HangingPollster),
            ('test.slow', SlowPollster), *extra)]
        manager = manager_mod.PollingManager(
            conf, pipeline=polling.recording_pipeline(publisher),
            store=store, partitioner=partitioning.NoPartitioner(),
            pollsters=pollsters,
            discoveries={'synthetic': polling.SyntheticDiscovery(conf)})
        manager.publisher = publisher
        manager.start()
        started.append(manager)
        return manager

    yield start
    polling.HangingPollster.release.set()
    for manager in started:
        manager.stop()
    polling.HangingPollster.release.clear()


def stamps(manager, meter='test.probe'):
    return sorted({item.timestamp
                   for kept in manager.publisher.kept.values()
                   for item in kept if item.name == meter})


def wait_cycles(manager, count, meter='test.probe', timeout=20):
    found = wait_until(lambda: len(stamps(manager, meter)) >= count, timeout,
                       interval=0.05)
    assert found, f'{count} cycles of {meter} not seen'
    return stamps(manager, meter)


def source(name='probe', interval=0.5, meters=('test.probe',),
           discovery=('synthetic://3',)):
    return dict(name=name, interval=interval, meters=list(meters),
                discovery=list(discovery))


def test_every_resource_polled_each_cycle(agent):
    manager = agent([source()])
    cycles = wait_cycles(manager, 3)
    for stamp in cycles[:2]:
        resources = sorted(item.resource_id
                           for kept in manager.publisher.kept.values()
                           for item in kept if item.timestamp == stamp)
        assert resources == ['synthetic-0', 'synthetic-1', 'synthetic-2']


def test_broken_pollster_does_not_stop_the_others(agent, caplog):
    caplog.set_level(logging.ERROR)
    manager = agent([source(meters=['test.broken', 'test.probe'])])
    wait_cycles(manager, 3)
    assert not stamps(manager, 'test.broken')
    failures = [r.getMessage() for r in caplog.records
                if 'test.broken' in r.getMessage()]
    assert failures and 'broken on purpose' in failures[0]


def test_hanging_pollster_times_out_and_others_run(agent, caplog):
    caplog.set_level(logging.WARNING)
    manager = agent([source(meters=['test.hang', 'test.probe'])],
                    pollster_timeout=0.3)
    wait_cycles(manager, 4)
    messages = [r.getMessage() for r in caplog.records
                if 'test.hang' in r.getMessage()]
    assert sum('timed out after 0.3 s' in m for m in messages) == 1
    assert any('still running since it timed out' in m for m in messages)
    threads = [t for t in threading.enumerate()
               if t.name == 'polling-probe']
    # The abandoned thread and the current one, not one per cycle.
    assert len(threads) == 2


def test_interval_changed_in_the_file_applies_at_next_cycle(agent):
    manager = agent([source(interval=0.5)])
    before = wait_cycles(manager, 2)
    polling.write_polling(manager.path, [source(interval=1.5)])
    assert wait_until(
        lambda: manager.runners['probe'].definition.interval == 1.5, 10)
    changed_at = stamps(manager)[-1]
    after = wait_cycles(manager, len(stamps(manager)) + 3)
    later = [s for s in after if s > changed_at]
    assert len(later) >= 3
    seconds = [datetime.datetime.fromisoformat(s).timestamp()
               for s in later]
    assert all(s % 1.5 == 0 for s in seconds)
    assert all(b - a == 1.5 for a, b in zip(seconds, seconds[1:],
                                             strict=False))
    assert before


def test_bad_file_is_reported_and_the_previous_one_kept(agent, caplog):
    caplog.set_level(logging.INFO)
    manager = agent([source()])
    wait_cycles(manager, 1)
    with open(manager.path, 'w') as handle:
        handle.write('sources: [unclosed\n')
    assert wait_until(lambda: any(
        'Polling file refused' in r.getMessage() for r in caplog.records),
        10)
    refused = next(r.getMessage() for r in caplog.records
                   if 'Polling file refused' in r.getMessage())
    assert manager.path in refused and 'invalid YAML' in refused
    assert 'probe' in refused
    count = len(stamps(manager))
    wait_cycles(manager, count + 2)
    assert list(manager.runners) == ['probe']


def test_broken_source_skipped_others_run(agent, caplog):
    caplog.set_level(logging.ERROR)
    manager = agent([dict(name='bad', interval=-1, meters=['*']),
                     source()])
    wait_cycles(manager, 2)
    assert list(manager.runners) == ['probe']
    assert any(': bad: interval: ' in r.getMessage().replace(
        'source bad', ': bad') for r in caplog.records)


def test_reload_request_reads_the_file(agent):
    manager = agent([source()], cfg_check_interval=3600)
    wait_cycles(manager, 1)
    polling.write_polling(manager.path, [source(), source(
        name='second', meters=['test.slow'])])
    manager.request_reload()
    wait_cycles(manager, 2, meter='test.slow')
    assert sorted(manager.runners) == ['probe', 'second']


def test_store_overrides_apply_and_go(agent):
    store = Overrides()
    manager = agent([source(interval=0.5)], store=store)
    wait_cycles(manager, 2)
    store.overrides = {'probe': {'enabled': False, 'interval': None,
                                 'updated_at': '2026-12-06T00:00:00'}}
    assert wait_until(lambda: not manager.runners['probe'].definition.enabled,
                      10)
    time.sleep(0.6)
    count = len(stamps(manager))
    time.sleep(1.2)
    assert len(stamps(manager)) == count
    store.overrides = {'probe': {'interval': 1.0, 'meters': ['test.slow']}}
    wait_cycles(manager, 2, meter='test.slow')
    assert manager.runners['probe'].definition.overrides == (
        'interval', 'meters')
    store.overrides = {}
    assert wait_until(
        lambda: manager.runners['probe'].definition.interval == 0.5, 10)
    assert store.reads > 0


def test_store_without_overrides_is_tolerated(agent):
    manager = agent([source()], store=object())
    wait_cycles(manager, 2)


def test_overrunning_cycle_logged_once_never_stacked(agent, caplog):
    caplog.set_level(logging.INFO)
    SlowPollster.delay, SlowPollster.most = 0.8, 0
    manager = agent([source(interval=0.5, meters=['test.slow'])])
    wait_cycles(manager, 4, meter='test.slow')
    assert SlowPollster.most == 1
    overruns = [r for r in caplog.records
                if 'longer than its interval' in r.getMessage()]
    assert len(overruns) == 1
    cycles = [datetime.datetime.fromisoformat(s).timestamp()
              for s in stamps(manager, 'test.slow')]
    assert all(b - a >= 1.0 for a, b in zip(cycles, cycles[1:],
                                             strict=False))


def test_publish_failure_retried_without_duplicates(agent, caplog):
    caplog.set_level(logging.INFO)
    publisher = polling.RecordingPublisher(fail_next=3)
    manager = agent([source(discovery=['synthetic://8'])],
                    publisher=publisher, batch_size=4)
    cycles = wait_cycles(manager, 3)
    assert manager.outbox.wait_idle(10)
    # Every sample of the cycles reached the receiver, under one id per
    # (meter, resource, cycle); those it took before failing came again
    # with the same id and content.
    for stamp in cycles:
        ids = {i for i, kept in publisher.kept.items()
               if kept[0].timestamp == stamp}
        assert len(ids) == 8
    again = [kept for kept in publisher.kept.values() if len(kept) > 1]
    assert again
    assert all(k == kept[0] for kept in again for k in kept)
    assert any('Publishing polled samples failed' in r.getMessage()
               for r in caplog.records)
    assert any('resumed' in r.getMessage() for r in caplog.records)


def test_backlog_is_bounded_and_nothing_polled_dropped(agent, caplog):
    caplog.set_level(logging.ERROR)
    publisher = polling.RecordingPublisher(fail_next=10 ** 9)
    manager = agent([source(interval=0.2, discovery=['synthetic://5'])],
                    publisher=publisher, max_pending_samples=12,
                    retry_backoff_max=0.05)
    assert wait_until(lambda: any('cycles are skipped' in r.getMessage()
                                  for r in caplog.records), 20)
    pending = len(manager.outbox)
    assert 12 <= pending < 12 + 5
    publisher.fail_next = 0
    assert wait_until(lambda: len(manager.outbox) == 0, 20)
    polled = [i for i, kept in publisher.kept.items()]
    assert len(polled) >= pending


class KeptOutbox(list):
    def has_room(self):
        return True

    def put(self, samples):
        self.extend(samples)


def kept_manager(conf, pollsters, polled, discoveries=('synthetic',)):
    """A PollingManager of ``pollsters`` not started, on the sources
    ``polled`` (dicts), keeping what its runners poll in its outbox."""
    manager = manager_mod.PollingManager(
        conf, pipeline=object(), partitioner=partitioning.NoPartitioner(),
        pollsters=pollsters,
        discoveries={name: polling.SyntheticDiscovery(conf)
                     for name in discoveries})
    manager.outbox = KeptOutbox()
    manager.file_definition = sources.parse({'sources': list(polled)},
                                            'polling.yaml')
    return manager


class ReadingPollster(polling.ProbePollster):
    """Declares readings; keeps what each cycle's cache announced."""

    reads = ('test.a', 'test.b')
    seen = []

    def get_samples(self, context, cache, resources):
        type(self).seen.append(cache.get(base.CYCLE_READINGS))
        return super().get_samples(context, cache, resources)


def test_a_cycle_announces_the_readings_of_its_pollsters(tmp_path):
    conf = make_conf(host='h')
    pollsters = [make_pollster(ReadingPollster, 'test.reading', conf),
                 make_pollster(polling.ProbePollster, 'test.probe', conf)]
    pollsters[1].reads = ('test.c',)
    manager = kept_manager(conf, pollsters, [
        source('both', meters=('test.*',)),
        source('one', meters=('test.reading',))])
    ReadingPollster.seen = []
    for definition in manager.file_definition.sources:
        runner.SourceRunner(manager, definition).poll(1_800_000_000)
    assert ReadingPollster.seen == [frozenset({'test.a', 'test.b', 'test.c'}),
                                    frozenset({'test.a', 'test.b'})]


class GroupedProbe(polling.ProbePollster):
    """A probe of step group ``g``; keeps the threads it ran in."""

    step_group = 'g'
    threads = []

    def get_samples(self, context, cache, resources):
        type(self).threads.append(threading.get_ident())
        return list(super().get_samples(context, cache, resources))


class GroupedBroken(polling.BrokenPollster):
    step_group = 'g'


class GroupedHang(polling.HangingPollster):
    step_group = 'g'


class OtherDiscoveryProbe(polling.ProbePollster):
    step_group = 'g'
    default_discovery = 'other'


def test_pollsters_of_a_step_group_run_as_one_step(tmp_path):
    conf = make_conf(host='h')
    pollsters = [make_pollster(GroupedProbe, 'test.a', conf),
                 make_pollster(polling.ProbePollster, 'test.alone', conf),
                 make_pollster(GroupedProbe, 'test.b', conf),
                 make_pollster(OtherDiscoveryProbe, 'test.other', conf)]
    manager = kept_manager(conf, pollsters,
                           [source('s', meters=('test.*',), discovery=())],
                           discoveries=('synthetic', 'other'))
    source_runner = runner.SourceRunner(
        manager, manager.file_definition.sources[0])
    assert source_runner.poll(1_800_000_000)
    keys = [step.key for step in source_runner._planned.steps]
    assert keys == [
        'discovery synthetic', 'discovery other',
        'pollsters test.a, test.b (group g)',
        f'pollster test.alone ({runner.plugin_name(pollsters[1])})',
        f'pollster test.other ({runner.plugin_name(pollsters[3])})']
    polled = {(s.name, s.resource_id) for s in manager.outbox}
    assert polled == {(meter, f'synthetic-{i}') for i in range(10)
                      for meter in ('test.a', 'test.b', 'test.alone',
                                    'test.other')}


def test_a_failing_pollster_of_a_group_is_reported_alone(agent, caplog):
    caplog.set_level(logging.ERROR)
    manager = agent([source(meters=['test.broken-g', 'test.probe-g'])],
                    extra=[('test.broken-g', GroupedBroken),
                           ('test.probe-g', GroupedProbe)])
    wait_cycles(manager, 3, meter='test.probe-g')
    assert not stamps(manager, 'test.broken-g')
    failures = [r.getMessage() for r in caplog.records
                if 'failed and is skipped' in r.getMessage()]
    assert failures
    assert all('pollster test.broken-g (' in m
               and 'broken on purpose' in m for m in failures)


def test_a_hanging_group_is_given_up_and_left_by_its_stuck_thread(
        agent, caplog):
    caplog.set_level(logging.WARNING)
    GroupedProbe.threads = []
    manager = agent([source(meters=['test.hang-g', 'test.probe-g',
                                    'test.probe'])],
                    pollster_timeout=0.3,
                    extra=[('test.hang-g', GroupedHang),
                           ('test.probe-g', GroupedProbe)])
    wait_cycles(manager, 4)
    group = 'pollsters test.hang-g, test.probe-g (group g)'
    messages = [r.getMessage() for r in caplog.records
                if group in r.getMessage()]
    assert sum('timed out after 0.3 s' in m for m in messages) == 1
    assert any('still running since it timed out' in m for m in messages)
    # The group's pollsters after the hanging one wait with it.
    assert not stamps(manager, 'test.probe-g')
    [stuck] = [t for t in threading.enumerate() if t.name == 'polling-probe'
               and t is not manager.runners['probe'].thread]
    polling.HangingPollster.release.set()
    stuck.join(5)
    assert not stuck.is_alive()
    assert stuck.ident not in GroupedProbe.threads


class MadeTogether(polling.ProbePollster):
    """Of step group ``t``, whose samples the group makes in one call."""

    step_group = 't'
    calls = []

    @classmethod
    def get_group_samples(cls, pollsters, context, cache, resources,
                          failed):
        cls.calls.append([p.meter for p in pollsters])
        samples = []
        for pollster in pollsters:
            if pollster.meter == 'test.refused':
                failed.append((pollster, ValueError('not today')))
            else:
                samples.extend(pollster.get_samples(context, cache,
                                                    resources))
        return samples


class SameGroupNameOtherMaker(polling.ProbePollster):
    step_group = 't'


def test_a_group_with_its_own_maker_makes_its_samples_in_one_call(caplog):
    caplog.set_level(logging.ERROR)
    conf = make_conf(host='h')
    pollsters = [make_pollster(MadeTogether, meter, conf)
                 for meter in ('test.x', 'test.refused', 'test.y')]
    pollsters[2:2] = [make_pollster(SameGroupNameOtherMaker, 'test.other',
                                    conf)]
    manager = kept_manager(conf, pollsters,
                           [source('s', meters=('test.*',), discovery=())])
    MadeTogether.calls = []
    source_runner = runner.SourceRunner(
        manager, manager.file_definition.sources[0])
    for tick in (1_800_000_000, 1_800_000_060):
        assert source_runner.poll(tick)
    assert MadeTogether.calls == [['test.x', 'test.refused', 'test.y']] * 2
    assert [step.key for step in source_runner._planned.steps] == [
        'discovery synthetic', 'pollsters test.x, test.refused, test.y '
        '(group t)',
        f'pollster test.other ({runner.plugin_name(pollsters[2])})']
    assert {s.name for s in manager.outbox} == {'test.x', 'test.y',
                                                'test.other'}
    assert len(manager.outbox) == 2 * 3 * 10
    failures = [r.getMessage() for r in caplog.records]
    assert len(failures) == 2
    assert all(f'pollster test.refused ({runner.plugin_name(pollsters[1])})'
               f' failed and is skipped this cycle: ValueError: not today'
               in m for m in failures)
