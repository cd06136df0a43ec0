"""/v2/meters and /v2/meters/{name}: listing, samples of a meter,
posting samples."""

import base64

import pytest

from calipso_agent import sample as sample_mod
from tests.helpers.oracle import instant
from tests.unit.api.support import at, fault, member, query


def meter_keys(samples, predicate=lambda s: True):
    return sorted({(s.name, s.resource_id, s.project_id, s.user_id,
                    s.source, s.type, s.unit)
                   for s in samples if predicate(s)})


def shown_keys(meters):
    return sorted((m['name'], m['resource_id'], m['project_id'],
                   m['user_id'], m['source'], m['type'], m['unit'])
                  for m in meters)


def test_list_meters(client, samples):
    meters = client.get('/v2/meters').json
    assert shown_keys(meters) == meter_keys(samples)
    for meter in meters:
        assert base64.b64decode(meter['meter_id']).decode() == (
            f'{meter["resource_id"]}+{meter["name"]}')


def test_meter_id_is_ceilometers():
    from calipso_agent.api.v2 import models
    from calipso_agent.storage import base

    shown = models.meter(base.Meter('cpu', 'gauge', 'ns', 'vm-é', 'p', 'u',
                                    's'))
    assert shown['meter_id'] == base64.b64encode(
        'vm-é+cpu'.encode()).decode()


@pytest.mark.parametrize('terms, predicate', [
    (query(('project_id', 'eq', 'project-b')),
     lambda s: s.project_id == 'project-b'),
    (query(('resource_id', 'in', 'vm-1,vm-2'), ('user_id', 'ne', 'user-1')),
     lambda s: s.resource_id in ('vm-1', 'vm-2') and s.user_id != 'user-1'),
    (query(('meter', 'eq', 'memory')), lambda s: s.name == 'memory'),
    (query(('metadata.flavor.vcpus', 'eq', '4')),
     lambda s: s.resource_metadata.get('flavor', {}).get('vcpus') == 4),
    (query(('timestamp', 'ge', at(6000))),
     lambda s: instant(s.timestamp) >= instant(at(6000))),
])
def test_list_meters_query(client, samples, terms, predicate):
    meters = client.get('/v2/meters', terms).json
    assert shown_keys(meters) == meter_keys(samples, predicate)


def test_list_meters_unique(client):
    meters = client.get('/v2/meters', [('unique', 'True')]).json
    assert sorted(m['name'] for m in meters) == ['cpu', 'memory']
    assert len(client.get('/v2/meters', [('unique', '0')]).json) > 2


def test_unique_must_be_a_boolean(client):
    status, _, message = fault(client.get('/v2/meters',
                                          [('unique', 'sometimes')]))
    assert status == 400 and 'unique' in message


def test_samples_of_a_meter(client, samples):
    shown = client.get('/v2/meters/cpu').json
    cpu = sorted((s for s in samples if s.name == 'cpu'),
                 key=lambda s: instant(s.timestamp), reverse=True)
    assert [s['message_id'] for s in shown] == [s.message_id for s in cpu]
    first = shown[-1]
    assert first == {
        'counter_name': 'cpu', 'counter_type': 'cumulative',
        'counter_unit': 'ns', 'counter_volume': 0.0, 'user_id': 'user-0',
        'project_id': 'project-a', 'resource_id': 'vm-0',
        'source': 'openstack', 'timestamp': '2024-05-01T00:00:00',
        'recorded_at': first['recorded_at'],
        'resource_metadata': {'flavor.name': 'm1.small',
                              'flavor.vcpus': '1', 'state': 'active',
                              'enabled': 'True', 'size': '0'},
        'message_id': 'n-0'}


def test_samples_of_a_meter_query(client):
    shown = client.get('/v2/meters/cpu', query(
        ('resource_id', 'eq', 'vm-1'), ('timestamp', 'gt', at(600)),
        ('timestamp', 'le', at(4200)))).json
    assert [s['message_id'] for s in shown] == ['n-7', 'n-4']


def test_meter_term_intersects_the_url_meter(client):
    assert client.get('/v2/meters/cpu',
                      query(('meter', 'eq', 'memory'))).json == []


def test_unknown_meter_has_no_samples(client):
    response = client.get('/v2/meters/nothing')
    assert (response.status_code, response.json) == (200, [])


# --- POST /v2/meters/{name} -------------------------------------------------

def posted(**fields):
    item = {'counter_name': 'cpu', 'counter_type': 'gauge',
            'counter_unit': 'ns', 'counter_volume': 1.5,
            'resource_id': 'vm-9'}
    item.update(fields)
    return item


def test_post_samples(writer):
    response = writer.post('/v2/meters/cpu', [
        posted(timestamp='2024-05-01T12:00:00+02:00',
               resource_metadata={'flavor.name': 'm1', 'n': 2},
               source='mine'),
        posted(counter_volume=7, resource_id='vm-8', user_id='u-9',
               project_id='project-9')])
    assert response.status_code == 201
    first, second = response.json
    assert first['timestamp'] == '2024-05-01T10:00:00'
    assert first['source'] == 'project-admin:mine'
    assert (first['project_id'], first['user_id']) == ('project-admin',
                                                       'user-admin')
    assert first['resource_metadata'] == {'flavor.name': 'm1', 'n': '2'}
    assert first['message_id'] and first['recorded_at']
    assert (second['project_id'], second['user_id'], second['source']) == (
        'project-9', 'u-9', 'project-9:openstack')
    stored = {s.resource_id: s for s in writer.app.storage().query_samples()}
    assert stored['vm-9'].resource_metadata == {'flavor': {'name': 'm1'},
                                                'n': 2}
    assert stored['vm-9'].message_id == first['message_id']
    assert stored['vm-9'].id == sample_mod.sample_id(
        first['message_id'], 'cpu', 'vm-9')
    assert stored['vm-8'].volume == 7.0
    shown = writer.get('/v2/meters/cpu',
                       query(('resource_id', 'eq', 'vm-9'))).json
    assert shown == [first]


def test_post_without_timestamp_is_now(writer):
    (item,) = writer.post('/v2/meters/cpu', [posted()]).json
    assert abs((instant(item['timestamp']) - instant(
        item['recorded_at'])).total_seconds()) < 60


@pytest.mark.parametrize('body, parameter', [
    ([posted(counter_name='memory')], 'counter_name'),
    ([posted(counter_type='rate')], 'counter_type'),
    ([posted(message_id='m-1')], 'message_id'),
    ([posted(counter_volume='lots')], 'counter_volume'),
    ([posted(counter_volume=True)], 'counter_volume'),
    ([posted(timestamp='noon')], 'timestamp'),
    ([posted(resource_metadata=[1])], 'resource_metadata'),
    ([posted(resource_id='')], 'resource_id'),
    ([posted(user_id=5)], 'user_id'),
    ([posted(colour='red')], 'colour'),
    ([{k: v for k, v in posted().items() if k != 'counter_unit'}],
     'counter_unit'),
    ([posted(), 'sample'], 'samples'),
    ([], 'Samples should be included'),
    ({'counter_name': 'cpu'}, 'Samples should be included'),
])
def test_post_validation(writer, body, parameter):
    status, code, message = fault(writer.post('/v2/meters/cpu', body))
    assert (status, code) == (400, 'Client')
    assert parameter in message
    assert writer.app.storage().query_samples() == []


@pytest.mark.parametrize('body', [b'', b'{', b'[NaN]', b'\xff\xfe',
                                  b'[{"counter_name": "\\ud800"}]'])
def test_post_body_must_be_json(writer, body):
    status, _, message = fault(writer.post('/v2/meters/cpu', body))
    assert status == 400


def test_post_numeric_string_volume(writer):
    (item,) = writer.post('/v2/meters/cpu',
                          [posted(counter_volume='2.5')]).json
    assert item['counter_volume'] == 2.5


def test_member_posts_to_its_own_project(writer):
    response = writer.post('/v2/meters/cpu', [posted()],
                           headers=member('project-a', 'user-7'))
    assert response.status_code == 201
    assert (response.json[0]['project_id'],
            response.json[0]['user_id']) == ('project-a', 'user-7')
    response = writer.post('/v2/meters/cpu',
                           [posted(project_id='project-a')],
                           headers=member('project-a'))
    assert response.status_code == 201


def test_member_may_not_post_to_another_project(writer):
    response = writer.post('/v2/meters/cpu',
                           [posted(), posted(project_id='project-b')],
                           headers=member('project-a'))
    status, code, message = fault(response)
    assert (status, code) == (403, 'Client') and 'project-b' in message
    assert writer.app.storage().query_samples() == []


def test_admin_posts_anywhere(writer):
    response = writer.post('/v2/meters/cpu',
                           [posted(project_id='project-z')])
    assert response.json[0]['project_id'] == 'project-z'

