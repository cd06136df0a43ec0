"""The traversals give the same answers on every driver (SQLite and
MongoDB on mongomock) for every object of the small cloud, as an admin
and as a tenant; and a walk follows the clique types file's
directions."""

import mongomock
import pytest

from calipso_agent import shipped
from calipso_agent.inventory_graph import clique_types, traversal
from calipso_agent.inventory_graph import visibility as visibility_mod
from calipso_agent.storage import impl_mongodb
from calipso_agent.storage.sql import sqlite
from tests.helpers import basics
from tests.helpers import inventory as inv

RULES = clique_types.load(f'{shipped.SOURCE_ETC}/clique_types.yaml')


@pytest.fixture(scope='module')
def stores(tmp_path_factory):
    conf = basics.make_conf()
    cloud = inv.small_cloud()
    made = [sqlite.Connection(
        conf, f'sqlite:///{tmp_path_factory.mktemp("walk")}/s.sqlite'),
        impl_mongodb.Connection(conf, 'mongodb://localhost/walk',
                                client=mongomock.MongoClient())]
    made[1].upgrade()
    for store in made:
        cloud.store(store)
    yield cloud, made
    for store in made:
        store.close()


def answers(store, visibility, cloud):
    found = {}
    for oid in sorted(cloud.objects):
        (start,) = store.list_inventory(ids=[oid], deleted=True)
        if not visibility.owns(start):
            continue
        for clique_type in RULES.clique_types_of(start['type']):
            found[oid, clique_type.name] = traversal.clique(
                store, visibility, start, clique_type)
        found[oid, 'impact'] = traversal.impact(store, visibility, RULES,
                                                start)
        found[oid, 'path'] = traversal.path(store, visibility, RULES, start)
    projects = visibility.projects or {'project-a', 'project-b'}
    found['topology'] = traversal.topology(store, visibility, projects)
    return found


@pytest.mark.parametrize('projects', [None, ('project-a',),
                                      ('project-a', 'project-b')])
def test_every_driver_walks_alike(stores, projects):
    cloud, (sql, mongo) = stores
    visibility = visibility_mod.Visibility(projects, 'key')
    expected = answers(sql, visibility, cloud)
    assert len(expected) > 20
    assert answers(mongo, visibility, cloud) == expected


def test_depth_limits_impact(stores):
    cloud, (store, _) = stores
    (host,) = store.list_inventory(ids=['compute-1'])
    admin = visibility_mod.Visibility()
    everything = traversal.impact(store, admin, RULES, host)
    for depth in (1, 2, 3):
        shallow = traversal.impact(store, admin, RULES, host, depth)
        assert {d['id'] for d in shallow['dependents']} == {
            d['id'] for d in everything['dependents'] if d['depth'] <= depth}


def test_a_link_type_without_a_direction_is_not_followed(stores, tmp_path):
    cloud, (store, _) = stores
    path = tmp_path / 'rules.yaml'
    path.write_text('link_types:\n  instance-host: {impact: reverse}\n')
    rules = clique_types.load(str(path))
    (host,) = store.list_inventory(ids=['compute-1'])
    impact = traversal.impact(store, visibility_mod.Visibility(), rules,
                              host)
    assert sorted(d['id'] for d in impact['dependents']) == ['vm-a1',
                                                             'vm-b1']
