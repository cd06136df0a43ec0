"""Every shared fixture through Ceilometer's own meters.yaml gives the
samples OpenStack Ceilometer 27 gave (fixtures README rules), except for the
request-context fallback of user_id/project_id that we implement."""

import pytest

from calipso_agent.notification import base, meters
from tests.helpers import fixtures

DEFINITIONS = meters.MeterDefinitions.from_files([fixtures.CEILOMETER_METERS])


def test_ceilometer_meters_yaml_loads_unmodified():
    assert DEFINITIONS.report.errors == []
    assert len(DEFINITIONS.definitions) == 38


def agent_samples(envelope):
    priority, notification = base.from_envelope(envelope)
    if priority not in base.SAMPLE_PRIORITIES:
        return []
    samples, _ = DEFINITIONS.build_samples(notification)
    return [s.as_dict() for s in samples]


@pytest.mark.parametrize('name', fixtures.fixture_names())
def test_same_samples_as_ceilometer(name):
    envelope = fixtures.load_envelope(name)
    expected = fixtures.load_expected(name)
    got = agent_samples(envelope)
    assert fixtures.sample_differences(got, expected,
                                      envelope.get('ctxt')) == []


def test_fixture_set_is_complete():
    assert len(fixtures.fixture_names()) >= 200


def test_context_fallback_is_used_where_ceilometer_gives_null():
    envelope = fixtures.load_envelope(
        'nova_legacy__ceilometer-tests__instance_exists')
    envelope['payload'].pop('user_id')
    envelope['ctxt'] = {'user': 'ctx-user', 'tenant_id': 'ctx-project'}
    envelope['payload'].pop('tenant_id')
    samples = agent_samples(envelope)
    assert samples
    assert {s['user_id'] for s in samples} == {'ctx-user'}
    assert {s['project_id'] for s in samples} == {'ctx-project'}
    envelope['ctxt'] = {'user_id': 'u1', 'user': 'u2',
                        'project_id': 'p1', 'tenant_id': 'p2'}
    samples = agent_samples(envelope)
    assert {s['user_id'] for s in samples} == {'u1'}
    assert {s['project_id'] for s in samples} == {'p1'}


def test_sample_ids_are_deterministic_and_distinct():
    envelope = fixtures.load_envelope(
        'nova_legacy__ceilometer-tests__instance_exists')
    first = agent_samples(envelope)
    again = agent_samples(envelope)
    assert [s['id'] for s in first] == [s['id'] for s in again]
    assert len({s['id'] for s in first}) == len(first) == 4
    envelope['message_id'] = 'another-message'
    other = agent_samples(envelope)
    assert not {s['id'] for s in other} & {s['id'] for s in first}
