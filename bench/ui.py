"""The topology page (/ui/, doc/ui.md) in a real browser: how long until
the first graph of a 200-node clique is drawn, and until the tree of a
100,000-object inventory is open. Measured by the page itself with the
Performance API (``calipso:graph``: from the focus request to the laid
out, painted graph; ``calipso:tree-ready``: from navigation start to the
tree's first level shown), in Debian's headless chromium driven by
Selenium, against the real calipso-api (noauth) over SQLite or, with
``--database``, another store.

Targets (issue 18): first graph < 1 s, tree < 2 s on this machine.

    python -m bench.ui [--objects 100000] [--runs 5] [--database URL]
                       [--shots DIR]
"""

import argparse
import datetime
import statistics
import sys
import tempfile
from pathlib import Path

from bench import common
from calipso_agent import storage
from tests.helpers import browser

TARGETS = {'graph': 1.0, 'tree': 2.0}
CLIQUE_INSTANCES = 66  # a host with 66 instances, vNICs, ports + net: 200


def _now():
    return datetime.datetime.now(datetime.UTC).isoformat()


def inventory(total, clique_instances=CLIQUE_INSTANCES):
    """``total`` objects and their links: region → 5 AZs → hosts → 3
    instances each (with a vNIC and a port) over 100 projects of 5
    networks; host ``bench-host`` holds ``clique_instances`` instances on
    one network (its clique: 3 × clique_instances + 2 nodes)."""
    at = _now()
    objects, links = [], []

    def obj(type_, id_, name, parent, project=None, host=None):
        objects.append({
            'id': id_, 'type': type_, 'name': name, 'parent_id': parent,
            'parent_type': None, 'project_id': project, 'host': host,
            'state': 'ACTIVE', 'attributes': {}, 'environment': 'bench',
            'id_path': '', 'name_path': '', 'created_at': at,
            'updated_at': at, 'last_event_at': at})

    def link(source_type, source, target_type, target, project):
        links.append({
            'source_id': source, 'target_id': target,
            'source_type': source_type, 'target_type': target_type,
            'link_type': f'{source_type}-{target_type}', 'state': 'ACTIVE',
            'project_id': project, 'attributes': {}, 'created_at': at,
            'updated_at': at, 'last_event_at': at})

    obj('region', 'region-bench', 'bench', None)
    for z in range(5):
        obj('availability_zone', f'az-{z}', f'zone-{z}', 'region-bench')
    networks = []
    for p in range(100):
        project = f'project-{p:03d}'
        obj('project', project, project, None, project)
        for n in range(5):
            network = f'net-{p:03d}-{n}'
            obj('network', network, network, project, project)
            obj('subnet', f'sub-{p:03d}-{n}', f'subnet-{p:03d}-{n}',
                network, project)
            link('subnet', f'sub-{p:03d}-{n}', 'network', network, project)
            networks.append((network, project))

    def instance(index, host, network, project):
        vm, port = f'vm-{index:06d}', f'port-{index:06d}-0000'
        vnic = f'{vm}-tap{port[:11]}'
        obj('instance', vm, f'server-{index}', host, project, host)
        obj('vnic', vnic, f'tap{port[:11]}', vm, project, host)
        obj('port', port, f'port-{index}', network, project, host)
        link('instance', vm, 'host', host, project)
        link('instance', vm, 'vnic', vnic, project)
        link('vnic', vnic, 'port', port, project)
        link('port', port, 'network', network, project)

    obj('host', 'bench-host', 'bench-host', 'az-0', None, 'bench-host')
    network, project = networks[0]
    for i in range(clique_instances):
        instance(i, 'bench-host', network, project)
    index = clique_instances
    h = 0
    while len(objects) + 10 <= total:
        host = f'compute-{h:05d}'
        obj('host', host, host, f'az-{h % 5}', None, host)
        for _ in range(3):
            network, project = networks[index % len(networks)]
            instance(index, host, network, project)
            index += 1
        h += 1
    return objects, links


def load(database, total):
    store = storage.get_connection(_conf(database))
    objects, links = inventory(total)
    for start in range(0, len(objects), 5000):
        store.upsert_inventory(objects[start:start + 5000])
    for start in range(0, len(links), 5000):
        store.upsert_links(links[start:start + 5000])
    store.close()
    return len(objects), len(links)


def _conf(database):
    conf = common.make_conf()
    conf.set_override('connection', database, 'database')
    return conf


def measure(base_url, runs, shots):
    """(tree seconds, graph seconds, nodes drawn), medians of ``runs``."""
    trees, graphs, nodes = [], [], 0
    with tempfile.TemporaryDirectory() as downloads, \
            browser.chromium(downloads) as session:
        page = browser.Page(session, base_url, shots)
        page.open()
        page.sign_in('bench-token')  # noauth: any token is an admin's
        for _ in range(runs):
            session.refresh()
            browser.wait_for(lambda: session.execute_script(
                "return performance.getEntriesByName("
                "'calipso:tree-ready').length"), what='the tree')
            trees.append(session.execute_script(
                "return performance.getEntriesByName("
                "'calipso:tree-ready')[0].startTime") / 1000)
            session.execute_script("window.calipso.focus('bench-host')")
            browser.wait_for(lambda: session.execute_script(
                "return performance.getEntriesByName("
                "'calipso:graph').length"), what='the graph')
            graphs.append(session.execute_script(
                "return performance.getEntriesByName("
                "'calipso:graph')[0].duration") / 1000)
            nodes = len(page.graph()['nodes'])
        page.screenshot('bench-host-clique')
    return statistics.median(trees), statistics.median(graphs), nodes


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--objects', type=int, default=100_000)
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--database', help='store URL (default: SQLite '
                        'in a temporary directory)')
    parser.add_argument('--shots', help='directory to keep the screenshot '
                        'of the 200-node graph in')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if browser.chromium_paths() is None:
        common.say('bench.ui: chromium and chromium-driver are missing '
                   '(apt-get install -y chromium chromium-driver)')
        return 1
    with tempfile.TemporaryDirectory(prefix='bench-ui-') as workdir:
        database = args.database or f'sqlite:///{workdir}/ui.sqlite'
        objects, links = load(database, args.objects)
        common.say(f'bench.ui: {objects} objects, {links} links loaded')
        try:
            base, _ = common.start_api(workdir, database, 1, 8)
            tree, graph, nodes = measure(
                base, args.runs, args.shots or str(Path(workdir) / 'shots'))
        finally:
            common.stop_all()
    common.say(f'{"measure":<34}{"median s":>10}{"target s":>10}'
               f'{"ratio":>8}')
    for name, value, target in (
            (f'first graph, {nodes}-node clique', graph, TARGETS['graph']),
            (f'tree open, {objects} objects', tree, TARGETS['tree'])):
        common.say(f'{name:<34}{value:>10.3f}{target:>10.1f}'
                   f'{value / target:>8.2f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
