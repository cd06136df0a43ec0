"""The topology page's deployment for the browser tests: the real
Keystone of tests/helpers/identity.py, a real calipso-api (Keystone auth)
over an SQLite store holding the inventory and samples of the last hour,
a real channel proxy of project-a, and Debian's headless chromium."""

import contextlib
import datetime
import os

import pytest

from calipso_agent import storage
from calipso_agent.wsgi import static_files
from tests.helpers import basics, browser, daemons
from tests.helpers import inventory as inv

CHANNEL_PROJECT = 'project-a'
DOWN_PORT = 'p1-vm-a1'
BIG_HOST = 'compute-9'
BIG_HOST_INSTANCES = 66  # its clique: 66 × (instance, vNIC, port) + 3


def service_credentials(keystone):
    """The proxies' reader-only user."""
    user = keystone.proxy_user
    return {'auth_type': 'password', 'auth_url': keystone.url,
            'username': user.name, 'password': user.password,
            'project_name': user.project_name,
            'user_domain_name': 'Default',
            'project_domain_name': 'Default'}


def page_cloud():
    """tests/helpers/inventory.py's small cloud (two tenants sharing
    compute-1, compute-2 DOWN, agents, a deleted instance) with vm-a1's
    second port DOWN, and a host whose clique has 201 objects."""
    cloud = inv.small_cloud()
    cloud.objects[DOWN_PORT]['state'] = 'DOWN'
    zone = cloud.objects['az-zone-east']
    host = cloud.add(inv.obj(BIG_HOST, 'host', parent=zone, host=BIG_HOST))
    cloud.connect(host, zone)
    for index in range(BIG_HOST_INSTANCES):
        inv.instance_on(cloud, cloud.objects['project-a'], host,
                        cloud.objects['net-a'], cloud.objects['sub-a'],
                        f'vm-big-{index:02d}')
    return cloud


def recent_samples(now):
    """cpu_util of vm-a1 every 5 minutes of the last hour."""
    return [basics.make_sample(
        index, name='cpu_util', type='gauge', unit='%',
        volume=float(10 + index * 3),
        resource_id='vm-a1', project_id='project-a',
        timestamp=(now - datetime.timedelta(minutes=5 * index + 1))
        .isoformat()) for index in range(12)]


@pytest.fixture(scope='module')
def cloud():
    return page_cloud()


@contextlib.contextmanager
def deploy(workdir, keystone, load, channel_projects):
    """(store, API server, proxy server): calipso-api (Keystone auth)
    over an SQLite store ``load(store)`` filled, and the proxy of a
    channel of ``channel_projects``."""
    if browser.chromium_paths() is None:
        pytest.skip('chromium and chromium-driver are not installed '
                    '(.ci/run installs them)')
    assert os.path.exists(os.path.join(static_files.ROOT, 'vendor',
                                       'cytoscape.min.js')), \
        'the page\'s libraries are not built: run tools/build-ui.sh'
    database = f'sqlite:///{workdir}/calipso.sqlite'
    store = storage.get_connection(
        basics.make_conf(database__connection=database))
    load(store)
    api = daemons.APIServer(
        workdir / 'api', database, auth_strategy='keystone',
        extra_config=daemons.keystone_authtoken_config(keystone))
    api.start()
    proxy = daemons.ProxyServer(workdir / 'proxy', channel_projects,
                                api.url, service_credentials(keystone))
    try:
        proxy.start()
        yield store, api, proxy
    finally:
        proxy.stop()
        api.stop()
        store.close()


@pytest.fixture(scope='module')
def deployment(keystone, tmp_path_factory, cloud):
    """The page's deployment over ``cloud`` and vm-a1's recent cpu_util,
    a channel of project-a."""
    def load(store):
        cloud.store(store)
        now = datetime.datetime.now(datetime.UTC)
        assert not store.record_samples(recent_samples(now)).rejected
    with deploy(tmp_path_factory.mktemp('ui-deployment'), keystone, load,
                [CHANNEL_PROJECT]) as parts:
        yield parts


@pytest.fixture(scope='module')
def downloads(tmp_path_factory):
    return tmp_path_factory.mktemp('ui-downloads')


@pytest.fixture(scope='module')
def chromium(deployment, downloads):
    with browser.chromium(downloads) as session:
        yield session


@pytest.fixture
def admin_page(chromium, deployment, keystone, tmp_path):
    """The page on calipso-api, signed in with an admin's Keystone
    token; screenshots in the test's tmp dir."""
    _, api, _ = deployment
    page = browser.Page(chromium, api.url, tmp_path / 'screenshots')
    page.open()
    if page.by_id('signin').is_displayed():
        page.sign_in(keystone.token(keystone.admin))
    else:
        page.wait_idle()
    return page
