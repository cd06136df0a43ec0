"""The probing level changed through the API reaches a running polling
agent: calipso-api and calipso-agent-polling as processes of their own
over one store, the override applied at the agent's next cycle."""

import datetime
import time

import pytest
import requests

from tests.helpers import daemons, polling

pytestmark = pytest.mark.functional

ADMIN = {'X-Roles': 'admin', 'X-Project-Id': 'project-admin',
         'X-User-Id': 'user-admin'}
MEMBER = {'X-Roles': 'member', 'X-Project-Id': 'project-a',
          'X-User-Id': 'user-a'}
# A source the file polls once an hour: no cycle during the test unless
# an override changes the interval.
SOURCES = [{'name': 'probe', 'interval': 3600, 'meters': ['test.probe'],
            'discovery': ['synthetic://2']}]


def seconds(stamp):
    return datetime.datetime.fromisoformat(stamp).timestamp()


@pytest.fixture
def deployed(tmp_path):
    database = f'sqlite:///{tmp_path}/calipso.sqlite'
    agent = polling.PollingAgentProcess(
        tmp_path / 'agent', SOURCES,
        extra_config=f'\n[database]\nconnection = {database}\n',
        extra_polling='cfg_check_interval = 0.2\n')
    api = daemons.APIServer(
        tmp_path / 'api', database,
        extra_config=f'[polling]\ncfg_file = {agent.polling_file}\n')
    with api, agent.start():
        yield api, agent


def put(api, body, headers=ADMIN):
    return requests.put(f'{api.url}/v2/polling/sources/probe', json=body,
                        headers=headers, timeout=30)


def test_an_interval_changed_through_the_api_takes_effect(deployed):
    api, agent = deployed
    listed = requests.get(f'{api.url}/v2/polling/sources', headers=ADMIN,
                          timeout=30).json()
    assert [s['name'] for s in listed['sources']] == ['probe']
    assert listed['sources'][0]['interval'] == 3600
    assert agent.samples() == []

    # A member cannot change it: nothing reaches the agent.
    assert put(api, {'interval': 1}, MEMBER).status_code == 403

    answer = put(api, {'interval': 1})
    assert answer.status_code == 200, answer.text
    assert answer.json()['overridden'] == ['interval']
    first = polling.wait_for_cycles(agent, 2, 'test.probe', timeout=60)
    assert seconds(first[1]) - seconds(first[0]) == 1
    cycles = polling.by_timestamp(agent.samples(), 'test.probe')
    assert sorted(s['resource_id'] for s in cycles[first[0]]) == [
        'synthetic-0', 'synthetic-1']

    # A second change: the cycles after it are 2 s apart, on even seconds.
    changed_at = datetime.datetime.now(datetime.UTC)
    assert put(api, {'interval': 2}).status_code == 200
    # The cycle already planned on the 1 s ticks may still run.
    after = (changed_at + datetime.timedelta(seconds=1.5)).isoformat()
    later = polling.wait_for_cycles(agent, 3, 'test.probe', timeout=60,
                                    after=after)
    gaps = [seconds(b) - seconds(a)
            for a, b in zip(later, later[1:], strict=False)]
    assert gaps == [2, 2]
    assert all(seconds(stamp) % 2 == 0 for stamp in later)

    # Dropping the override gives the file's interval back.
    answer = put(api, {'interval': None})
    assert answer.json()['interval'] == 3600
    assert answer.json()['override'] is None


def test_a_deleted_override_gives_the_file_back(deployed):
    api, agent = deployed
    assert put(api, {'interval': 1}).status_code == 200
    polling.wait_for_cycles(agent, 2, 'test.probe', timeout=60)
    answer = requests.delete(f'{api.url}/v2/polling/sources/probe',
                             headers=ADMIN, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()['removed']['interval'] == 1
    deleted_at = time.time()
    listed = requests.get(f'{api.url}/v2/polling/sources', headers=ADMIN,
                          timeout=30).json()
    assert listed['sources'][0]['interval'] == 3600
    # The agents read the overrides at most once a second, at a cycle:
    # the file's hourly interval is back within a few ticks.
    time.sleep(6)
    ticks = polling.by_timestamp(agent.samples(), 'test.probe')
    assert [t for t in ticks if seconds(t) > deleted_at + 3] == []
