"""Inventory scan benchmark: a whole scan against its floor.

``python -m bench.inventory_scan [--servers N]`` (part of ``tox -e
bench``) builds a fake cloud (tests/helpers/openstack_cloud.py: N servers
with one port and one volume each, 50 hosts, 20 projects with two
networks each), serves it on loopback and scans it into SQLite and
PostgreSQL, twice: into the empty store, then again unchanged (every
object rewritten with the newer scan time, nothing deleted). Endpoints
come from a fixed catalog (no Keystone: its token validation would be
what is measured).

The floor of each scan is ``apply_inventory`` of the very objects and
links the scan produced, into a store in the same state: what is left
when listing the APIs (HTTP, paging, one os-interface call per server)
and mapping cost nothing. It prints the seconds of each, objects per
second and the ratio. A measurement: the exit status is 0 whatever the
figures.
"""

import argparse
import tempfile
import time
import uuid

import psycopg
from keystoneauth1 import plugin
from keystoneauth1 import session as ks_session

from bench.common import PG_URL, make_conf, say
from calipso_agent.scan import scanner
from calipso_agent.storage.sql import postgresql, sqlite
from tests.helpers import openstack_cloud

SERVICES = ['compute', 'network', 'volume']
SERVICE_TYPES = {'compute': 'compute', 'network': 'network',
                 'volume': 'volumev3'}


class FixedCatalog(plugin.BaseAuthPlugin):
    """An auth plugin with a fixed token and endpoints."""

    def __init__(self, endpoints):
        super().__init__()
        self.endpoints = endpoints

    def get_token(self, session, **kwargs):
        return 'bench-token'

    def get_endpoint(self, session, service_type=None, **kwargs):
        return self.endpoints.get(service_type)


class Stores:
    def __init__(self, tmp):
        self.tmp = tmp
        self.databases = []

    def make(self, kind):
        conf = make_conf()
        if kind == 'sqlite':
            store = sqlite.Connection(
                conf, f'sqlite:///{self.tmp}/{uuid.uuid4().hex}.sqlite')
        else:
            name = f'calipso_bench_scan_{uuid.uuid4().hex}'
            with psycopg.connect(PG_URL, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE {name}')
            self.databases.append(name)
            url = PG_URL.rsplit('/', 1)[0] + '/' + name
            store = postgresql.Connection(
                conf, url.replace('postgresql://', 'postgresql+psycopg://'))
        store.upgrade()
        return store

    def drop(self):
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            for name in self.databases:
                admin.execute(f'DROP DATABASE IF EXISTS {name} WITH (FORCE)')


def timed(function):
    begin = time.perf_counter()
    value = function()
    return time.perf_counter() - begin, value


def capturing(store):
    """Keep what the scan hands to ``apply_inventory`` (and its time)."""
    captured = {}
    apply = store.apply_inventory

    def capture(objects=(), links=()):
        captured['objects'], captured['links'] = list(objects), list(links)
        captured['seconds'], written = timed(lambda: apply(objects, links))
        return written

    store.apply_inventory = capture
    return captured


def bench_store(kind, stores, conf, session):
    scan_store, floor_store = stores.make(kind), stores.make(kind)
    captured = capturing(scan_store)
    rows = []
    for label in ('first scan (empty store)', 'second scan (unchanged)'):
        seconds, result = timed(lambda: scanner.scan(
            conf, scan_store, session=session, services=SERVICES))
        # The floor's store went through the same merges: same state.
        floor_seconds, _ = timed(lambda: floor_store.apply_inventory(
            captured['objects'], captured['links']))
        rows.append((label, result.found_objects, result.found_links,
                     result.requests, seconds, captured['seconds'],
                     floor_seconds))
    scan_store.close()
    floor_store.close()
    say(f'\n{kind}:')
    say(f'{"":26} {"objects":>7} {"links":>6} {"requests":>8} '
        f'{"scan s":>7} {"merge s":>7} {"floor s":>7} {"objects/s":>9} '
        f'{"floor/s":>8} {"floor/scan":>10}')
    for (label, n_objects, n_links, requests, seconds, merge,
         floor_seconds) in rows:
        say(f'{label:26} {n_objects:7d} {n_links:6d} {requests:8d} '
            f'{seconds:7.2f} {merge:7.2f} {floor_seconds:7.2f} '
            f'{n_objects / seconds:9.0f} {n_objects / floor_seconds:8.0f} '
            f'{floor_seconds / seconds:9.2f}x')


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m bench.inventory_scan')
    parser.add_argument('--servers', type=int, default=1000)
    args = parser.parse_args(argv)
    projects = [uuid.uuid4().hex for _ in range(20)]
    per_network = max(1, args.servers // (len(projects) * 2))
    cloud = openstack_cloud.Cloud.build(
        projects=projects, hosts=50, networks_per_project=2,
        servers_per_network=per_network, volumes_per_server=1)
    say(f'fake cloud: {len(cloud.servers)} servers, {len(cloud.ports)} '
        f'ports, {len(cloud.volumes)} volumes, {len(cloud.networks)} '
        f'networks, {len(cloud.hypervisors)} hosts; pages of 1000 '
        f'(nova\'s max_limit), one os-interface call per server')
    conf = make_conf()
    conf.set_override('services', SERVICES, group='inventory_scan')
    with openstack_cloud.CloudServer(cloud) as server, \
            tempfile.TemporaryDirectory() as tmp:
        session = ks_session.Session(auth=FixedCatalog({
            SERVICE_TYPES[s]: server.endpoints[SERVICE_TYPES[s]]
            for s in SERVICES}))
        session.session.trust_env = False
        stores = Stores(tmp)
        try:
            for kind in ('sqlite', 'postgresql'):
                bench_store(kind, stores, conf, session)
        finally:
            stores.drop()
    say('\nfloor/scan: the share of a scan that a bare merge of its '
        'result takes (1.00x: listing and mapping would cost nothing); '
        'merge s: the merge inside the scan; the rest is HTTP (one '
        'request per server for its interfaces), mapping and the reads '
        'of the reconcile step.')


if __name__ == '__main__':
    main()
