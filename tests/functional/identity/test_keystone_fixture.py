"""The Keystone fixture (tests/helpers) against the real server."""

import datetime
import time

import pytest
from keystoneauth1 import exceptions as ks_exc

from tests.helpers import identity

pytestmark = pytest.mark.functional


def role_names(token_body):
    return {role['name'] for role in token_body['roles']}


@pytest.mark.parametrize('name', ['user-a', 'user-b'])
def test_user_token_is_scoped_to_its_project(keystone, name):
    user = keystone.users[name]
    body = keystone.validate(keystone.token(user))
    assert body['user']['id'] == user.id
    assert body['project']['id'] == user.project_id
    assert body['project']['name'] == f'project-{name[-1]}'
    assert 'member' in role_names(body)
    assert 'admin' not in role_names(body)


def test_projects_and_users_are_distinct(keystone):
    assert keystone.user_a.project_id != keystone.user_b.project_id
    assert keystone.projects['project-a'] == keystone.user_a.project_id
    assert keystone.projects['project-b'] == keystone.user_b.project_id
    assert keystone.user_a.id != keystone.user_b.id


def test_admin_token_has_admin_role(keystone):
    body = keystone.validate(keystone.token(keystone.admin))
    assert body['project']['id'] == keystone.projects['admin']
    assert 'admin' in role_names(body)


def test_service_user_is_admin_of_service_project(keystone):
    service = keystone.service_user
    assert service.name == 'calipso'
    session = keystone.session(service)
    body = session.get(
        f'{keystone.url}/auth/tokens',
        headers={'X-Subject-Token': keystone.token(keystone.user_a)},
    ).json()['token']
    assert body['project']['id'] == keystone.user_a.project_id
    own = keystone.validate(session.get_token())
    assert own['project']['id'] == keystone.projects['service']
    assert 'admin' in role_names(own)


def test_catalog_has_the_public_identity_endpoint(keystone):
    catalog = keystone.validate(keystone.token(keystone.user_a))['catalog']
    (identity_service,) = [s for s in catalog if s['type'] == 'identity']
    (endpoint,) = identity_service['endpoints']
    assert endpoint['interface'] == 'public'
    assert endpoint['region_id'] == identity.REGION
    assert endpoint['url'] == keystone.url
    assert keystone.url.startswith(f'http://{identity.HOST}:')


def test_wrong_password_is_401(keystone):
    user = keystone.user_a
    wrong = identity.User(user.name, user.password + 'x', user.project_name)
    with pytest.raises(ks_exc.Unauthorized) as error:
        keystone.token(wrong)
    assert error.value.http_status == 401


@pytest.fixture(scope='module')
def short_keystone():
    with identity.Keystone(token_expiration=3) as server:
        yield server


def test_token_is_invalid_after_expiry(short_keystone):
    token = short_keystone.token(short_keystone.user_a)
    body = short_keystone.validate(token)
    assert body is not None
    expires = datetime.datetime.fromisoformat(
        body['expires_at'].replace('Z', '+00:00'))
    issued = datetime.datetime.fromisoformat(
        body['issued_at'].replace('Z', '+00:00'))
    assert (expires - issued).total_seconds() == pytest.approx(3, abs=1)
    now = datetime.datetime.now(datetime.UTC)
    time.sleep(max((expires - now).total_seconds(), 0) + 1)
    assert short_keystone.validate(token) is None
