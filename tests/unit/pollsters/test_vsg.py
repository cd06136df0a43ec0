"""The CORD vSG pollsters against vSG stats served over HTTP in the
test (a loopback server), and their consistency with the notification
endpoint's meters."""

import http.server
import json
import threading

import pytest
from stevedore import driver, extension

from calipso_agent.notification import vsg as notified
from calipso_agent.pollsters import base
from calipso_agent.pollsters import vsg as polled
from tests.helpers import basics

NAMESPACE = 'calipso.poll.vsg'


def stats(vcpe_id, tenant='tenant-1', scale=1, inserted_key=None):
    return {
        'vcpe_id': vcpe_id, 'tenant_id': tenant, 'user_id': 'user-1',
        'compute': {
            'cpu_util': 2.5 * scale, 'memory': 512, 'memory_usage':
            100 * scale,
            'network_stats': [
                {'intf': 'eth0', 'rx_bytes': 1000 * scale,
                 'tx_bytes': 2000 * scale, 'rx_packets': 10 * scale,
                 'tx_packets': 20 * scale},
                {'intf': 'eth1', 'rx_bytes': 5 * scale,
                 'tx_bytes': 6 * scale, 'rx_packets': 1, 'tx_packets': 1}]},
        'dns': {
            'cache_size': 150, inserted_key or 'total_inserted_entries':
            40 * scale, 'replaced_unexpired_entries': 3 * scale,
            'queries_forwarded': 70 * scale,
            'queries_answered_locally': 30 * scale,
            'servers': [{'upstream_server': '8.8.8.8',
                         'queries_sent': 70 * scale, 'queries_failed': 1}]},
    }


class StatsServer:
    """vSG stats documents (and an XOS-like list) at paths of a loopback
    HTTP server; ``documents[path]``: a JSON value, or an int status."""

    def __init__(self):
        self.documents = {}
        self.requests = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                owner.requests.append(self.path)
                document = owner.documents.get(self.path, 404)
                if isinstance(document, int):
                    self.send_response(document)
                    self.end_headers()
                    return
                body = (document if isinstance(document, bytes)
                        else json.dumps(document).encode())
                self.send_response(200)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0),
                                                      Handler)
        self.url = f'http://127.0.0.1:{self.server.server_address[1]}'
        threading.Thread(target=self.server.serve_forever,
                         daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def served():
    server = StatsServer()
    yield server
    server.close()


def context(conf, timestamp='2026-12-06T06:00:00+00:00'):
    return base.PollingContext(conf, 'head-1', 'vsg_source', timestamp)


def discover(conf):
    return driver.DriverManager(
        base.DISCOVER_NAMESPACE, 'vsg_instances', invoke_on_load=True,
        invoke_args=(conf,)).driver.discover(context(conf))


def poll(conf, resources, cache=None):
    """Every vsg meter's samples, {meter: {resource_id: sample}}."""
    cache = {} if cache is None else cache
    manager = extension.ExtensionManager(NAMESPACE, invoke_on_load=True,
                                         invoke_args=(conf,))
    got = {}
    for ext in manager:
        if ext.entry_point.value != 'calipso_agent.pollsters.vsg:VsgPollster':
            continue
        ext.obj.meter = ext.name
        got[ext.name] = {s.resource_id: s for s in ext.obj.get_samples(
            context(conf), cache, resources)}
    return got


def test_discovery_from_the_option_and_an_xos_like_endpoint(served):
    served.documents['/xos/vsg'] = {'items': [
        {'id': 'vsg-2', 'stats_url': served.url + '/vsg-2/stats',
         'tenant_id': 'tenant-2'},
        {'id': 'no-url'}]}
    conf = basics.make_conf(
        vsg__instances=[f'vsg-1={served.url}/vsg-1/stats'],
        vsg__instances_url=served.url + '/xos/vsg')
    assert discover(conf) == [
        {'id': 'vsg-1', 'url': served.url + '/vsg-1/stats',
         'project_id': None, 'user_id': None},
        {'id': 'vsg-2', 'url': served.url + '/vsg-2/stats',
         'project_id': 'tenant-2', 'user_id': None}]


def test_an_xos_endpoint_that_fails_is_a_discovery_error(served):
    served.documents['/xos/vsg'] = 500
    conf = basics.make_conf(vsg__instances_url=served.url + '/xos/vsg')
    with pytest.raises(base.PollsterError):
        discover(conf)


def test_a_bad_instance_option_is_a_discovery_error():
    conf = basics.make_conf(vsg__instances=['no-url-here'])
    with pytest.raises(base.PollsterError, match='vcpe id'):
        discover(conf)


def test_every_meter_of_every_vsg(served):
    served.documents['/a'] = stats('vsg-a')
    served.documents['/b'] = stats('vsg-b', tenant='tenant-2', scale=3,
                                   inserted_key='total_instered_entries')
    conf = basics.make_conf(vsg__instances=[f'vsg-a={served.url}/a',
                                            f'vsg-b={served.url}/b'])
    got = poll(conf, discover(conf))
    assert set(got) == set(polled.METERS)
    # One GET per vSG per cycle serves every meter.
    assert sorted(served.requests) == ['/a', '/b']
    for vcpe_id, document in (('vsg-a', served.documents['/a']),
                              ('vsg-b', served.documents['/b'])):
        compute, dns = document['compute'], document['dns']
        expected = {
            ('vsg', vcpe_id): 1,
            ('cpu_util', vcpe_id): compute['cpu_util'],
            ('memory', vcpe_id): compute['memory'],
            ('memory.usage', vcpe_id): compute['memory_usage'],
            ('vsg.dns.cache.size', vcpe_id): dns['cache_size'],
            ('vsg.dns.total_instered_entries', vcpe_id): dns.get(
                'total_inserted_entries', dns.get('total_instered_entries')),
            ('vsg.dns.queries_forwarded', vcpe_id): dns['queries_forwarded'],
            ('vsg.dns.server.queries_sent', f'{vcpe_id}-8.8.8.8'):
                dns['servers'][0]['queries_sent'],
            ('vsg.dns.server.queries_failed', f'{vcpe_id}-8.8.8.8'):
                dns['servers'][0]['queries_failed'],
        }
        for interface in compute['network_stats']:
            rid = f'{vcpe_id}-{interface["intf"]}'
            expected[('network.incoming.bytes', rid)] = interface['rx_bytes']
            expected[('network.outgoing.bytes', rid)] = interface['tx_bytes']
            expected[('network.incoming.packets', rid)] = \
                interface['rx_packets']
        for (meter, rid), volume in expected.items():
            made = got[meter][rid]
            assert made.volume == volume, (meter, rid)
            assert made.project_id == document['tenant_id']
            assert made.user_id == 'user-1'
            assert made.resource_metadata['vcpe_id'] == vcpe_id
            assert made.id == base.polled_sample_id(meter, rid,
                                                    made.timestamp)


def test_polled_meters_are_the_notified_ones():
    """Same name, type and unit as the vcpeservice notifications."""
    notified_meters = {name: (kind, unit)
                       for _, name, kind, unit in notified.COMPUTE_STATS}
    notified_meters.update({name: (notified.CUMULATIVE, unit)
                            for _, name, unit in notified.INTERFACE_STATS})
    notified_meters.update({name: (kind, unit) for _, name, kind, unit, _
                            in notified.DNS_EVENTS.values()})
    notified_meters['vsg'] = (notified.GAUGE, 'vsg')
    assert {name: spec[:2] for name, spec in polled.METERS.items()} == \
        notified_meters


def test_a_vsg_that_fails_is_skipped_the_others_polled(served):
    served.documents['/ok'] = stats('vsg-ok')
    served.documents['/down'] = 503
    served.documents['/junk'] = b'<html>'
    served.documents['/list'] = [1, 2]
    conf = basics.make_conf(vsg__instances=[
        f'vsg-ok={served.url}/ok', f'vsg-down={served.url}/down',
        f'vsg-junk={served.url}/junk', f'vsg-list={served.url}/list',
        'vsg-closed=http://127.0.0.1:9/stats'])
    got = poll(conf, discover(conf))
    assert set(got['vsg']) == {'vsg-ok'}
    assert set(got['network.incoming.bytes']) == {'vsg-ok-eth0',
                                                  'vsg-ok-eth1'}


def test_missing_or_invalid_values_make_no_sample(served):
    document = stats('vsg-x')
    del document['compute']['cpu_util']
    document['compute']['memory_usage'] = 'n/a'
    document['compute']['network_stats'][1].pop('intf')
    document['dns'] = 'off'
    served.documents['/x'] = document
    conf = basics.make_conf(vsg__instances=[f'vsg-x={served.url}/x'])
    got = poll(conf, discover(conf))
    assert got['cpu_util'] == {} and got['memory.usage'] == {}
    assert set(got['network.incoming.bytes']) == {'vsg-x-eth0'}
    assert got['vsg.dns.cache.size'] == {}
    assert set(got['vsg']) == {'vsg-x'} and set(got['memory']) == {'vsg-x'}
