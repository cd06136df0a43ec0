"""The fake OpenStack cloud (tests/helpers/openstack_cloud.py) in the real
Keystone's catalog."""

import pytest
from keystoneauth1 import exceptions as ks_exc

from tests.helpers import openstack_cloud

pytestmark = pytest.mark.functional


@pytest.fixture
def cloud_server(keystone):
    cloud = openstack_cloud.Cloud.build(projects=(
        keystone.user_a.project_id, keystone.user_b.project_id))
    with openstack_cloud.CloudServer(
            cloud, lambda token: keystone.validate(token) is not None) as s:
        yield s


def test_catalog_points_at_the_fake_cloud(keystone, cloud_server):
    registration = openstack_cloud.register_in_keystone(keystone,
                                                        cloud_server)
    try:
        session = keystone.session(keystone.service_user)
        for service_type, url in cloud_server.endpoints.items():
            for interface in ('public', 'internal'):
                assert session.get_endpoint(
                    service_type=service_type, interface=interface,
                    region_name=registration.region) == url
        resp = session.get('/v2.0/networks', endpoint_filter={
            'service_type': 'network', 'interface': 'internal',
            'region_name': registration.region})
        assert len(resp.json()['networks']) == len(
            cloud_server.cloud.networks)
    finally:
        registration.remove()
    with pytest.raises(ks_exc.EndpointNotFound):
        keystone.session(keystone.service_user).get_endpoint(
            service_type='network', region_name=registration.region)


def test_a_bad_token_is_refused(cloud_server):
    import requests
    resp = requests.get(cloud_server.endpoints['network'] + '/v2.0/ports',
                        headers={'X-Auth-Token': 'not-a-token'})
    assert resp.status_code == 401
