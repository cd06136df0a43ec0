"""A channel's proxy with real parts: the real Keystone of
tests/identity.py, the real calipso-api validating tokens with
keystonemiddleware, the real calipso-proxy calling it with its service
credentials, and python-ceilometerclient 2.9.0 as the tenant.

The channel authorizes project-a and a project Keystone does not know
(``project-z``: channels name OpenStack projects of any region);
project-b is outside.
"""

import contextlib
import datetime
import os
import signal
import subprocess
import sys
import time

import pytest
import requests
from ceilometerclient import client as ceilometer_client

from calipso_agent import storage
from calipso_proxy import tenant_auth
from tests import helpers
from tests.identity import Keystone

pytestmark = pytest.mark.functional

CHANNEL_TOKEN = 'channel-token-of-the-tenant'
T0 = datetime.datetime(2026, 4, 1, tzinfo=datetime.UTC)


class ProxyServer:
    """calipso-proxy in a session of its own on a free loopback port, with
    the config file the controller would write."""

    def __init__(self, workdir, projects, backend_url, credentials):
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.port = helpers.free_port()
        self.url = f'http://127.0.0.1:{self.port}'
        self.config_file = os.path.join(self.workdir, 'proxy.conf')
        self.log_path = os.path.join(self.workdir, 'proxy.log')
        lines = ['[DEFAULT]', 'use_stderr = true', '[proxy]',
                 'channel_id = channel-1',
                 f'authorized_projects = {",".join(projects)}',
                 f'backend_url = {backend_url}',
                 f'token_hash = {tenant_auth.token_hash(CHANNEL_TOKEN)}',
                 'keystone_token_cache_time = 0',
                 'host = 127.0.0.1', f'port = {self.port}',
                 '[service_credentials]']
        lines += [f'{k} = {v}' for k, v in credentials.items()]
        with open(self.config_file, 'w') as handle:
            handle.write('\n'.join(lines) + '\n')
        self.process = None

    def start(self, timeout=30):
        with open(self.log_path, 'ab') as log:
            self.process = subprocess.Popen(
                [sys.executable, '-m', 'calipso_proxy.cmd.proxy',
                 '--config-file', self.config_file], cwd=helpers.REPO,
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f'{self.url}/healthcheck',
                                timeout=2).status_code == 200:
                    return self
            if self.process.poll() is not None or (
                    time.monotonic() > deadline):
                self.stop()
                with open(self.log_path) as handle:
                    raise AssertionError(handle.read()[-4000:])
            time.sleep(0.1)

    def stop(self):
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def get(self, path, token=CHANNEL_TOKEN, **kwargs):
        headers = {'X-Auth-Token': token} if token else {}
        return requests.get(self.url + path, headers=headers, timeout=30,
                            **kwargs)


def service_credentials(keystone):
    user = keystone.service_user
    return {'auth_type': 'password', 'auth_url': keystone.url,
            'username': user.name, 'password': user.password,
            'project_name': user.project_name,
            'user_domain_name': 'Default',
            'project_domain_name': 'Default'}


def fill_store(database, projects):
    conf = helpers.make_conf(database__connection=database)
    store = storage.get_connection(conf)
    samples = []
    for p, project in enumerate(projects):
        for i in range(6):
            samples.append(helpers.make_sample(
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
    extra = helpers.keystone_authtoken_config(keystone) + (
        f'token_cache_time = {token_cache_time}\n')
    api = helpers.APIServer(workdir / 'api', database,
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
    before = keystone.token(keystone.service_user)
    time.sleep(1.1)
    keystone.revoke_tokens(keystone.service_user)
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
