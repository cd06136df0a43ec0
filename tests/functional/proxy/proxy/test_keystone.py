"""A channel's proxy with real parts: the real Keystone of
tests/helpers/identity.py, the real calipso-api validating tokens with
keystonemiddleware, the real calipso-proxy calling it with its service
credentials, and python-ceilometerclient 2.9.0 as the tenant.

The channel authorizes project-a and a project Keystone does not know
(``project-z``: channels name OpenStack projects of any region);
project-b is outside.
"""

import collections
import contextlib
import datetime
import json
import secrets
import threading
import time

import pytest
import requests
from ceilometerclient import client as ceilometer_client

from calipso_agent import project_scope, storage
from calipso_proxy.controller import channels
from calipso_proxy.proxy import liveness
from tests.helpers import basics, daemons
from tests.helpers.identity import Keystone

pytestmark = pytest.mark.functional

CHANNEL_TOKEN = daemons.CHANNEL_TOKEN
ProxyServer = daemons.ProxyServer
T0 = datetime.datetime(2026, 4, 1, tzinfo=datetime.UTC)


def service_credentials(keystone):
    """The proxies' reader-only user (never the admin)."""
    user = keystone.proxy_user
    return {'auth_type': 'password', 'auth_url': keystone.url,
            'username': user.name, 'password': user.password,
            'project_name': user.project_name,
            'user_domain_name': 'Default',
            'project_domain_name': 'Default'}


def fill_store(database, projects):
    conf = basics.make_conf(database__connection=database)
    store = storage.get_connection(conf)
    samples = []
    for p, project in enumerate(projects):
        for i in range(6):
            samples.append(basics.make_sample(
                p * 100 + i, project_id=project, user_id=f'user-{p}',
                resource_id=f'vm-{p}-{i % 2}', volume=float(p * 10 + i),
                timestamp=(T0 + datetime.timedelta(minutes=10 * i))
                .isoformat()))
    store.record_samples(samples)
    store.close()
    return samples


@contextlib.contextmanager
def stack(workdir, keystone, token_cache_time=300):
    """API (Keystone auth) + proxy of a channel of project-a and
    project-z over a store of project-a, project-b and project-z."""
    project_a = keystone.projects['project-a']
    project_b = keystone.projects['project-b']
    database = f'sqlite:///{workdir}/calipso.sqlite'
    samples = fill_store(database, [project_a, project_b, 'project-z'])
    extra = daemons.keystone_authtoken_config(keystone) + (
        f'token_cache_time = {token_cache_time}\n')
    api = daemons.APIServer(workdir / 'api', database,
                            auth_strategy='keystone', extra_config=extra)
    api.start()
    proxy = ProxyServer(workdir / 'proxy', [project_a, 'project-z'],
                        api.url, service_credentials(keystone))
    try:
        proxy.start()
        yield api, proxy, samples
    finally:
        proxy.stop()
        api.stop()


@pytest.fixture(scope='module')
def deployed(keystone, tmp_path_factory):
    # keystonemiddleware asks Keystone about every token (no cache), so
    # a revoked service token is refused at once.
    with stack(tmp_path_factory.mktemp('proxy-keystone'), keystone,
               token_cache_time=-1) as parts:
        yield parts


def projects_of(items):
    return {item['project_id'] for item in items}


def test_channel_token_sees_the_channel_projects_only(keystone, deployed):
    _, proxy, samples = deployed
    channel = {keystone.projects['project-a'], 'project-z'}
    answer = proxy.get('/v2/samples', params={'limit': 1000})
    assert answer.status_code == 200, answer.text
    assert projects_of(answer.json()) == channel
    assert len(answer.json()) == len(
        [s for s in samples if s.project_id in channel])
    for path in ('/v2/meters', '/v2/resources', '/v2/meters/cpu'):
        answer = proxy.get(path)
        assert answer.status_code == 200, answer.text
        assert projects_of(answer.json()) == channel


def test_tenant_tokens(keystone, deployed):
    _, proxy, _ = deployed
    user_a = proxy.get('/v2/meters', token=keystone.token(keystone.user_a))
    assert user_a.status_code == 200, user_a.text
    for token in (None, 'garbage', keystone.token(keystone.user_b)):
        answer = proxy.get('/v2/meters', token=token)
        assert answer.status_code == 401, answer.text
        assert answer.json()['error_message']['faultcode'] == 'Client'


def test_a_project_outside_the_channel_is_403_and_its_ids_404(keystone,
                                                               deployed):
    _, proxy, samples = deployed
    project_b = keystone.projects['project-b']
    answer = proxy.get('/v2/samples', params={'q.field': 'project_id',
                                              'q.value': project_b})
    assert answer.status_code == 403
    assert project_b in answer.json()['error_message']['faultstring']
    other = next(s for s in samples if s.project_id == project_b)
    assert proxy.get(f'/v2/samples/{other.id}').status_code == 404
    assert proxy.get(f'/v2/resources/{other.resource_id}').status_code in (
        404,)


def test_a_revoked_service_token_makes_the_proxy_authenticate_again(
        keystone, deployed):
    api, proxy, _ = deployed
    assert proxy.get('/v2/meters').status_code == 200
    before = keystone.token(keystone.proxy_user)
    time.sleep(1.1)
    keystone.revoke_tokens(keystone.proxy_user)
    time.sleep(1.1)
    assert keystone.validate(before) is None, 'the tokens were not revoked'
    answer = proxy.get('/v2/meters')
    assert answer.status_code == 200, answer.text
    # The backend did refuse the proxy's revoked token first.
    assert 'Authorization failed for token' in api.log()


def test_ceilometerclient_with_the_channel_token(keystone, deployed):
    _, proxy, samples = deployed
    channel = {keystone.projects['project-a'], 'project-z'}
    ours = [s for s in samples if s.project_id in channel]
    client = ceilometer_client.get_client(2, os_endpoint=proxy.url,
                                          os_token=CHANNEL_TOKEN)
    meters = client.meters.list()
    assert {m.project_id for m in meters} == channel
    listed = client.samples.list(meter_name='cpu', limit=1000)
    assert len(listed) == len(ours)
    new_style = client.new_samples.list(q=[
        {'field': 'resource_id', 'op': 'eq', 'value': 'vm-0-0'}])
    assert {s.resource_id for s in new_style} == {'vm-0-0'}
    assert projects_of([s.to_dict() for s in new_style]) == {
        keystone.projects['project-a']}
    (stats,) = client.statistics.list('cpu', q=[])
    assert stats.count == len(ours)
    assert stats.avg == pytest.approx(
        sum(s.volume for s in ours) / len(ours))
    grouped = client.statistics.list('cpu', groupby=['project_id'])
    assert {g.groupby['project_id'] for g in grouped} == channel
    resources = client.resources.list()
    assert {r.project_id for r in resources} == channel
    found = client.query_samples.query(
        filter='{"or": [{"=": {"resource": "vm-1-0"}}, '
               '{">": {"volume": -1}}]}', limit=1000)
    assert projects_of([s.to_dict() for s in found]) == channel
    assert len(found) == len(ours)


def test_an_expired_service_token_is_renewed(tmp_path):
    with Keystone(token_expiration=4) as short_lived, \
            stack(tmp_path, short_lived) as (_, proxy, _):
        assert proxy.get('/v2/meters').status_code == 200
        time.sleep(5)
        answer = proxy.get('/v2/meters')
        assert answer.status_code == 200, answer.text


# --- issue 11: hostile tenants --------------------------------------------

def error_of(answer, status):
    assert answer.status_code == status, answer.text
    assert answer.headers['Content-Type'].startswith('application/json')
    return answer.json()['error_message']


@pytest.mark.parametrize('expression', [
    {'=': {'project_id': {'a': 1}}},
    {'in': {'project_id': [['x']]}},
    {'and': [{'=': {'volume': 1}}, {'not': {'in': {'project': [None]}}}]},
])
def test_a_complex_query_with_a_project_not_a_string_is_400(deployed,
                                                            expression):
    _, proxy, _ = deployed
    answer = requests.post(
        proxy.url + '/v2/query/samples', timeout=30,
        json={'filter': json.dumps(expression)},
        headers={'X-Auth-Token': CHANNEL_TOKEN})
    assert error_of(answer, 400)['faultcode'] == 'Client'


@pytest.mark.parametrize('op', ['eq', 'ne', 'lt', 'le', 'gt', 'ge', 'like',
                                'in'])
def test_a_term_naming_a_foreign_project_is_403_whatever_the_operator(
        keystone, deployed, op):
    _, proxy, _ = deployed
    project_b = keystone.projects['project-b']
    answer = proxy.get('/v2/samples', params={
        'q.field': 'project_id', 'q.op': op, 'q.value': project_b})
    assert project_b in error_of(answer, 403)['faultstring']
    answer = requests.post(
        proxy.url + '/v2/query/samples', timeout=30,
        headers={'X-Auth-Token': CHANNEL_TOKEN},
        json={'filter': json.dumps({'not': {
            {'eq': '=', 'ne': '!=', 'lt': '<', 'le': '<=', 'gt': '>',
             'ge': '>='}.get(op, op): {'project_id': project_b}}})})
    assert project_b in error_of(answer, 403)['faultstring']


@pytest.mark.parametrize('path', ['/v2/resources', '/v2/resources/vm-0-0'])
def test_the_host_header_does_not_change_the_links(deployed, path):
    _, proxy, _ = deployed
    answer = proxy.get(path, headers={'Host': 'evil.example:666'})
    assert answer.status_code == 200, answer.text
    items = answer.json() if isinstance(answer.json(), list) else [
        answer.json()]
    hrefs = [link['href'] for item in items for link in item['links']]
    assert hrefs and all(h.startswith(proxy.url + '/v2/') for h in hrefs)


@pytest.mark.parametrize('path', ['/v2/meters', '/v2/samples',
                                  '/v2/resources/vm-0-0',
                                  '/v2/meters/cpu/statistics',
                                  '/v2/capabilities'])
def test_head_answers_as_get_without_a_body(deployed, path):
    _, proxy, _ = deployed
    headers = {'X-Auth-Token': CHANNEL_TOKEN}
    got = requests.get(proxy.url + path, headers=headers, timeout=30)
    head = requests.head(proxy.url + path, headers=headers, timeout=30)
    assert (head.status_code, got.status_code) == (200, 200), head.text
    assert head.content == b''
    assert head.headers['Content-Type'] == got.headers['Content-Type']
    assert head.headers['Content-Length'] == str(len(got.content))


# The proxies' service user is a reader: the API refuses what a proxy bug
# or a stolen proxy.conf could ask beyond the channel's reads.

def test_the_reader_service_user_never_writes(keystone, deployed):
    api, _, _ = deployed
    project_a = keystone.projects['project-a']
    token = keystone.token(keystone.proxy_user)
    for project in (project_a, keystone.proxy_user.project_id):
        answer = requests.post(
            api.url + '/v2/meters/cpu', timeout=30,
            headers={'X-Auth-Token': token, 'X-Calipso-Project-Scope':
                     project_a},
            json=[{'counter_name': 'cpu', 'counter_type': 'gauge',
                   'counter_unit': 'ns', 'counter_volume': 1,
                   'resource_id': 'vm-x', 'project_id': project}])
        error_of(answer, 403)


def test_the_reader_service_user_cannot_touch_the_polling_sources(
        keystone, deployed):
    api, _, _ = deployed
    project_a = keystone.projects['project-a']
    headers = {'X-Auth-Token': keystone.token(keystone.proxy_user),
               'X-Calipso-Project-Scope': project_a}
    error_of(requests.get(api.url + '/v2/polling/sources', timeout=30,
                          headers=headers), 403)
    error_of(requests.put(api.url + '/v2/polling/sources/any', timeout=30,
                          headers=headers, json={'interval': 1}), 403)


def test_the_reader_reads_only_the_declared_projects(keystone, deployed):
    api, _, samples = deployed
    project_a = keystone.projects['project-a']
    project_b = keystone.projects['project-b']
    token = keystone.token(keystone.proxy_user)

    def read(path, scope, **params):
        headers = {'X-Auth-Token': token}
        if scope:
            headers['X-Calipso-Project-Scope'] = scope
        return requests.get(api.url + path, params=params, headers=headers,
                            timeout=30)

    both = {'q.field': 'project_id', 'q.op': 'in',
            'q.value': f'{project_a},{project_b}'}
    only_a = dict(both, **{'q.value': project_a})
    # A query beyond the declared scope, or without a project limit (a
    # proxy that lost its scope term), or without a declared scope.
    error_of(read('/v2/samples', project_a, **both), 403)
    error_of(read('/v2/samples', project_a), 403)
    error_of(read('/v2/samples', None, **only_a), 403)
    answer = read('/v2/samples', project_a, **only_a)
    assert answer.status_code == 200, answer.text
    assert projects_of(answer.json()) == {project_a}
    other = next(s for s in samples if s.project_id == project_b)
    error_of(read(f'/v2/samples/{other.id}', project_a), 404)
    assert read(f'/v2/samples/{other.id}', project_b).status_code == 200


def test_the_proxy_credentials_are_not_an_admins(keystone):
    body = keystone.validate(keystone.token(keystone.proxy_user))
    roles = {role['name'] for role in body['roles']}
    assert 'admin' not in roles
    assert 'calipso_reader' in roles


# --- unknown tokens cannot starve a proxy ---------------------------------

def random_token():
    """A token of Keystone's format (fernet-like) that Keystone refuses."""
    return secrets.token_urlsafe(140)


@contextlib.contextmanager
def own_proxy(keystone, deployed, tmp_path, **options):
    api, _, _ = deployed
    proxy = ProxyServer(tmp_path / 'proxy', [keystone.projects['project-a'],
                                             'project-z'],
                        api.url, service_credentials(keystone), **options)
    try:
        yield proxy.start()
    finally:
        proxy.stop()


def test_refused_tokens_cost_one_keystone_lookup_at_most(keystone, deployed,
                                                         tmp_path):
    with own_proxy(keystone, deployed, tmp_path,
                   failed_auth_burst=1000) as proxy:
        before = keystone.token_validations()
        # Malformed for both formats: never asked.
        for token in ('garbage', 'x' * 31, 'a b' * 20, 'é' * 40,
                      'y' * 2049, 'token;' * 10):
            assert proxy.get('/v2/meters', token=token).status_code == 401
        assert keystone.token_validations() == before
        # A well-formed unknown token: asked once, then refused from the
        # negative cache.
        token = random_token()
        for _ in range(10):
            answer = proxy.get('/v2/meters', token=token)
            assert error_of(answer, 401)['faultcode'] == 'Client'
        assert keystone.token_validations() == before + 1
        # The channel token still passes (its request does reach Keystone:
        # the API validates the proxy's service token).
        assert proxy.get('/v2/meters').status_code == 200


def test_failed_authentications_are_limited_per_address(keystone, deployed,
                                                        tmp_path):
    # One try earned back every 100 s: none while the test runs, however
    # slow Keystone is.
    with own_proxy(keystone, deployed, tmp_path, failed_auth_burst=5,
                   failed_auth_rate=0.01) as proxy:
        before = keystone.token_validations()
        for _ in range(5):
            assert proxy.get('/v2/meters',
                             token=random_token()).status_code == 401
        limited = proxy.get('/v2/meters', token=random_token())
        assert error_of(limited, 429)['faultcode'] == 'Client'
        assert 1 <= int(limited.headers['Retry-After']) <= 100
        # Keystone writes its access log line after its answer: wait for
        # the five, then check that the limited sixth made none.
        basics.wait_until(
            lambda: keystone.token_validations() >= before + 5, 10)
        assert keystone.token_validations() == before + 5
        assert proxy.get('/v2/meters').status_code == 200


def test_a_proxy_hammered_with_unknown_tokens_serves_its_tenant(
        keystone, deployed, tmp_path):
    # No per-address limit: every hammering request is well-formed and
    # new, so only the bound on lookups protects the threads.
    with own_proxy(keystone, deployed, tmp_path, failed_auth_burst=0,
                   max_identity_lookups=2) as proxy:
        stop = threading.Event()
        statuses = collections.Counter()
        missing_retry_after = []

        def hammer():
            http = requests.Session()
            while not stop.is_set():
                answer = http.get(proxy.url + '/v2/meters', timeout=30,
                                  headers={'X-Auth-Token': random_token()})
                statuses[answer.status_code] += 1
                if (answer.status_code == 503 and
                        'Retry-After' not in answer.headers):
                    missing_retry_after.append(answer.headers)

        threads = [threading.Thread(target=hammer) for _ in range(32)]
        for thread in threads:
            thread.start()
        health, alive, tenant = [], [], []
        name = channels.liveness_socket(proxy.channel_id)
        try:
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                # As the controller checks it: 1 s to answer.
                alive.append(liveness.check(name, 1))
                try:
                    health.append(requests.get(
                        proxy.url + '/healthcheck', timeout=5).status_code)
                except requests.RequestException as exc:
                    health.append(repr(exc))
                tenant.append(proxy.get('/v2/meters').status_code)
                time.sleep(0.2)
        finally:
            stop.set()
            for thread in threads:
                thread.join(60)
        assert all(alive), alive
        assert set(health) == {200}, health
        assert set(tenant) == {200}, tenant
        assert set(statuses) <= {401, 503}, statuses
        assert statuses[503] > 0 and not missing_retry_after, statuses
    assert not liveness.check(name, 1), 'a stopped proxy is alive'


# --- the signed scope -----------------------------------------------------

def test_the_api_believes_only_the_scope_the_controller_signed(keystone,
                                                               tmp_path):
    """With [api] scope_signing_key a proxy presents exactly the projects
    it was signed for: the right signature reads, a proxy.conf widened by
    hand (or without the signature) is refused."""
    key = secrets.token_hex(32)
    project_a = keystone.projects['project-a']
    project_b = keystone.projects['project-b']
    database = f'sqlite:///{tmp_path}/calipso.sqlite'
    fill_store(database, [project_a, project_b])
    api = daemons.APIServer(
        tmp_path / 'api', database, auth_strategy='keystone',
        extra_config=daemons.keystone_authtoken_config(keystone)
        + f'[api]\nscope_signing_key = {key}\n')
    api.start()
    signed_a = project_scope.sign(key, [project_a])
    proxies = {
        'signed': ([project_a], {'scope_signature': signed_a}),
        'widened': ([project_a, project_b], {'scope_signature': signed_a}),
        'unsigned': ([project_a], {}),
    }
    try:
        answers = {}
        for name, (projects, options) in proxies.items():
            proxy = ProxyServer(tmp_path / name, projects, api.url,
                                service_credentials(keystone), **options)
            try:
                proxy.start()
                answers[name] = proxy.get('/v2/samples')
            finally:
                proxy.stop()
    finally:
        api.stop()
    assert answers['signed'].status_code == 200, answers['signed'].text
    assert projects_of(answers['signed'].json()) == {project_a}
    for name in ('widened', 'unsigned'):
        # The backend refused the proxy's request: the tenant gets no data.
        assert answers[name].status_code >= 400, (name, answers[name].text)
        assert project_b not in answers[name].text
