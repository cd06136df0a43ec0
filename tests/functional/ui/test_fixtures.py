"""The topology page over the inventory the real notification fixtures
(../shared/fixtures/notifications) make through the inventory endpoint,
applied in the order they were sent as the agent applies them. The
notifications name hypervisors but carry none: the hosts they name are
added as the scan adds them. Expectations come from the store."""

import csv
import datetime
import io

import pytest

from calipso_agent import inventory, storage
from tests.functional.ui.conftest import deploy
from tests.helpers import basics, browser, daemons
from tests.helpers import inventory as inv

pytestmark = pytest.mark.functional

DOWN_COLOUR = 'rgb(214,40,40)'


def load_fixture_inventory(store):
    for _, notification in inv.handled_fixtures():
        objects, links = inv.split(inv.changes_of(notification))
        store.apply_inventory(objects, links)
    at = datetime.datetime.now(datetime.UTC).isoformat()
    hosts = {o['host'] for o in store.list_inventory() if o.get('host')}
    store.apply_inventory([
        inventory.make_object('host', host, at, host=host, state='ACTIVE')
        for host in sorted(hosts)])


def live(store, **filters):
    return {o['id']: o for o in store.list_inventory(**filters)}


def channel_project(store):
    """The project with the most objects (the channel's), and the
    objects of the others."""
    objects = store.list_inventory()
    counts = {}
    for item in objects:
        if item['project_id']:
            counts[item['project_id']] = counts.get(item['project_id'],
                                                    0) + 1
    project = max(sorted(counts), key=counts.get)
    return project, {o['id']: o for o in objects
                     if o['project_id'] not in (None, project)}


@pytest.fixture(scope='module')
def deployment(keystone, tmp_path_factory):
    """The fixtures' inventory; the channel: the project with the most
    objects (found on a first load in memory, for the proxy's options)."""
    probe = storage.get_connection(
        basics.make_conf(database__connection='sqlite://'))
    load_fixture_inventory(probe)
    channel = channel_project(probe)[0]
    probe.close()
    with deploy(tmp_path_factory.mktemp('ui-fixtures'), keystone,
                load_fixture_inventory, [channel]) as parts:
        yield parts


def test_tree_shows_the_fixtures_hosts_and_instances(admin_page,
                                                      deployment):
    store, _, _ = deployment
    page = admin_page
    instances = live(store, types=['instance'])
    hosts = {o['host'] for o in instances.values() if o['host']}
    assert hosts, 'the fixtures name no host of a live instance'
    roots = {row['id'] for row in page.tree_rows()}
    assert hosts <= roots
    for host in sorted(hosts):
        page.expand(host)
    shown = {row['id']: row['text'] for row in page.tree_rows()}
    for instance_id, instance in instances.items():
        if instance['host']:
            assert instance_id in shown
            assert instance['name'] in shown[instance_id]
    page.screenshot('fixture-tree')


def test_instance_clique_and_host_impact(admin_page, deployment, downloads):
    store, _, _ = deployment
    page = admin_page
    instances = {i: o for i, o in live(store, types=['instance']).items()
                 if o['host']}
    instance_id, instance = sorted(instances.items())[0]
    host = instance['host']
    page.expand(host)
    page.select(instance_id)
    drawn = page.graph()
    page.screenshot('fixture-instance-clique')
    links = [lk for lk in store.get_links(source_id=instance_id)
             if lk['state'] != 'deleted']
    assert links
    assert {(lk['source_id'], lk['target_id'], lk['link_type'])
            for lk in links} <= {(e['source'], e['target'], e['linkType'])
                                 for e in drawn['edges']}
    assert {instance_id, host} <= {n['id'] for n in drawn['nodes']}

    page.select(host)
    rows = page.press('impact-button', 'Impact of host')
    page.screenshot('fixture-host-impact')
    on_host = {i for i, o in instances.items() if o['host'] == host}
    vnics = {o['id'] for o in store.list_inventory(types=['vnic'])
             if o['parent_id'] in on_host}
    ports = {lk['target_id'] for lk in store.get_links(link_type='vnic-port')
             if lk['source_id'] in vnics and lk['state'] != 'deleted'}
    assert {row['id'] for row in rows} == on_host | vnics | ports
    for old in downloads.glob('impact-*.csv'):
        old.unlink()
    page.by_id('csv-button').click()
    with open(browser.wait_for_file(str(downloads), '.csv'),
              newline='') as handle:
        assert list(csv.DictReader(io.StringIO(handle.read()))) == rows


def test_down_port_is_coloured(admin_page, deployment):
    store, _, _ = deployment
    page = admin_page
    down = sorted(live(store, types=['port'], state='DOWN'))
    assert down, 'the fixtures make no DOWN port'
    page.by_id('search-input').send_keys(down[0] + '\n')
    page.select(down[0])
    node = {n['id']: n for n in page.graph()['nodes']}[down[0]]
    assert node['colour'].replace(' ', '') == DOWN_COLOUR
    assert 'alarm' in node['classes']
    page.screenshot('fixture-down-port')


def test_channel_proxy_shows_nothing_of_other_projects(
        chromium, deployment, tmp_path):
    store, _, proxy = deployment
    channel, foreign = channel_project(store)
    assert foreign
    page = browser.Page(chromium, proxy.url, tmp_path / 'screenshots')
    page.open()
    page.sign_in(daemons.CHANNEL_TOKEN)
    rows = page.tree_rows()
    assert rows
    opened = set()
    for row in rows:
        if row['id'] not in opened and row['type'] in ('project', 'network'):
            page.expand(row['id'])
            opened.add(row['id'])
    shown = {row['id'] for row in page.tree_rows()}
    assert not shown & set(foreign)
    assert all(store.list_inventory(ids=[i])[0]['project_id'] == channel
               for i in shown)
    page.screenshot('fixture-proxy-tree')
    drawable = sorted(i for i in shown if store.list_inventory(ids=[i])[0][
        'type'] in ('network', 'subnet', 'port', 'router', 'instance'))
    assert drawable
    for object_id in drawable[:3]:
        page.select(object_id)
        ids = {n['id'] for n in page.graph()['nodes']}
        assert not ids & set(foreign)
    text = page.session.execute_script('return document.body.innerText')
    assert not any(i in text for i in foreign)
    page.screenshot('fixture-proxy-clique')
