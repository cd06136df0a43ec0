"""A resource as a caller limited to some projects sees it: computed from
those projects' samples only, on every route and driver.

Projects write any resource id they like, so ids collide. A member token
of one project, and the proxy's service user naming a set of projects,
must get from every resource route exactly what they would get from a
store holding only their projects' samples; and a resource read by id
answers what the list shows of that id (no status tells whether another
project wrote on it).
"""

import datetime
import itertools
import urllib.parse

import mongomock
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calipso_agent.api import app, rbac
from calipso_agent.storage import impl_mongodb
from calipso_agent.storage.sql import sqlite
from tests.helpers.basics import make_sample
from tests.unit.api import support

T0 = datetime.datetime(2024, 5, 1, tzinfo=datetime.UTC)
PROJECTS = ('p-a', 'p-b', 'p-c')
RESOURCES = ('vm-1', 'vm-2', 'vm/3', 'shared')
NAMES = ('cpu', 'memory', 'secret')
USERS = ('u-1', 'u-2')
STATES = ('active', 'stopped')
SERVICE_ROLE = 'telemetry_reader'
# Who asks: the headers, the projects it may see and the q terms it adds.
CALLERS = {
    'member': (support.member('p-a'), {'p-a'}, []),
    'service': (dict(support.member('p-service', roles=SERVICE_ROLE),
                     **{rbac.SCOPE_HEADER: 'p-a,p-b'}),
                {'p-a', 'p-b'}, support.query(('project_id', 'in',
                                               'p-a,p-b'))),
}


class Stores:
    """Fresh stores of one driver, several alive at once."""

    def __init__(self, kind, tmp_path):
        self.kind = kind
        self.tmp = tmp_path
        self.conf = support.make_conf(
            tmp_path, api__multi_project_role=SERVICE_ROLE)
        self.numbers = itertools.count()
        self.opened = []

    def __call__(self):
        number = next(self.numbers)
        if self.kind == 'sqlite':
            store = sqlite.Connection(
                self.conf, f'sqlite:///{self.tmp}/store-{number}.sqlite')
        else:
            store = impl_mongodb.Connection(
                self.conf, f'mongodb://localhost/isolation_{number}',
                client=mongomock.MongoClient())
        store.upgrade()
        self.opened.append(store)
        return store

    def close(self):
        for store in self.opened:
            store.close()
        self.opened.clear()


@pytest.fixture(scope='module', params=['sqlite', 'mongodb-mongomock'])
def stores(request, tmp_path_factory):
    made = Stores(request.param.split('-')[0],
                  tmp_path_factory.mktemp('isolation'))
    yield made
    made.close()


@st.composite
def stored_samples(draw):
    count = draw(st.integers(0, 14))
    samples = []
    for index in range(count):
        project = draw(st.sampled_from(PROJECTS))
        samples.append(make_sample(
            index, name=draw(st.sampled_from(NAMES)),
            resource_id=draw(st.sampled_from(RESOURCES)),
            project_id=project, user_id=draw(st.sampled_from(USERS)),
            source=f'source-{project}',
            timestamp=(T0 + datetime.timedelta(
                minutes=draw(st.integers(0, 30)))).isoformat(),
            resource_metadata={'state': draw(st.sampled_from(STATES)),
                               'writer': project}))
    return samples


filter_terms = st.lists(st.one_of(
    st.tuples(st.just('resource_id'), st.just('eq'),
              st.sampled_from(RESOURCES)),
    st.tuples(st.just('meter'), st.sampled_from(['eq', 'ne']),
              st.sampled_from(NAMES)),
    st.tuples(st.just('user_id'), st.just('eq'), st.sampled_from(USERS)),
    st.tuples(st.just('metadata.state'), st.just('eq'),
              st.sampled_from(STATES)),
    st.tuples(st.just('timestamp'), st.sampled_from(['ge', 'lt']),
              st.integers(0, 30).map(lambda m: (
                  T0 + datetime.timedelta(minutes=m)).isoformat()))),
    max_size=3)


def answers(client, scope_terms, terms):
    """(status, body) of every resource read: the list, the filtered
    list, and each id as an item."""
    got = {}
    for name, params in (('list', scope_terms),
                         ('filtered', scope_terms + support.query(*terms))):
        response = client.get('/v2/resources', params)
        got[name] = (response.status_code, response.json)
    for rid in RESOURCES + ('nope',):
        response = client.get(
            f'/v2/resources/{urllib.parse.quote(rid, safe="")}',
            scope_terms)
        got[rid] = (response.status_code, response.json)
    return got


def check_isolation(conf, full_store, alone_store, caller, samples,
                    terms):
    """``caller`` gets the same answers from a store holding ``samples``
    (``full_store``) as from one holding only its projects' samples
    (``alone_store``); the items answer what the list shows."""
    headers, allowed, scope_terms = CALLERS[caller]
    own = [s for s in samples if s.project_id in allowed]
    for store, stored in ((full_store, samples), (alone_store, own)):
        if stored:
            assert not store.record_samples(stored).rejected
    full = support.Client(app.setup_app(conf, full_store), headers)
    alone = support.Client(app.setup_app(conf, alone_store), headers)
    got = answers(full, scope_terms, terms)
    assert got == answers(alone, scope_terms, terms)
    listed = {r['resource_id']: r for r in got['list'][1]}
    assert sorted(listed) == sorted({s.resource_id for s in own})
    for rid in RESOURCES + ('nope',):
        status, body = got[rid]
        if rid in listed:
            assert (status, body) == (200, listed[rid]), rid
        else:
            assert status == 404, rid


ISOLATION = settings(max_examples=25, deadline=None,
                     suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize('caller', sorted(CALLERS))
@ISOLATION
@given(samples=stored_samples(), terms=filter_terms)
def test_resources_are_seen_from_the_callers_projects_only(
        stores, caller, samples, terms):
    try:
        check_isolation(stores.conf, stores(), stores(), caller, samples,
                        terms)
    finally:
        stores.close()


def test_a_foreign_writer_changes_nothing_a_member_sees(writer):
    """The reproduction: another project writes first, last and another
    meter on a member's resource id."""
    def post(project, name, minute, state):
        response = writer.post(f'/v2/meters/{name}', [{
            'counter_name': name, 'counter_type': 'gauge',
            'counter_unit': 'B', 'counter_volume': 1,
            'resource_id': 'shared', 'project_id': project,
            'timestamp': (T0 + datetime.timedelta(
                minutes=minute)).isoformat(),
            'resource_metadata': {'state': state}}])
        assert response.status_code == 201, response.text

    post('p-a', 'cpu', 10, 'mine')
    post('p-evil', 'secret', 0, 'theirs')
    post('p-evil', 'secret', 20, 'theirs')
    member = support.member('p-a')
    listed = writer.get('/v2/resources', support.query(
        ('resource_id', 'eq', 'shared')), headers=member).json
    item = writer.get('/v2/resources/shared', headers=member).json
    assert listed == [item]
    assert item['first_sample_timestamp'] == item[
        'last_sample_timestamp'] == '2024-05-01T00:10:00'
    assert item['metadata'] == {'state': 'mine'}
    assert [link['rel'] for link in item['links']] == ['self', 'cpu']
    outsider = support.member('p-b')
    assert writer.get('/v2/resources/shared',
                      headers=outsider).status_code == 404
    assert writer.get('/v2/resources', headers=outsider).json == []


def test_item_takes_only_project_terms(client):
    response = client.get('/v2/resources/vm-0', support.query(
        ('meter', 'eq', 'cpu')))
    status, _, message = support.fault(response)
    assert status == 400 and 'project_id' in message
    assert client.get('/v2/resources/vm-0', support.query(
        ('project_id', 'eq', 'project-b'))).status_code == 404
    assert client.get('/v2/resources/vm-0', support.query(
        ('project_id', 'in', 'project-a,project-b'))).status_code == 200
