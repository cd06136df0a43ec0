"""The inventory routes over the graph the endpoint makes of the real
nova and neutron notifications (../shared/fixtures/notifications): each
tenant reads its objects' cliques, impacts and paths without a foreign
or infrastructure id or name."""

import json

import pytest

from calipso_agent import storage
from calipso_agent.api import app
from tests.helpers import inventory as inv
from tests.unit.api import support


@pytest.fixture(scope='module')
def graph_api(tmp_path_factory):
    conf = support.make_conf(tmp_path_factory.mktemp('fixtures-graph'),
                             api__opaque_id_key='k')
    connection = storage.get_connection(conf)
    for _, notification in inv.handled_fixtures():
        objects, links = inv.split(inv.changes_of(notification))
        connection.apply_inventory(objects, links)
    yield app.setup_app(conf=conf, storage=connection), connection
    connection.close()


def test_tenants_see_no_foreign_or_infrastructure_name(graph_api):
    api, connection = graph_api
    objects = connection.list_inventory(deleted=True)
    projects = sorted({o['project_id'] for o in objects if o['project_id']})
    infrastructure = [o for o in objects if o['project_id'] is None]
    assert projects and infrastructure, 'the fixtures make a graph'
    # Hosts are known from the events by name only (no host object
    # until a scan): the instances' and ports' host fields, and the
    # targets of instance-host links.
    secrets = {text for o in infrastructure for text in (o['id'], o['name'])
               if text}
    secrets |= {o['host'] for o in objects if o.get('host')}
    secrets |= {lk['target_id'] for lk in connection.get_links()
                if lk['link_type'] == 'instance-host'}
    assert 'node-252.cisco.com' in secrets
    checked = 0
    for project in projects:
        client = support.Client(api, support.member(project))
        own = [o for o in objects if o['project_id'] == project]
        paths = ['/v2/inventory?limit=1000&deleted=true', '/v2/topology']
        for item in own:
            paths += [f'/v2/inventory/{item["id"]}{suffix}' for suffix in
                      ('', '/links', '/clique', '/impact', '/path')]
        for path in paths:
            response = client.get(path)
            if path.endswith('/clique') and response.status_code == 404:
                continue
            assert response.status_code == 200, (path, response.text)
            text = json.dumps(response.json)
            for secret in secrets:
                # Quoted, in a path, or anywhere when long enough not to
                # be part of a word ("compute" is in "compute:nova").
                assert f'"{secret}"' not in text and (
                    f'/{secret}/' not in text) and (
                    len(secret) < 8 or secret not in text), (
                    project, path, secret)
            foreign = [o for o in objects if o['project_id'] not in
                       (project, None)]
            for other in foreign:
                assert f'"{other["id"]}"' not in text, (path, other['id'])
            checked += 1
    assert checked > 20
