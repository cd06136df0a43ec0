"""The whole multi-tenant path with a real Keystone: the admin-only
channel controller (keystonemiddleware), the proxy it starts with the
service credentials it was given, the query API validating that
service user's tokens, and a tenant with its channel token."""

import datetime

import pytest
import requests

from calipso_agent import storage
from tests.functional.proxy.controller import test_app as test_controller
from tests.helpers import basics, daemons

pytestmark = pytest.mark.functional

T0 = datetime.datetime(2026, 5, 1, tzinfo=datetime.UTC)


@pytest.fixture(scope='module')
def deployment(keystone, tmp_path_factory):
    workdir = tmp_path_factory.mktemp('controller-keystone')
    database = f'sqlite:///{workdir}/calipso.sqlite'
    store = storage.get_connection(basics.make_conf(
        database__connection=database))
    store.record_samples([
        basics.make_sample(i, project_id=keystone.projects[project],
                            resource_id=f'vm-{project}',
                            timestamp=(T0 + datetime.timedelta(minutes=i))
                            .isoformat())
        for i, project in enumerate(['project-a', 'project-b'] * 3)])
    store.close()
    api = daemons.APIServer(
        workdir / 'api', database, auth_strategy='keystone',
        extra_config=daemons.keystone_authtoken_config(keystone))
    api.start()
    (workdir / 'controller').mkdir()
    controller = test_controller.Controller(str(workdir / 'controller'))
    user = keystone.proxy_user
    with open(controller.config) as handle:
        config = handle.read()
    config = config.replace('auth_strategy = noauth',
                            'auth_strategy = keystone')
    config = config.replace(
        'backend_url = ', f'backend_url = {api.url}\n# was: ')
    config += daemons.keystone_authtoken_config(keystone) + (
        '[service_credentials]\nauth_type = password\n'
        f'auth_url = {keystone.url}\nusername = {user.name}\n'
        f'password = {user.password}\nproject_name = {user.project_name}\n'
        'user_domain_name = Default\nproject_domain_name = Default\n')
    with open(controller.config, 'w') as handle:
        handle.write(config)
    try:
        controller.start()
        yield controller, api
    finally:
        controller.cleanup()
        api.stop()


def test_the_controller_api_is_admin_only(keystone, deployment):
    controller, _ = deployment
    assert controller.api('GET').status_code == 401
    member = controller.api(
        'GET', headers={'X-Auth-Token': keystone.token(keystone.user_a)})
    assert member.status_code == 403
    assert member.json()['error_message']['faultcode'] == 'Client'
    refused = controller.api(
        'POST', json={'name': 'x', 'tenant_list': ['p']},
        headers={'X-Auth-Token': keystone.token(keystone.user_a)})
    assert refused.status_code == 403
    # The proxies' service user (a reader, in every proxy.conf) is not
    # an admin of the controller.
    for method, body in (('GET', None),
                         ('POST', {'name': 'x', 'tenant_list': ['p']})):
        refused = controller.api(method, json=body, headers={
            'X-Auth-Token': keystone.token(keystone.proxy_user)})
        assert refused.status_code == 403, refused.text
    admin = controller.api(
        'GET', headers={'X-Auth-Token': keystone.token(keystone.admin)})
    assert admin.status_code == 200, admin.text


def test_a_tenant_reads_its_projects_through_its_channel(keystone,
                                                         deployment):
    controller, _ = deployment
    admin = {'X-Auth-Token': keystone.token(keystone.admin)}
    project_a = keystone.projects['project-a']
    created = controller.api('POST', headers=admin, json={
        'name': 'analytics-a', 'tenant_list': [project_a]})
    assert created.status_code == 201, created.text
    channel = created.json()
    assert channel['creator'] == keystone.admin.id
    url = controller.wait_url(channel['id'], headers=admin)
    tenant = {'X-Auth-Token': channel['token']}
    samples = requests.get(url.rstrip('/') + '/v2/samples', headers=tenant,
                           timeout=30)
    assert samples.status_code == 200, samples.text
    assert {s['project_id'] for s in samples.json()} == {project_a}
    assert len(samples.json()) == 3
    keystone_tenant = requests.get(
        url.rstrip('/') + '/v2/meters', timeout=30,
        headers={'X-Auth-Token': keystone.token(keystone.user_a)})
    assert keystone_tenant.status_code == 200, keystone_tenant.text
    refused = requests.get(
        url.rstrip('/') + '/v2/meters', timeout=30,
        headers={'X-Auth-Token': keystone.token(keystone.user_b)})
    assert refused.status_code == 401
    deleted = controller.api('DELETE', f'{channel["id"]}/', headers=admin)
    assert deleted.status_code == 204
    with pytest.raises(requests.ConnectionError):
        requests.get(url.rstrip('/') + '/v2/samples', headers=tenant,
                     timeout=5)
