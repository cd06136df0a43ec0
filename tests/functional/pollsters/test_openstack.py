"""The OpenStack API pollsters against a real Keystone whose catalog
points at the fake cloud of tests/helpers/openstack_cloud.py, through the
options an operator writes ([service_credentials])."""

import collections

import pytest
from oslo_config import cfg
from stevedore import driver

from calipso_agent import inventory, opts
from calipso_agent.pollsters import base
from tests.helpers import openstack_cloud

pytestmark = pytest.mark.functional

NAMESPACE = 'calipso.poll.central'


class Deployment:
    """The fake cloud served, in Keystone's catalog, and a configuration
    file of the service user's credentials."""

    def __init__(self, keystone, cloud, workdir):
        self.cloud = cloud
        self.server = openstack_cloud.CloudServer(
            cloud, lambda token: keystone.validate(token) is not None)
        self.server.start()
        self.registration = openstack_cloud.register_in_keystone(
            keystone, self.server)
        self.keystone = keystone
        self.workdir = workdir
        self.conf = self.make_conf(keystone.service_user.password)

    def make_conf(self, password):
        keystone, workdir = self.keystone, self.workdir
        user = keystone.service_user
        config = workdir / 'calipso.conf'
        config.write_text(
            f'[database]\nconnection = sqlite:///{workdir}/calipso.sqlite\n'
            f'[inventory_scan]\npage_size = 2\n'
            # The fake cloud's region has no identity endpoint.
            f'services = compute,network,volume\n'
            f'[service_credentials]\nauth_type = password\n'
            f'auth_url = {keystone.url}\nusername = {user.name}\n'
            f'password = {password}\n'
            f'project_name = {user.project_name}\n'
            f'user_domain_name = Default\nproject_domain_name = Default\n'
            f'region_name = {self.registration.region}\n'
            f'interface = internal\n')
        conf = cfg.ConfigOpts()
        opts.register_opts(conf)
        conf(['--config-file', str(config)], project='calipso',
             default_config_files=[])
        return conf

    def close(self):
        self.registration.remove()
        self.server.stop()


@pytest.fixture
def deployment(keystone, tmp_path):
    cloud = openstack_cloud.Cloud.build(
        projects=(keystone.user_a.project_id, keystone.user_b.project_id),
        networks_per_project=2, servers_per_network=2, images=5,
        admin_project=keystone.projects['admin'],
        # Pages of 2 items at most: every list is read over pages.
        max_limit=2)
    for index, image in enumerate(cloud.images.values()):
        image['size'] = 1000 * (index + 1)
    cloud.images[next(iter(cloud.images))]['size'] = None  # being made
    for index, volume in enumerate(cloud.volumes.values()):
        volume['size'] = index + 1
    deployed = Deployment(keystone, cloud, tmp_path)
    yield deployed
    deployed.close()


def context(conf):
    return base.PollingContext(conf, 'central-1', 'api_source',
                               '2026-12-06T06:00:00+00:00')


def discover(conf, name, param=None):
    return driver.DriverManager(base.DISCOVER_NAMESPACE, name,
                                invoke_on_load=True, invoke_args=(conf,)
                                ).driver.discover(context(conf), param)


def poll(conf, meter, resources):
    pollster = driver.DriverManager(NAMESPACE, meter, invoke_on_load=True,
                                    invoke_args=(conf,)).driver
    pollster.meter = meter
    return {s.resource_id: s for s in pollster.get_samples(
        context(conf), {}, resources)}


def test_image_size(deployment):
    conf, cloud = deployment.conf, deployment.cloud
    samples = poll(conf, 'image.size', discover(conf, 'images'))
    expected = {i: image for i, image in cloud.images.items()
                if image['size'] is not None}
    assert set(samples) == set(expected) and len(samples) == 4
    for image_id, made in samples.items():
        assert (made.type, made.unit) == ('gauge', 'B')
        assert made.volume == expected[image_id]['size']
        assert made.project_id == expected[image_id]['owner']
        assert made.resource_metadata['name'] == expected[image_id]['name']


def test_volume_size(deployment):
    conf, cloud = deployment.conf, deployment.cloud
    samples = poll(conf, 'volume.size', discover(conf, 'volumes'))
    assert set(samples) == set(cloud.volumes) and len(samples) == 8
    for volume_id, made in samples.items():
        volume = cloud.volumes[volume_id]
        assert (made.type, made.unit) == ('gauge', 'GB')
        assert made.volume == volume['size']
        assert made.project_id == volume['os-vol-tenant-attr:tenant_id']
        assert made.resource_metadata['instance_ids'] == [
            a['server_id'] for a in volume['attachments']]


def test_floating_ips(deployment):
    conf, cloud = deployment.conf, deployment.cloud
    samples = poll(conf, 'ip.floating', discover(conf, 'floating_ips'))
    assert set(samples) == set(cloud.floatingips) and len(samples) == 2
    for fip_id, made in samples.items():
        fip = cloud.floatingips[fip_id]
        assert (made.volume, made.unit) == (1, 'ip')
        assert made.project_id == fip['project_id']
        assert made.resource_metadata['floating_ip_address'] == \
            fip['floating_ip_address']
        assert made.resource_metadata['port_id'] == fip['port_id']


@pytest.mark.parametrize('meter, collection, unit', [
    ('network.count', 'networks', 'network'),
    ('network.port.count', 'ports', 'port'),
    ('network.router.count', 'routers', 'router')])
def test_counts_per_project(deployment, meter, collection, unit):
    conf, cloud = deployment.conf, deployment.cloud
    samples = poll(conf, meter, discover(conf, 'network_projects'))
    expected = collections.Counter(
        item['project_id'] for item in getattr(cloud, collection).values())
    assert {rid: s.volume for rid, s in samples.items()
            if s.volume} == dict(expected)
    for project, made in samples.items():
        assert made.project_id == project and made.unit == unit


def test_inventory_scan_as_a_pollster(deployment):
    from calipso_agent import storage
    conf = deployment.conf
    resources = discover(conf, 'scan_region')
    assert resources == [{'id': f'region-{deployment.registration.region}',
                          'region': deployment.registration.region}]
    [made] = poll(conf, 'inventory.scan', resources).values()
    store = storage.get_connection(conf)
    try:
        stored = [o for o in store.get_inventory()
                  if not inventory.is_deleted(o)]
    finally:
        store.close()
    assert made.volume == len(stored) > 0
    assert {o['id'] for o in stored} >= set(deployment.cloud.servers)
    assert made.resource_metadata['services_answered'] == sorted(
        conf.inventory_scan.services)
    assert made.resource_metadata['services_failed'] == []


def test_a_failing_service_stops_its_discovery_only(deployment):
    conf, cloud = deployment.conf, deployment.cloud
    cloud.fail('image', 503)
    with pytest.raises(base.PollsterError, match='503'):
        discover(conf, 'images')
    assert len(discover(conf, 'volumes')) == len(cloud.volumes)
    cloud.fail('image', None)
    assert len(discover(conf, 'images')) == len(cloud.images)


def test_credentials_keystone_refuses_are_a_pollster_error(deployment):
    conf = deployment.make_conf('not-the-password')
    with pytest.raises(base.PollsterError, match='image'):
        discover(conf, 'images')
