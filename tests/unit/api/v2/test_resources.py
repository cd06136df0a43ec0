"""/v2/resources and /v2/resources/{id}."""

import urllib.parse

import pytest

from tests.helpers.basics import make_sample
from tests.unit.api.support import at, fault, naive, query


def test_list_resources(client):
    shown = client.get('/v2/resources').json
    assert [r['resource_id'] for r in shown] == ['vm-0', 'vm-1', 'vm-2']
    vm0 = shown[0]
    assert vm0 == {
        'resource_id': 'vm-0', 'project_id': 'project-a',
        'user_id': 'user-1', 'source': 'openstack',
        'first_sample_timestamp': naive(0),
        'last_sample_timestamp': naive(5400),
        'metadata': {'flavor.name': 'm1.small', 'flavor.vcpus': '1',
                     'state': 'stopped', 'enabled': 'False', 'size': '9'},
        'links': [
            {'href': 'http://localhost/v2/resources/vm-0', 'rel': 'self'},
            {'href': 'http://localhost/v2/meters/cpu?q.field=resource_id'
                     '&q.value=vm-0', 'rel': 'cpu'},
            {'href': 'http://localhost/v2/meters/memory?q.field=resource_id'
                     '&q.value=vm-0', 'rel': 'memory'}]}


def test_resources_query_bounds_first_and_last(client):
    shown = client.get('/v2/resources', query(
        ('timestamp', 'ge', at(1200)), ('timestamp', 'lt', at(3600)),
        ('meter', 'eq', 'cpu'))).json
    assert {r['resource_id']: (r['first_sample_timestamp'],
                               r['last_sample_timestamp'])
            for r in shown} == {
        'vm-0': (naive(1800), naive(1800)),
        'vm-1': (naive(2400), naive(2400)),
        'vm-2': (naive(1200), naive(3000))}


@pytest.mark.parametrize('terms, expected', [
    (query(('project_id', 'eq', 'project-b')), ['vm-2']),
    (query(('resource_id', 'ne', 'vm-1')), ['vm-0', 'vm-2']),
    (query(('user_id', 'eq', 'user-0'), ('meter', 'eq', 'memory')),
     ['vm-0', 'vm-2']),
    (query(('metadata.flavor.name', 'eq', 'm1.large')), ['vm-1']),
    (query(('source', 'eq', 'other')), ['vm-2']),
])
def test_resources_query(client, terms, expected):
    shown = client.get('/v2/resources', terms).json
    assert [r['resource_id'] for r in shown] == expected


def test_meter_links_can_be_left_out(client):
    shown = client.get('/v2/resources', [('meter_links', '0')]).json
    assert all(len(r['links']) == 1 and r['links'][0]['rel'] == 'self'
               for r in shown)
    status, _, message = fault(client.get('/v2/resources',
                                          [('meter_links', 'no')]))
    assert status == 400 and 'meter_links' in message


def test_limit(client):
    shown = client.get('/v2/resources', [('limit', '2')]).json
    assert [r['resource_id'] for r in shown] == ['vm-0', 'vm-1']


def test_get_one_resource(client):
    shown = client.get('/v2/resources/vm-2').json
    assert shown['resource_id'] == 'vm-2'
    assert [link['rel'] for link in shown['links']] == ['self', 'cpu',
                                                         'memory']
    assert shown['last_sample_timestamp'] == naive(6600)


def test_unknown_resource_is_404(client):
    status, code, message = fault(client.get('/v2/resources/vm-404'))
    assert (status, code) == (404, 'Client') and 'vm-404' in message


def test_links_of_awkward_ids(writer):
    writer.app.storage().record_samples([
        make_sample(1, resource_id='a/b c&d', name='disk.read')])
    (shown,) = writer.get('/v2/resources').json
    self_link, meter_link = shown['links']
    assert self_link['href'] == ('http://localhost/v2/resources/'
                                 'a%2Fb%20c%26d')
    parsed = urllib.parse.urlsplit(meter_link['href'])
    assert parsed.path == '/v2/meters/disk.read'
    assert urllib.parse.parse_qs(parsed.query) == {
        'q.field': ['resource_id'], 'q.value': ['a/b c&d']}
    path = urllib.parse.urlsplit(self_link['href']).path
    response = writer.get(path, environ={'RAW_URI': path})
    assert response.json['resource_id'] == 'a/b c&d'


def test_links_follow_the_application_url(client):
    shown = client.get('/v2/resources/vm-0', environ={
        'HTTP_HOST': 'api.example.com:8777', 'SCRIPT_NAME': '/metering'})
    assert shown.json['links'][0]['href'] == (
        'http://api.example.com:8777/metering/v2/resources/vm-0')
