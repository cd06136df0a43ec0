"""/v2/meters/{name}/statistics, against the plain-Python reference of
tests/helpers/ (reference_statistics) with Ceilometer's clamping."""

import datetime
import math

import pytest

from calipso_agent.storage import base
from tests.helpers import oracle
from tests.unit.api.support import at, fault, naive, query

UTC = datetime.UTC


def clamped(stats, start, end):
    """What the API shows of reference Statistics: durations clamped to
    the query bounds, datetimes naive."""
    first, last = stats['duration_start'], stats['duration_end']
    if start is not None:
        first = max(first, start)
    if end is not None:
        last = min(last, end)
    shown = dict(stats)
    del shown['stddev']
    if first <= last:
        shown['duration'] = (last - first).total_seconds()
    else:
        first = last = shown['duration'] = None
    for field, value in (('duration_start', first), ('duration_end', last),
                         ('period_start', stats['period_start']),
                         ('period_end', stats['period_end'])):
        shown[field] = (None if value is None else
                        value.replace(tzinfo=None).isoformat())
    return shown


def assert_same(got, want):
    assert len(got) == len(want), (got, want)
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys()
        for field in g:
            if isinstance(w[field], float) and g[field] is not None:
                assert math.isclose(g[field], w[field], rel_tol=1e-9,
                                    abs_tol=1e-9), (field, g, w)
            elif field == 'aggregate':
                assert g[field].keys() == w[field].keys()
                for key in g[field]:
                    assert math.isclose(g[field][key], w[field][key],
                                        rel_tol=1e-9, abs_tol=1e-9)
            else:
                assert g[field] == w[field], (field, g, w)


def params_of(period, groupby, aggregates):
    params = []
    if period is not None:
        params.append(('period', str(period)))
    params += [('groupby', field) for field in groupby]
    for func, param in aggregates:
        params.append(('aggregate.func', func))
        params.append(('aggregate.param', param or ''))
    return params


BOUNDS = {
    'unbounded': ([], None, None),
    'ge and lt': (query(('timestamp', 'ge', at(300)),
                        ('timestamp', 'lt', at(4000))),
                  oracle.instant(at(300)), oracle.instant(at(4000))),
    'project': (query(('project_id', 'eq', 'project-a')), None, None),
}
GROUPBYS = ([], ['resource_id'], ['project_id', 'user_id'],
            ['resource_metadata.flavor.name'], ['source'])
AGGREGATES = ([], [('stddev', None), ('cardinality', 'resource_id')],
              [('avg', None), ('count', None), ('max', None),
               ('min', None), ('sum', None),
               ('cardinality', 'user_id')])


def reference_filter(terms):
    """The SampleFilter of the BOUNDS terms, written by hand."""
    arguments = {'meter': 'cpu'}
    for field, op, value in zip(terms[0::3], terms[1::3], terms[2::3],
                                strict=True):
        field, op, value = field[1], op[1], value[1]
        if field == 'project_id':
            arguments['project_id'] = value
        elif op == 'ge':
            arguments['start_timestamp'] = value
        else:
            arguments['end_timestamp'] = value
    return base.SampleFilter(**arguments)


@pytest.mark.parametrize('bounds', sorted(BOUNDS))
@pytest.mark.parametrize('period', [None, 600, 1800])
@pytest.mark.parametrize('groupby', GROUPBYS)
@pytest.mark.parametrize('aggregates', AGGREGATES)
def test_statistics_match_the_reference(client, samples, bounds, period,
                                        groupby, aggregates):
    terms, start, end = BOUNDS[bounds]
    response = client.get('/v2/meters/cpu/statistics',
                          terms + params_of(period, groupby, aggregates))
    assert response.status_code == 200, response.text
    reference = oracle.reference_statistics(
        samples, reference_filter(terms), period, groupby, aggregates)
    assert_same(response.json, [clamped(s, start, end) for s in reference])


def test_statistics_without_period(client):
    (stats,) = client.get('/v2/meters/memory/statistics').json
    assert stats == {
        'groupby': None, 'unit': 'MB', 'min': 512.0, 'max': 2048.0,
        'avg': 1280.0, 'sum': 5120.0, 'count': 4, 'aggregate': {},
        'duration': 2700.25, 'duration_start': naive(30),
        'duration_end': '2024-05-01T00:45:30.250000', 'period': 0,
        'period_start': naive(30),
        'period_end': '2024-05-01T00:45:30.250000'}


def test_periods_start_at_the_query_start(client):
    shown = client.get('/v2/meters/cpu/statistics', query(
        ('timestamp', 'ge', at(300))) + [('period', '1800')]).json
    assert [s['period_start'] for s in shown] == [
        naive(300), naive(2100), naive(3900), naive(5700)]
    assert all(s['period'] == 1800 for s in shown)
    assert shown[0]['period_end'] == naive(2100)


def test_durations_are_clamped_to_the_query_bounds(client):
    # search_offset widens the store's range to [900, 2500): vm-2's only
    # sample (1200) is before the query start, vm-1's (2400) after its
    # end, vm-0's (1800) inside.
    shown = client.get('/v2/meters/cpu/statistics', query(
        ('timestamp', 'ge', at(1500)), ('timestamp', 'lt', at(1900)),
        ('search_offset', 'eq', '10')) + [('groupby', 'resource_id')]).json
    by_resource = {s['groupby']['resource_id']: s for s in shown}
    assert by_resource['vm-0']['duration'] == 0.0
    assert by_resource['vm-0']['duration_start'] == naive(1800)
    for resource in ('vm-1', 'vm-2'):
        stats = by_resource[resource]
        assert (stats['duration'], stats['duration_start'],
                stats['duration_end']) == (None, None, None)
        assert stats['count'] == 1


def test_duration_start_is_the_query_start_when_later(client):
    (stats,) = client.get('/v2/meters/cpu/statistics', query(
        ('timestamp', 'ge', at(1500)), ('timestamp', 'le', at(3000)),
        ('search_offset', 'eq', '10'))).json
    assert stats['count'] == 5
    assert (stats['duration_start'], stats['duration_end']) == (
        naive(1500), naive(3000))
    assert stats['duration'] == 1500.0


def test_multi_project_union(client, samples):
    (stats,) = client.get('/v2/meters/cpu/statistics', query(
        ('project_id', 'in', 'project-a,project-b')) + [
        ('aggregate.func', 'avg'), ('aggregate.func', 'stddev')]).json
    volumes = [s.volume for s in samples if s.name == 'cpu']
    mean = sum(volumes) / len(volumes)
    assert math.isclose(stats['aggregate']['avg'], mean)
    assert math.isclose(stats['aggregate']['stddev'], math.sqrt(
        sum((v - mean) ** 2 for v in volumes) / len(volumes)))


def test_unknown_meter_has_no_statistics(client):
    assert client.get('/v2/meters/nothing/statistics').json == []


def test_groupby_names_are_deduplicated(client):
    shown = client.get('/v2/meters/cpu/statistics', [
        ('groupby', 'source'), ('groupby', 'source')]).json
    assert [s['groupby'] for s in shown] == [{'source': 'openstack'},
                                             {'source': 'other'}]


def test_aggregate_params_pair_with_cardinality(client):
    (stats,) = client.get('/v2/meters/cpu/statistics', [
        ('aggregate.func', 'max'), ('aggregate.func', 'cardinality'),
        ('aggregate.param', 'project_id')]).json
    assert stats['aggregate'] == {'max': 112.0, 'cardinality/project_id': 2}


def test_aggregate_param_of_other_functions_is_ignored(client):
    (stats,) = client.get('/v2/meters/cpu/statistics', [
        ('aggregate.func', 'sum'), ('aggregate.param', 'resource_id'),
        ('aggregate.func', 'sum'), ('aggregate.param', '')]).json
    assert stats['aggregate'] == {'sum': stats['sum']}


@pytest.mark.parametrize('params, parameter', [
    ([('period', '-1')], 'period'),
    ([('period', 'hourly')], 'period'),
    ([('groupby', 'colour')], 'groupby'),
    ([('groupby', 'timestamp')], 'groupby'),
    ([('groupby', 'resource_metadata.')], 'groupby'),
    ([('aggregate.func', 'median')], 'aggregate.func'),
    ([('aggregate.func', 'cardinality')], 'aggregate.param'),
    ([('aggregate.func', 'cardinality'), ('aggregate.param', 'colour')],
     'aggregate.param'),
    ([('aggregate.func', 'avg'), ('aggregate.func', 'sum'),
      ('aggregate.func', 'max'), ('aggregate.param', 'a'),
      ('aggregate.param', 'b')], 'aggregate.param'),
])
def test_bad_statistics_parameters(client, params, parameter):
    status, code, message = fault(client.get('/v2/meters/cpu/statistics',
                                             params))
    assert (status, code) == (400, 'Client')
    assert parameter in message


@pytest.mark.parametrize('period', ['1', str(10 ** 9), str(10 ** 12),
                                    str(10 ** 30)])
def test_extreme_periods_are_never_server_errors(client, period):
    response = client.get('/v2/meters/cpu/statistics', [('period', period)])
    assert response.status_code in (200, 400), response.text
