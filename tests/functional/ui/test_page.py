"""The topology page (/ui/, doc/ui.md) in Debian's headless chromium
against the real calipso-api and a real channel proxy (conftest.py): what
a user sees after each step, checked against the inventory stored and the
API's own answers. Each step leaves a screenshot under the test's tmp
dir."""

import csv
import datetime
import io
import json
import time

import pytest
import requests

from tests.functional.ui.conftest import BIG_HOST, CHANNEL_PROJECT, DOWN_PORT
from tests.helpers import browser, daemons

pytestmark = pytest.mark.functional

DOWN_COLOUR = 'rgb(214,40,40)'  # graph.js STATE_COLOURS.DOWN


def admin_get(api, keystone, path):
    answer = requests.get(api.url + path, timeout=30, headers={
        'X-Auth-Token': keystone.token(keystone.admin)})
    assert answer.status_code == 200, answer.text
    return answer.json()


def live(cloud, **conditions):
    """Ids of the cloud's objects that are not deleted and match."""
    return {i for i, o in cloud.objects.items()
            if o['state'] != 'deleted'
            and all(o.get(k) == v for k, v in conditions.items())}


def test_sign_in_keeps_the_token_out_of_urls(chromium, deployment,
                                             keystone, tmp_path):
    _, api, _ = deployment
    page = browser.Page(chromium, api.url, tmp_path / 'screenshots')
    chromium.delete_all_cookies()
    chromium.get(api.url + '/ui/')
    chromium.execute_script('sessionStorage.clear()')
    page.open()
    assert page.by_id('signin').is_displayed()
    page.screenshot('sign-in')
    token = keystone.token(keystone.admin)
    page.sign_in(token)
    assert token not in chromium.current_url
    assert chromium.execute_script(
        "return sessionStorage.getItem('calipso.token')") == token
    urls = chromium.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    assert urls and not any(token in url for url in urls)
    page.screenshot('signed-in')


def test_tree_shows_the_hosts_and_their_instances(admin_page, cloud):
    page = admin_page
    roots = {row['id'] for row in page.tree_rows()}
    assert live(cloud, type='region') <= roots
    assert live(cloud, type='project') <= roots
    page.expand('region-north')
    page.expand('az-zone-east')
    shown = {row['id'] for row in page.tree_rows()}
    hosts = live(cloud, type='host')
    assert hosts and hosts <= shown
    for host in sorted(hosts):
        page.expand(host)
    shown = {row['id']: row for row in page.tree_rows()}
    instances = live(cloud, type='instance')
    assert instances and instances <= set(shown)
    assert 'vm-a-gone' not in shown  # a tombstone is not in the tree
    for instance in instances:
        assert cloud.objects[instance]['name'] in shown[instance]['text']
    page.screenshot('tree-hosts-and-instances')


def test_instance_clique_is_drawn_as_the_api_answers(
        admin_page, deployment, keystone):
    page = admin_page
    _, api, _ = deployment
    page.expand('region-north')
    page.expand('az-zone-east')
    page.expand('compute-1')
    page.select('vm-a1')
    drawn = page.graph()
    page.screenshot('vm-a1-clique')
    expected = admin_get(api, keystone, '/v2/inventory/vm-a1/clique')
    assert {n['id'] for n in drawn['nodes']} == {
        n['id'] for n in expected['nodes']}
    assert {(e['source'], e['target'], e['linkType'])
            for e in drawn['edges']} == {
        (e['source_id'], e['target_id'], e['link_type'])
        for e in expected['edges']}
    # The instance's networking chain, as the inventory has it.
    assert {'vm-a1', 'p0-vm-a1', DOWN_PORT, 'net-a', 'sub-a', 'rtr-a',
            'compute-1'} <= {n['id'] for n in drawn['nodes']}
    assert ('vm-a1', 'compute-1', 'instance-host') in {
        (e['source'], e['target'], e['linkType']) for e in drawn['edges']}
    assert drawn['focus'] == 'vm-a1'


def overlapping(nodes):
    """Pairs of nodes whose boxes (labels included) overlap."""
    found = []
    for index, a in enumerate(nodes):
        for b in nodes[index + 1:]:
            p, q = a['box'], b['box']
            if not (p['x2'] <= q['x1'] or q['x2'] <= p['x1']
                    or p['y2'] <= q['y1'] or q['y2'] <= p['y1']):
                found.append((a['id'], b['id']))
    return found


def test_labels_do_not_overlap_in_a_200_node_clique(admin_page, cloud):
    page = admin_page
    page.expand('region-north')
    page.expand('az-zone-east')
    page.select(BIG_HOST)
    nodes = page.graph()['nodes']
    assert len(nodes) >= 200
    assert {i for i, o in cloud.objects.items()
            if o.get('host') == BIG_HOST and o['type'] == 'instance'} <= {
        n['id'] for n in nodes}
    assert overlapping(nodes) == []
    page.screenshot('200-node-clique-around-its-focus')
    page.by_id('fit-button').click()
    assert overlapping(page.graph()['nodes']) == []
    page.screenshot('200-node-clique-whole')


def test_labels_do_not_overlap_in_an_instance_clique(admin_page):
    page = admin_page
    page.by_id('search-input').send_keys('vm-a1\n')
    page.select('vm-a1')
    assert overlapping(page.graph()['nodes']) == []


def test_a_submitted_search_is_not_redrawn_by_the_typing_timer(admin_page):
    page = admin_page
    page.by_id('search-input').send_keys('vm-a1\n')
    row = page.tree_row('vm-a1')
    time.sleep(0.6)  # past the 300 ms typing debounce
    assert row.get_attribute('data-id') == 'vm-a1'  # not re-rendered


def test_down_port_is_coloured_and_marked(admin_page):
    page = admin_page
    page.by_id('search-input').send_keys('vm-a1\n')
    page.select('vm-a1')
    nodes = {n['id']: n for n in page.graph()['nodes']}
    down = nodes[DOWN_PORT]
    assert down['state'] == 'DOWN'
    assert down['colour'].replace(' ', '') == DOWN_COLOUR
    assert 'alarm' in down['classes'] and '✖' in down['label']
    active = nodes['p0-vm-a1']
    assert active['colour'].replace(' ', '') != DOWN_COLOUR
    assert 'alarm' not in active['classes']
    page.screenshot('down-port')


def test_side_panel_shows_attributes_links_and_a_meter_chart(admin_page):
    page = admin_page
    page.by_id('search-input').send_keys('vm-a1\n')
    page.select('vm-a1')
    panel = page.by_id('panel')
    browser.wait_for(lambda: page.css('#panel svg.chart polyline'),
                     what='the meter chart')
    text = panel.text
    assert 'vm vm-a1' in text and 'm1.small' in text
    assert 'instance-host' in text and 'compute-1' in text
    options = [o.text for o in page.css('#meter-select option')]
    assert options == ['cpu_util']
    points = page.css('#panel svg.chart polyline')[0].get_attribute(
        'points').split()
    assert len(points) == 12  # the last hour's 5-minute periods
    page.screenshot('side-panel')


def test_host_impact_lists_its_instances_vnics_and_ports_and_csv(
        admin_page, cloud, downloads):
    page = admin_page
    page.expand('region-north')
    page.expand('az-zone-east')
    page.select('compute-1')
    rows = page.press('impact-button', 'Impact of host')
    page.screenshot('compute-1-impact')
    instances = live(cloud, type='instance', host='compute-1')
    vnics = {i for i in live(cloud, type='vnic')
             if cloud.objects[i]['parent_id'] in instances}
    ports = {link['target_id'] for link in cloud.links
             if link['link_type'] == 'vnic-port'
             and link['source_id'] in vnics}
    listed = {(row['type'], row['id']) for row in rows}
    workloads = {(t, i) for t, i in listed
                 if t in ('instance', 'vnic', 'port')}
    assert workloads == ({('instance', i) for i in instances}
                         | {('vnic', i) for i in vnics}
                         | {('port', i) for i in ports})
    # Besides them, only the host's own agents (its vEdge) depend on it.
    for kind, object_id in listed - workloads:
        assert kind in ('vedge', 'vservice')
        assert cloud.objects[object_id]['host'] == 'compute-1'
    for row in rows:
        assert row['path'].startswith('compute-1 > ')
        assert row['path'].endswith(row['id'])
    highlighted = {n['id'] for n in page.graph()['nodes']
                   if 'impacted' in n['classes']}
    assert {i for _, i in listed} <= highlighted

    for old in downloads.glob('impact-*.csv'):
        old.unlink()
    page.by_id('csv-button').click()
    path = browser.wait_for_file(str(downloads), '.csv')
    with open(path, newline='') as handle:
        records = list(csv.DictReader(io.StringIO(handle.read())))
    assert list(records[0]) == ['type', 'name', 'id', 'project', 'host',
                                'state', 'path']
    assert records == rows


def test_path_highlights_the_first_object_not_active(admin_page):
    page = admin_page
    page.expand('region-north')
    page.expand('az-zone-east')
    page.expand('compute-2')
    page.select('vm-a2')
    rows = page.press('path-button', 'first not ACTIVE is host')
    page.screenshot('vm-a2-path')
    bad = page.css('#report-table tr.first-bad td')
    assert [cell.text for cell in bad][2:5] == ['host', 'compute-2',
                                                'compute-2']
    assert rows[0]['id'] == 'vm-a2'
    nodes = {n['id']: n for n in page.graph()['nodes']}
    assert 'root-cause' in nodes['compute-2']['classes']


def test_live_refresh_keeps_the_selection(admin_page, deployment, cloud):
    page = admin_page
    store, _, _ = deployment
    page.by_id('search-input').send_keys('vm-b1\n')
    page.select('vm-b1')
    page.css('#graph')  # the graph is there
    port = dict(cloud.objects['p0-vm-b1'])
    later = datetime.datetime.now(datetime.UTC).isoformat()
    store.upsert_inventory([{**port, 'state': 'DOWN',
                             'last_event_at': later, 'updated_at': later}])
    try:
        browser.wait_for(lambda: {n['id']: n for n in page.graph()['nodes']}
                         ['p0-vm-b1']['state'] == 'DOWN', timeout=20,
                         what='the live refresh')
        state = page.graph()
        assert state['focus'] == 'vm-b1'
        chosen = [n['id'] for n in state['nodes'] if 'chosen' in n['classes']]
        assert chosen == ['vm-b1']
        browser.wait_for(lambda: page.text('#panel h2') == 'vm vm-b1',
                         timeout=10, what='the panel of vm-b1')
        page.screenshot('live-refresh')
    finally:
        restored = datetime.datetime.now(datetime.UTC).isoformat()
        store.upsert_inventory([{**port, 'last_event_at': restored,
                                 'updated_at': restored}])


def test_through_a_proxy_no_object_of_another_project(
        chromium, deployment, cloud, tmp_path):
    _, _, proxy = deployment
    page = browser.Page(chromium, proxy.url, tmp_path / 'screenshots')
    page.open()
    page.sign_in(daemons.CHANNEL_TOKEN)
    page.screenshot('proxy-tree')
    foreign = {i for i, o in cloud.objects.items()
               if o['project_id'] not in (CHANNEL_PROJECT, None)}
    infrastructure = {o['id'] for o in cloud.infrastructure()}
    names = {cloud.objects[i]['name'] for i in foreign | infrastructure}

    roots = {row['id'] for row in page.tree_rows()}
    assert roots == live(cloud, type='project', project_id=CHANNEL_PROJECT)
    page.expand(CHANNEL_PROJECT)
    page.expand('net-a')
    shown = {row['id'] for row in page.tree_rows()}
    assert {'net-a', 'sub-a', 'p0-vm-a1'} <= shown
    page.by_id('search-input').send_keys('vm b1\n')  # project-b's
    browser.wait_for(lambda: page.by_id('search-results').is_displayed(),
                     what='the search results')
    page.select('p0-vm-a1')
    page.screenshot('proxy-port-clique')
    drawn = page.graph()
    ids = {n['id'] for n in drawn['nodes']}
    assert 'vm-a1' in ids and not ids & foreign
    assert not ids & infrastructure  # opaque: not even their ids
    page.tree_row('p0-vm-a1')
    page.by_id('search-input').clear()
    page.by_id('search-input').send_keys('vm-a1\n')
    page.select('vm-a1')
    drawn = page.graph()
    page.screenshot('proxy-instance-clique')
    ids = {n['id'] for n in drawn['nodes']}
    assert 'vm-a1' in ids and not ids & (foreign | infrastructure)
    opaque = [n for n in drawn['nodes'] if n['type'] == 'host']
    assert opaque and all('(not shown)' in n['label'] for n in opaque)
    text = page.session.execute_script('return document.body.innerText')
    everything = json.dumps(drawn) + text
    assert not any(i in everything for i in foreign | infrastructure)
    assert not any(name in everything for name in names)
