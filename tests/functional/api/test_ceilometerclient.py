"""python-ceilometerclient 2.9.0, the client of the tenant applications,
against the real calipso-api with Keystone authentication.

The client is built as tenant applications built it, with the legacy
keyword arguments of ``ceilometerclient.client.get_client``::

    get_client(2, os_auth_url=<keystone>/v3, os_username=...,
               os_password=..., os_tenant_name=<project name>,
               os_user_domain_id='default', os_project_domain_id='default',
               ceilometer_url=<calipso-api URL>)

It gets a v3 token from Keystone by itself and sends it to
``ceilometer_url``. Two quirks of 2.9.0: ``os_project_name`` is not
read by ``get_client`` (``os_tenant_name`` or ``project_name`` is), and
a keystoneauth session with ``endpoint_override`` makes the client probe
``GET /`` of the endpoint for aodh and panko while it is built, which
calipso-api answers 404 (see test_session_with_endpoint_override).

Every answer is compared with a plain-Python computation over the
inserted samples (statistics: tests.oracle.reference_statistics).
"""

import datetime
import json

import pytest
from ceilometerclient import client as ceilometer_client
from ceilometerclient import exc as client_exc
from ceilometerclient.apiclient import exceptions as client_exceptions

from calipso_agent.storage import base as storage_base
from tests.helpers import daemons, oracle
from tests.helpers.basics import make_sample

pytestmark = pytest.mark.functional

START = datetime.datetime(2024, 5, 1, 10, 0, tzinfo=datetime.UTC)
PERIOD = 3600
AGGREGATES = [{'func': 'cardinality', 'param': 'resource_id'},
              {'func': 'avg'}]
METERS = (('cpu', 'cumulative', 'ns'), ('memory', 'gauge', 'MB'))
OTHER_USER = 'user-of-project-a-without-login'


def _samples(keystone):
    """Four samples of cpu and of memory per resource, each at its own
    minute; vm-1 to vm-3 in project-a, vm-b in project-b."""
    a, b = keystone.user_a, keystone.user_b
    owners = {'vm-1': (a.id, a.project_id), 'vm-2': (a.id, a.project_id),
              'vm-3': (OTHER_USER, a.project_id),
              'vm-b': (b.id, b.project_id)}
    samples = []
    for resource, (user_id, project_id) in owners.items():
        for name, type_, unit in METERS:
            for _ in range(4):
                n = len(samples)
                samples.append(make_sample(
                    n, name=name, type=type_, unit=unit,
                    volume=float((n * 37) % 23) + 0.5, user_id=user_id,
                    project_id=project_id, resource_id=resource,
                    timestamp=(START + datetime.timedelta(
                        minutes=17 * n)).isoformat(),
                    resource_metadata={
                        'flavor': {'name': f'm1.size{n % 3}'},
                        'host': f'host-{n % 2}'}))
    return samples


def _naive(timestamp):
    """How the API writes a timestamp: naive UTC ISO 8601."""
    return oracle.instant(timestamp).astimezone(datetime.UTC).replace(
        tzinfo=None).isoformat()


def _flat(metadata):
    return {'flavor.name': metadata['flavor']['name'],
            'host': metadata['host']}


@pytest.fixture(scope='module')
def api(keystone, tmp_path_factory):
    """(calipso-api base URL, the inserted samples as dicts)."""
    workdir = tmp_path_factory.mktemp('calipso-api-ceilometerclient')
    samples = _samples(keystone)
    with daemons.keystone_api(keystone, workdir, samples) as url:
        yield url, [s.as_dict() for s in samples]


def _client(keystone, url, user):
    return ceilometer_client.get_client(
        2, os_auth_url=keystone.url, os_username=user.name,
        os_password=user.password, os_tenant_name=user.project_name,
        os_user_domain_id='default', os_project_domain_id='default',
        ceilometer_url=url, timeout=30)


@pytest.fixture(scope='module')
def client(api, keystone):
    """A client of user-a (member of project-a)."""
    return _client(keystone, api[0], keystone.user_a)


@pytest.fixture(scope='module')
def own(api, keystone):
    """The inserted samples user-a may see (project-a's)."""
    return [s for s in api[1]
            if s['project_id'] == keystone.user_a.project_id]


def _q(resource_id):
    if resource_id is None:
        return None
    return [{'field': 'resource_id', 'op': 'eq', 'value': resource_id}]


def _of(samples, resource_id=None, name=None):
    return [s for s in samples
            if resource_id in (None, s['resource_id'])
            and name in (None, s['name'])]


@pytest.mark.parametrize('resource_id', [None, 'vm-2'])
def test_meters_list(client, own, resource_id):
    got = client.meters.list(q=_q(resource_id))
    assert sorted((m.name, m.type, m.unit, m.resource_id, m.project_id,
                   m.user_id, m.source) for m in got) == sorted(
        {(s['name'], s['type'], s['unit'], s['resource_id'],
          s['project_id'], s['user_id'], s['source'])
         for s in _of(own, resource_id)})


def test_meters_of_another_project_are_not_listed(api, keystone):
    got = _client(keystone, api[0], keystone.user_b).meters.list()
    assert {(m.resource_id, m.project_id) for m in got} == {
        ('vm-b', keystone.user_b.project_id)}


@pytest.mark.parametrize('resource_id', [None, 'vm-3'])
def test_samples_list(client, own, resource_id):
    got = client.samples.list(meter_name='memory', q=_q(resource_id))
    want = sorted(_of(own, resource_id, 'memory'),
                  key=lambda s: s['timestamp'], reverse=True)
    assert [(s.counter_name, s.counter_type, s.counter_unit,
             s.counter_volume, s.resource_id, s.project_id, s.user_id,
             s.source, s.timestamp, s.message_id, s.resource_metadata)
            for s in got] == [
        (s['name'], s['type'], s['unit'], s['volume'], s['resource_id'],
         s['project_id'], s['user_id'], s['source'], _naive(s['timestamp']),
         s['message_id'], _flat(s['resource_metadata'])) for s in want]


def _new_sample(sample):
    return (sample.id, sample.meter, sample.type, sample.unit, sample.volume,
            sample.resource_id, sample.project_id, sample.user_id,
            sample.source, sample.timestamp, sample.metadata)


def _expected_sample(s):
    return (s['id'], s['name'], s['type'], s['unit'], s['volume'],
            s['resource_id'], s['project_id'], s['user_id'], s['source'],
            _naive(s['timestamp']), _flat(s['resource_metadata']))


@pytest.mark.parametrize('resource_id', [None, 'vm-1'])
def test_new_samples_list(client, own, resource_id):
    got = client.new_samples.list(q=_q(resource_id), limit=1000)
    want = sorted(_of(own, resource_id), key=lambda s: s['timestamp'],
                  reverse=True)
    assert [_new_sample(s) for s in got] == [
        _expected_sample(s) for s in want]
    assert all(s.recorded_at for s in got)
    assert len(client.new_samples.list(q=_q(resource_id), limit=2)) == 2


def test_new_samples_get(api, client, own, keystone):
    for stored in own[::5]:
        assert _new_sample(client.new_samples.get(stored['id'])) == (
            _expected_sample(stored))
    theirs = next(s for s in api[1]
                  if s['project_id'] == keystone.user_b.project_id)
    with pytest.raises(client_exc.HTTPNotFound):
        client.new_samples.get(theirs['id'])


def _expected_statistics(own, resource_id, period=None, groupby=None,
                         aggregates=None):
    sample_filter = storage_base.SampleFilter(
        meter='cpu', resource_id=resource_id)
    pairs = [(a['func'], a.get('param')) for a in aggregates or ()]
    found = oracle.reference_statistics(own, sample_filter, period=period,
                                         groupby=groupby,
                                         aggregates=pairs or None)
    for stats in found:
        for name in ('duration_start', 'duration_end', 'period_start',
                     'period_end'):
            stats[name] = _naive(stats[name])
    return found


STATISTICS_FIELDS = ('count', 'avg', 'sum', 'min', 'max', 'aggregate',
                     'groupby', 'unit', 'period', 'period_start',
                     'period_end', 'duration', 'duration_start',
                     'duration_end')


@pytest.mark.parametrize('resource_id', [None, 'vm-1'])
@pytest.mark.parametrize('period, groupby, aggregates', [
    (None, None, None),
    (PERIOD, None, None),
    (PERIOD, ['resource_id'], None),
    (None, ['user_id', 'resource_id'], None),
    (PERIOD, None, AGGREGATES),
    (PERIOD, ['user_id'], AGGREGATES),
])
def test_statistics_list(client, own, resource_id, period, groupby,
                         aggregates):
    got = client.statistics.list('cpu', q=_q(resource_id), period=period,
                                 groupby=groupby, aggregates=aggregates)
    want = _expected_statistics(own, resource_id, period, groupby,
                                aggregates)
    assert len(got) == len(want) > 0
    for stats, expected in zip(got, want, strict=True):
        for name in STATISTICS_FIELDS:
            value = getattr(stats, name)
            if isinstance(expected[name], float):
                assert value == pytest.approx(expected[name]), name
            else:
                assert value == expected[name], name


def _expected_resources(own, resource_id=None):
    resources = {}
    for s in sorted(_of(own, resource_id), key=lambda s: s['timestamp']):
        first = resources.get(s['resource_id'], {}).get(
            'first_sample_timestamp', _naive(s['timestamp']))
        resources[s['resource_id']] = {
            'resource_id': s['resource_id'], 'project_id': s['project_id'],
            'user_id': s['user_id'], 'source': s['source'],
            'first_sample_timestamp': first,
            'last_sample_timestamp': _naive(s['timestamp']),
            'metadata': _flat(s['resource_metadata'])}
    return resources


def _resource(resource):
    return {name: getattr(resource, name) for name in (
        'resource_id', 'project_id', 'user_id', 'source',
        'first_sample_timestamp', 'last_sample_timestamp', 'metadata')}


@pytest.mark.parametrize('resource_id', [None, 'vm-3'])
def test_resources_list(client, own, resource_id):
    got = client.resources.list(q=_q(resource_id))
    assert {r.resource_id: _resource(r) for r in got} == (
        _expected_resources(own, resource_id))


def test_resources_get(client, own):
    expected = _expected_resources(own)
    for resource_id, want in expected.items():
        got = client.resources.get(resource_id)
        assert (got.id, _resource(got)) == (resource_id, want)
        assert {link['rel'] for link in got.links} == {
            'self', 'cpu', 'memory'}
    with pytest.raises(client_exc.HTTPNotFound):
        client.resources.get('vm-b')


@pytest.mark.parametrize('resource_id', [None, 'vm-2'])
@pytest.mark.parametrize('use_filter', [False, True])
def test_query_samples(client, own, resource_id, use_filter):
    terms = []
    if use_filter:
        terms.append({'>': {'counter_volume': 8}})
    if resource_id:
        terms.append({'=': {'resource': resource_id}})
    expression = ({'and': terms} if len(terms) > 1
                  else terms[0] if terms else None)
    got = client.query_samples.query(
        filter=json.dumps(expression) if expression else None,
        orderby=json.dumps([{'counter_volume': 'desc'}, {'timestamp': 'asc'}]),
        limit=7)
    want = [s for s in _of(own, resource_id)
            if not use_filter or s['volume'] > 8]
    want.sort(key=lambda s: s['timestamp'])
    want.sort(key=lambda s: s['volume'], reverse=True)
    assert [_new_sample(s) for s in got] == [
        _expected_sample(s) for s in want[:7]]


def test_query_samples_cannot_leave_the_project(client, keystone):
    other = keystone.user_b.project_id
    with pytest.raises(client_exceptions.Forbidden):
        client.query_samples.query(
            filter=json.dumps({'=': {'project_id': other}}))
    with pytest.raises(client_exceptions.Forbidden):
        client.statistics.list('cpu', q=[{'field': 'project_id',
                                          'op': 'eq', 'value': other}])


def test_session_with_endpoint_override(api, keystone, own):
    got = ceilometer_client.get_client(
        2, session=keystone.session(keystone.user_a),
        endpoint_override=api[0])
    assert len(got.meters.list()) == len(
        {(s['name'], s['resource_id']) for s in own})


def test_query_samples_limit_as_the_cli_gives_it(client, own):
    """`ceilometer query-samples --limit 2` hands the client the text
    of the option, which it sends as is."""
    got = client.query_samples.query(limit='2')
    assert len(got) == 2 and len(own) > 2
