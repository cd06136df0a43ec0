"""/v2/polling/sources: the polling file's sources and their overrides,
admins only."""

import pytest

from calipso_agent import storage
from calipso_agent.api import app
from tests.unit.api import support

POLLING_YAML = """
sources:
  - name: host_source
    interval: 60
    meters: ["*", "!load.*"]
    discovery: [local_host]
  - name: compute_source
    interval: 300
    meters: [cpu, memory.usage]
  - name: broken
    meters: [cpu]
"""


@pytest.fixture
def polling_file(tmp_path):
    path = tmp_path / 'polling.yaml'
    path.write_text(POLLING_YAML)
    return path


@pytest.fixture
def store(tmp_path, polling_file):
    conf = support.make_conf(tmp_path, polling__cfg_file=str(polling_file))
    connection = storage.get_connection(conf)
    yield conf, connection
    connection.close()


@pytest.fixture
def admin(store):
    conf, connection = store
    return support.Client(app.setup_app(conf=conf, storage=connection))


def by_name(listing):
    return {source['name']: source for source in listing['sources']}


def without_stamp(override):
    return {k: v for k, v in override.items() if k != 'updated_at'}


def test_the_file_as_the_api_reads_it(admin, polling_file):
    listing = admin.get('/v2/polling/sources').json
    assert listing['file'] == str(polling_file)
    assert sorted(by_name(listing)) == ['compute_source', 'host_source']
    host = by_name(listing)['host_source']
    assert host == {
        'name': 'host_source', 'interval': 60, 'meters': ['*', '!load.*'],
        'resources': [], 'discovery': ['local_host'], 'enabled': True,
        'overridden': [], 'override': None,
        'file': {'interval': 60, 'meters': ['*', '!load.*'],
                 'enabled': True}}
    # The broken source is reported with its field, not shown.
    assert len(listing['errors']) == 1
    assert 'source broken: interval' in listing['errors'][0]
    assert listing['orphan_overrides'] == {}


def test_an_override_is_stored_and_shown_as_such(admin, store):
    _, connection = store
    response = admin.put('/v2/polling/sources/compute_source',
                         {'interval': 30, 'enabled': False})
    assert response.status_code == 200
    shown = response.json
    assert (shown['interval'], shown['enabled']) == (30, False)
    assert shown['overridden'] == ['interval', 'enabled']
    assert shown['file'] == {'interval': 300, 'enabled': True,
                             'meters': ['cpu', 'memory.usage']}
    assert without_stamp(shown['override']) == {'interval': 30,
                                                 'enabled': False}
    stored = connection.get_polling_overrides()
    assert without_stamp(stored['compute_source']) == {'interval': 30,
                                                       'enabled': False}
    listed = by_name(admin.get('/v2/polling/sources').json)
    assert listed['compute_source'] == shown
    assert listed['host_source']['overridden'] == []


def test_null_drops_a_field_of_the_override(admin, store):
    _, connection = store
    admin.put('/v2/polling/sources/host_source',
              {'interval': 5, 'meters': ['cpu']})
    shown = admin.put('/v2/polling/sources/host_source',
                      {'interval': None}).json
    assert shown['interval'] == 60 and shown['meters'] == ['cpu']
    assert shown['overridden'] == ['meters']
    shown = admin.put('/v2/polling/sources/host_source',
                      {'meters': None}).json
    assert shown['overridden'] == [] and shown['override'] is None
    assert connection.get_polling_overrides() == {}


@pytest.mark.parametrize('body, field', [
    ({'interval': 0}, 'interval'),
    ({'interval': -5}, 'interval'),
    ({'interval': 'often'}, 'interval'),
    ({'interval': True}, 'interval'),
    ({'meters': []}, 'meters'),
    ({'meters': ['!']}, 'meters'),
    ({'meters': [3]}, 'meters'),
    ({'enabled': 'yes'}, 'enabled'),
    ({'resources': ['x']}, 'resources'),
    ({'discovery': None}, 'discovery'),
    ({}, 'body'),
    ([1], 'body'),
])
def test_an_invalid_body_is_refused_naming_the_field(admin, store, body,
                                                     field):
    _, connection = store
    response = admin.put('/v2/polling/sources/host_source', body)
    status, faultcode, message = support.fault(response)
    assert (status, faultcode) == (400, 'Client')
    assert f'field/attribute {field}:' in message, message
    assert connection.get_polling_overrides() == {}


def test_a_body_that_is_not_json_is_refused(admin):
    response = admin.put('/v2/polling/sources/host_source', b'{interval')
    assert support.fault(response)[:2] == (400, 'Client')


def test_an_unknown_source_is_not_found(admin, store):
    _, connection = store
    for name in ('nope', 'broken'):
        response = admin.put(f'/v2/polling/sources/{name}', {'interval': 5})
        status, _, message = support.fault(response)
        assert status == 404 and name in message
    assert connection.get_polling_overrides() == {}


def test_an_override_of_a_source_gone_from_the_file(admin, store,
                                                    polling_file):
    _, connection = store
    admin.put('/v2/polling/sources/compute_source', {'interval': 30})
    polling_file.write_text(POLLING_YAML.replace('compute_source',
                                                 'renamed'))
    listing = admin.get('/v2/polling/sources').json
    assert sorted(by_name(listing)) == ['host_source', 'renamed']
    assert by_name(listing)['renamed']['overridden'] == []
    assert list(listing['orphan_overrides']) == ['compute_source']



def test_delete_drops_the_whole_override(admin, store):
    _, connection = store
    admin.put('/v2/polling/sources/host_source',
              {'interval': 5, 'enabled': False})
    response = admin.delete('/v2/polling/sources/host_source')
    assert response.status_code == 200
    assert response.json['name'] == 'host_source'
    assert without_stamp(response.json['removed']) == {'interval': 5,
                                                       'enabled': False}
    assert connection.get_polling_overrides() == {}
    host = by_name(admin.get('/v2/polling/sources').json)['host_source']
    assert (host['interval'], host['enabled'], host['override']) == (
        60, True, None)
    status, _, message = support.fault(
        admin.delete('/v2/polling/sources/host_source'))
    assert status == 404 and 'host_source' in message


def test_delete_drops_the_override_of_a_source_gone_from_the_file(
        admin, store, polling_file):
    _, connection = store
    admin.put('/v2/polling/sources/compute_source', {'interval': 30})
    admin.put('/v2/polling/sources/host_source', {'interval': 10})
    polling_file.write_text(POLLING_YAML.replace('compute_source',
                                                 'renamed'))
    response = admin.delete('/v2/polling/sources/compute_source')
    assert response.status_code == 200
    assert without_stamp(response.json['removed']) == {'interval': 30}
    listing = admin.get('/v2/polling/sources').json
    assert listing['orphan_overrides'] == {}
    assert list(connection.get_polling_overrides()) == ['host_source']

def test_a_file_that_cannot_be_read_is_reported(admin, polling_file):
    polling_file.unlink()
    listing = admin.get('/v2/polling/sources').json
    assert listing['sources'] == []
    assert 'cannot be read' in listing['errors'][0]
    response = admin.put('/v2/polling/sources/host_source', {'interval': 5})
    assert support.fault(response)[0] == 404


@pytest.mark.parametrize('headers', [
    support.member(),
    support.member(roles='member,reader'),
    {'X-Roles': 'calipso-reader', 'X-Project-Id': 'p',
     'X-User-Id': 'u', 'X-Identity-Status': 'Confirmed'},
], ids=['member', 'member-reader', 'multi-project-reader'])
def test_non_admins_are_refused(admin, store, headers):
    _, connection = store
    response = admin.get('/v2/polling/sources', headers=headers)
    assert support.fault(response)[:2] == (403, 'Client')
    response = admin.put('/v2/polling/sources/host_source',
                         {'interval': 5}, headers=headers)
    assert support.fault(response)[:2] == (403, 'Client')
    assert connection.get_polling_overrides() == {}
    admin.put('/v2/polling/sources/host_source', {'interval': 5})
    response = admin.delete('/v2/polling/sources/host_source',
                            headers=headers)
    assert support.fault(response)[:2] == (403, 'Client')
    assert list(connection.get_polling_overrides()) == ['host_source']


def test_an_invalid_token_is_refused(admin):
    response = admin.get('/v2/polling/sources',
                         headers={'X-Identity-Status': 'Invalid'})
    assert response.status_code == 401
