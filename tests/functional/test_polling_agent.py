"""calipso-agent-polling as processes: agents sharing resources through
the real Redis, reload on SIGHUP."""

import datetime
import math
import time
import uuid

import pytest
import redis

from tests.helpers import polling
from tests.helpers.basics import wait_until

REDIS_URL = 'redis://127.0.0.1:6379'
RESOURCES = 24
INTERVAL = 4
MEMBER_TIMEOUT = 2.5


@pytest.fixture(scope='module')
def redis_server():
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError:
        pytest.skip(f'no Redis at {REDIS_URL}')


def epoch(stamp):
    return datetime.datetime.fromisoformat(stamp).timestamp()


def coverage(agents, stamp):
    """The resources each agent polled in the cycle ``stamp``."""
    return {agent: sorted(item['resource_id'] for item in agent.samples()
                          if item['timestamp'] == stamp)
            for agent in agents}


def published_by_all(agents, stamp):
    return all(coverage(agents, stamp).values())


def assert_exactly_once(agents, stamp):
    polled = [r for share in coverage(agents, stamp).values() for r in share]
    assert sorted(polled) == sorted(f'synthetic-{i}'
                                    for i in range(RESOURCES)), stamp


def test_agents_split_resources_and_take_over(tmp_path, redis_server):
    source = {'name': f'shared-{uuid.uuid4().hex[:8]}',
              'interval': INTERVAL, 'meters': ['test.probe'],
              'discovery': [f'synthetic://{RESOURCES}']}
    extra = (f'coordination_url = {REDIS_URL}\n'
             f'member_timeout = {MEMBER_TIMEOUT}\n')
    agents = [polling.PollingAgentProcess(tmp_path / f'agent{i}', [source],
                                          extra_polling=extra)
              for i in range(3)]
    try:
        for agent in agents:
            agent.start()
        # Once every agent has polled a cycle, all three are members:
        # the next cycles split the resources exactly.
        first = wait_until(lambda: next(
            (s for s in sorted(polling.by_timestamp(agents[0].samples()))
             if published_by_all(agents, s)), None), 60, interval=0.3)
        assert first, [a.log()[-2000:] for a in agents]
        stamps = polling.wait_for_cycles(agents[0], 2, after=first)
        for stamp in stamps:
            assert wait_until(lambda s=stamp: published_by_all(agents, s),
                              30)
            assert_exactly_once(agents, stamp)

        killed_at = time.time()
        agents[0].kill()
        survivors = agents[1:]
        # The killed agent's heartbeat expires within MEMBER_TIMEOUT (less
        # than an interval); the first cycle after that, and the next,
        # are the survivors' alone and cover everything.
        first_after = math.ceil((killed_at + MEMBER_TIMEOUT) / INTERVAL)
        for tick in (first_after, first_after + 1):
            stamp = wait_until(lambda t=tick: next(
                (s for s in polling.by_timestamp(survivors[0].samples())
                 if epoch(s) == t * INTERVAL), None), 60, interval=0.3)
            assert stamp, survivors[0].log()[-3000:]
            assert wait_until(lambda s=stamp: published_by_all(survivors, s),
                              30)
            assert_exactly_once(survivors, stamp)
    finally:
        for agent in agents:
            agent.stop()


def test_reload_on_sighup_and_on_file_change(tmp_path):
    source = {'name': 'probe', 'interval': 1, 'meters': ['test.probe'],
              'discovery': ['synthetic://2']}
    agent = polling.PollingAgentProcess(
        tmp_path / 'agent', [source],
        extra_polling='cfg_check_interval = 3600\n')
    with agent:
        agent.start()
        polling.wait_for_cycles(agent, 2)
        # Only SIGHUP can make it read the file (checks are an hour apart).
        changed = dict(source, interval=2,
                       meters=['test.probe', 'test.broken'])
        polling.write_polling(agent.polling_file, [changed])
        agent.hangup()
        assert agent.wait_for_log('every 2 s', 30), agent.log()[-3000:]
        assert agent.wait_for_log('test.broken', 30)
        assert 'broken on purpose' in agent.log()
        last = polling.wait_for_cycles(agent, 1)[-1]
        later = polling.wait_for_cycles(
            agent, len(polling.by_timestamp(agent.samples())) + 3, after=None)
        after = [epoch(s) for s in later if s > last][-3:]
        assert len(after) == 3
        assert all(s % 2 == 0 for s in after)
        # An unusable file on SIGHUP: reported, the running definition
        # stays.
        with open(agent.polling_file, 'w') as handle:
            handle.write('sources:\n  - name: [\n')
        agent.hangup()
        assert agent.wait_for_log('Polling file refused', 30)
        count = len(polling.by_timestamp(agent.samples()))
        polling.wait_for_cycles(agent, count + 2)
        assert agent.alive()


def test_interval_change_through_the_file(tmp_path):
    source = {'name': 'probe', 'interval': 1, 'meters': ['test.probe'],
              'discovery': ['synthetic://1']}
    agent = polling.PollingAgentProcess(
        tmp_path / 'agent', [source],
        extra_polling='cfg_check_interval = 0.5\n')
    with agent:
        agent.start()
        polling.wait_for_cycles(agent, 2)
        polling.write_polling(agent.polling_file,
                              [dict(source, interval=3)])
        assert agent.wait_for_log('every 3 s', 30), agent.log()[-3000:]
        switched = sorted(polling.by_timestamp(agent.samples()))[-1]
        # (a cycle of the old interval may still be on its way to the
        # file: the last two are the new interval's)
        later = polling.wait_for_cycles(agent, 3, after=switched,
                                        timeout=30)
        seconds = [epoch(s) for s in later[1:]]
        assert all(s % 3 == 0 for s in seconds)
        assert seconds[1] - seconds[0] == 3
