"""calipso-api with Keystone authentication: the real gunicorn server,
the ``main`` pipeline (keystonemiddleware's auth_token) validating tokens
with the session's Keystone (tests/helpers), an SQLite store holding
samples of project-a, project-b and a third project."""

import pytest
import requests

from calipso_agent.storage import base as storage_base
from tests.helpers import daemons, oracle
from tests.helpers.basics import make_sample

pytestmark = pytest.mark.functional

POSTED = 'calipso.posted'
OTHER_PROJECT = 'project-not-in-keystone'


def _samples(keystone):
    a, b = keystone.user_a, keystone.user_b
    stamps = ['2024-05-01T10:00:00+00:00', '2024-05-01T11:00:00+00:00',
              '2024-05-01T12:30:00+00:00']
    samples = []
    for owner, project, resources in (
            (a.id, a.project_id, ('vm-a1', 'vm-a2')),
            (b.id, b.project_id, ('vm-b1',)),
            ('user-c', OTHER_PROJECT, ('vm-c1',))):
        for resource in resources:
            for name, unit in (('cpu', 'ns'), ('memory', 'MB')):
                for index, stamp in enumerate(stamps):
                    samples.append(make_sample(
                        len(samples), name=name, unit=unit,
                        volume=float(len(samples) * 10 + index),
                        user_id=owner, project_id=project,
                        resource_id=resource, timestamp=stamp))
    return samples


@pytest.fixture(scope='module')
def api(keystone, tmp_path_factory):
    """(base URL, the stored samples as dicts) of a Keystone-authenticated
    calipso-api."""
    workdir = tmp_path_factory.mktemp('calipso-api-keystone')
    samples = _samples(keystone)
    with daemons.keystone_api(keystone, workdir, samples) as url:
        yield url, [s.as_dict() for s in samples]


@pytest.fixture(scope='module')
def http():
    with requests.Session() as session:
        session.trust_env = False  # loopback only
        yield session


@pytest.fixture(scope='module')
def tokens(keystone):
    """A project-scoped token per user name, made once."""
    made = {}

    def token(user):
        if user not in made:
            made[user] = keystone.token(user)
        return made[user]
    return token


def _get(http, tokens, base, path, user=None, **params):
    headers = {'X-Auth-Token': tokens(user)} if user else {}
    return http.get(base + path, params=params, headers=headers, timeout=10)


def _assert_error(response, status):
    assert response.status_code == status, response.text
    assert response.headers['Content-Type'].startswith('application/json')
    error = response.json()['error_message']
    assert error['faultcode'] == 'Client'
    assert error['faultstring']
    return error


def _without_posted(items, key='meter'):
    return [item for item in items if item[key] != POSTED]


def test_healthcheck_needs_no_token(api, http):
    base, _ = api
    response = http.get(f'{base}/healthcheck', timeout=5)
    assert (response.status_code, response.text) == (200, 'OK')


def test_no_token_is_401_json(api, http, tokens, keystone):
    base, _ = api
    response = _get(http, tokens, base, '/v2/meters')
    _assert_error(response, 401)
    assert keystone.url in response.headers['WWW-Authenticate']


@pytest.mark.parametrize('path', ['/v2/samples', '/v2/meters/cpu/statistics',
                                  '/v2/resources/vm-a1'])
def test_garbage_token_is_401_json(api, http, path):
    base, _ = api
    response = http.get(base + path, timeout=10,
                        headers={'X-Auth-Token': 'gAAAAAB-not-a-token'})
    _assert_error(response, 401)


def test_member_sees_its_project_samples(api, http, tokens, keystone):
    base, stored = api
    project = keystone.user_a.project_id
    response = _get(http, tokens, base, '/v2/samples', 'user-a')
    assert response.status_code == 200, response.text
    got = response.json()
    assert {s['project_id'] for s in got} == {project}
    assert sorted(s['id'] for s in _without_posted(got)) == sorted(
        s['id'] for s in stored if s['project_id'] == project)


def test_member_sees_its_project_meters(api, http, tokens, keystone):
    base, stored = api
    project = keystone.user_a.project_id
    response = _get(http, tokens, base, '/v2/meters', 'user-a')
    assert response.status_code == 200, response.text
    got = _without_posted(response.json(), 'name')
    assert {m['project_id'] for m in response.json()} == {project}
    assert sorted((m['name'], m['resource_id']) for m in got) == sorted(
        {(s['name'], s['resource_id']) for s in stored
         if s['project_id'] == project})


def test_member_sees_its_project_resources(api, http, tokens, keystone):
    base, stored = api
    project = keystone.user_a.project_id
    response = _get(http, tokens, base, '/v2/resources', 'user-a')
    assert response.status_code == 200, response.text
    got = [r for r in response.json() if not r['resource_id'].startswith(
        'posted-')]
    assert {r['project_id'] for r in response.json()} == {project}
    assert sorted(r['resource_id'] for r in got) == sorted(
        {s['resource_id'] for s in stored if s['project_id'] == project})


def test_member_statistics_cover_its_project(api, http, tokens, keystone):
    base, stored = api
    project = keystone.user_a.project_id
    response = _get(http, tokens, base, '/v2/meters/cpu/statistics',
                    'user-a', groupby='project_id')
    assert response.status_code == 200, response.text
    (got,) = response.json()
    (want,) = oracle.reference_statistics(
        stored, storage_base.SampleFilter(project_id=project, meter='cpu'),
        groupby=['project_id'])
    assert got['groupby'] == {'project_id': project}
    for name in ('count', 'min', 'max', 'sum'):
        assert got[name] == want[name], name
    assert got['avg'] == pytest.approx(want['avg'])


@pytest.mark.parametrize('path', ['/v2/samples', '/v2/meters',
                                  '/v2/resources',
                                  '/v2/meters/cpu/statistics',
                                  '/v2/meters/cpu'])
@pytest.mark.parametrize('op', ['eq', 'in'])
def test_member_naming_another_project_is_403(api, http, tokens, keystone,
                                              path, op):
    base, _ = api
    other = keystone.user_b.project_id
    value = (other if op == 'eq'
             else f'{keystone.user_a.project_id},{other}')
    response = _get(http, tokens, base, path, 'user-a',
                    **{'q.field': 'project_id', 'q.op': op,
                       'q.value': value})
    error = _assert_error(response, 403)
    assert other in error['faultstring']


def test_member_naming_its_project_is_allowed(api, http, tokens, keystone):
    base, stored = api
    project = keystone.user_a.project_id
    response = _get(http, tokens, base, '/v2/meters/memory', 'user-a',
                    **{'q.field': 'project_id', 'q.value': project})
    assert response.status_code == 200, response.text
    assert len(response.json()) == sum(
        1 for s in stored
        if s['project_id'] == project and s['name'] == 'memory')


def test_member_reading_another_projects_ids_is_404(api, http, tokens,
                                                    keystone):
    base, stored = api
    theirs = next(s for s in stored
                  if s['project_id'] == keystone.user_b.project_id)
    ours = next(s for s in stored
                if s['project_id'] == keystone.user_a.project_id)
    _assert_error(_get(http, tokens, base, f'/v2/samples/{theirs["id"]}',
                       'user-a'), 404)
    _assert_error(_get(http, tokens, base,
                       f'/v2/resources/{theirs["resource_id"]}', 'user-a'),
                  404)
    response = _get(http, tokens, base, f'/v2/samples/{ours["id"]}',
                    'user-a')
    assert response.status_code == 200, response.text
    assert response.json()['id'] == ours['id']
    # The owner of the project-b sample does read it.
    response = _get(http, tokens, base, f'/v2/samples/{theirs["id"]}',
                    'user-b')
    assert response.status_code == 200, response.text


def test_admin_sees_every_project(api, http, tokens, keystone):
    base, stored = api
    projects = {s['project_id'] for s in stored}
    assert len(projects) == 3
    for path in ('/v2/samples', '/v2/meters', '/v2/resources'):
        response = _get(http, tokens, base, path, 'admin', limit=1000)
        assert response.status_code == 200, response.text
        assert projects <= {item['project_id'] for item in response.json()}
    response = _get(http, tokens, base, '/v2/meters/cpu/statistics',
                    'admin', groupby='project_id')
    assert response.status_code == 200, response.text
    counts = {s['groupby']['project_id']: s['count']
              for s in response.json()}
    assert counts == {p: sum(1 for s in stored if s['project_id'] == p
                             and s['name'] == 'cpu') for p in projects}


def test_service_user_queries_a_set_of_projects(api, http, tokens,
                                                keystone):
    base, stored = api
    wanted = {keystone.user_a.project_id, keystone.user_b.project_id}
    query = {'q.field': 'project_id', 'q.op': 'in',
             'q.value': ','.join(sorted(wanted))}
    response = _get(http, tokens, base, '/v2/samples', 'calipso',
                    limit=1000, **query)
    assert response.status_code == 200, response.text
    got = _without_posted(response.json())
    assert sorted(s['id'] for s in got) == sorted(
        s['id'] for s in stored if s['project_id'] in wanted)
    response = _get(http, tokens, base, '/v2/meters/memory/statistics',
                    'calipso', groupby='project_id', **query)
    assert response.status_code == 200, response.text
    assert {s['groupby']['project_id'] for s in response.json()} == wanted


def _post(http, tokens, base, user, **fields):
    sample = dict(counter_name=POSTED, counter_type='gauge',
                  counter_unit='item', counter_volume=3,
                  resource_id='posted-1', **fields)
    return http.post(f'{base}/v2/meters/{POSTED}', json=[sample],
                     headers={'X-Auth-Token': tokens(user)}, timeout=10)


def test_member_posts_to_its_project_only(api, http, tokens, keystone):
    base, _ = api
    a, b = keystone.user_a, keystone.user_b
    response = _post(http, tokens, base, 'user-a')
    assert response.status_code == 201, response.text
    (posted,) = response.json()
    assert (posted['project_id'], posted['user_id']) == (a.project_id, a.id)
    response = _post(http, tokens, base, 'user-a', project_id=a.project_id)
    assert response.status_code == 201, response.text
    error = _assert_error(
        _post(http, tokens, base, 'user-a', project_id=b.project_id), 403)
    assert b.project_id in error['faultstring']
    response = _get(http, tokens, base, f'/v2/meters/{POSTED}', 'user-a')
    assert response.status_code == 200, response.text
    assert [s['project_id'] for s in response.json()] == [a.project_id] * 2
    response = _get(http, tokens, base, f'/v2/meters/{POSTED}', 'user-b')
    assert response.json() == []


def test_resource_reused_by_another_project_shows_nothing_of_it(
        api, http, tokens, keystone):
    """Another project's member posts on a resource id of project-a,
    before and after its samples: project-a's member, and the service
    user naming project-a, see the resource as project-a's samples make
    it, in the list and the item alike."""
    base, stored = api
    a = keystone.user_a
    for stamp in ('2024-05-01T09:00:00', '2024-05-01T13:00:00'):
        response = http.post(f'{base}/v2/meters/{POSTED}', json=[{
            'counter_name': POSTED, 'counter_type': 'gauge',
            'counter_unit': 'item', 'counter_volume': 1,
            'resource_id': 'vm-a1', 'timestamp': stamp,
            'resource_metadata': {'writer': 'project-b'}}],
            headers={'X-Auth-Token': tokens('user-b')}, timeout=10)
        assert response.status_code == 201, response.text
    own = [s for s in stored if s['resource_id'] == 'vm-a1']
    in_a = [('q.field', 'project_id'), ('q.op', 'in'),
            ('q.value', a.project_id)]
    for user, scope in (('user-a', []), ('calipso', in_a)):
        headers = {'X-Auth-Token': tokens(user)}
        by_id = [('q.field', 'resource_id'), ('q.op', 'eq'),
                 ('q.value', 'vm-a1')]
        listed = http.get(f'{base}/v2/resources', params=by_id + scope,
                          headers=headers, timeout=10)
        assert listed.status_code == 200, listed.text
        item = http.get(f'{base}/v2/resources/vm-a1', params=scope,
                        headers=headers, timeout=10)
        assert item.status_code == 200, item.text
        assert listed.json() == [item.json()], user
        resource = item.json()
        assert resource['project_id'] == a.project_id
        assert resource['first_sample_timestamp'] == '2024-05-01T10:00:00'
        assert resource['last_sample_timestamp'] == '2024-05-01T12:30:00'
        assert 'writer' not in resource['metadata']
        assert sorted(link['rel'] for link in resource['links']) == sorted(
            {'self'} | {s['name'] for s in own})
    # HEAD answers as GET, without the body.
    head = http.head(f'{base}/v2/resources/vm-a1', timeout=10,
                     headers={'X-Auth-Token': tokens('user-a')})
    assert head.status_code == 200 and head.content == b''
    # A period no store can count in is a 400, not a 503.
    _assert_error(_get(http, tokens, base, '/v2/meters/cpu/statistics',
                       'user-a', period='99999999999999999999'), 400)
