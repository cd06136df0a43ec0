"""The definitions we ship in etc/calipso/meters.d."""

import glob
import os

import pytest

from calipso_agent.notification import base, meters
from tests.helpers import basics, fixtures

SHIPPED = sorted(glob.glob(os.path.join(basics.METERS_D, '*.yaml')))
DEFINITIONS = meters.MeterDefinitions.from_files(SHIPPED)
CEILOMETER_NAMES = {d.name for d in meters.MeterDefinitions.from_files(
    [fixtures.CEILOMETER_METERS]).definitions}
FAMILIES = ('nova_legacy', 'nova_versioned', 'neutron', 'cinder', 'glance')


def test_shipped_files_load_without_errors():
    assert [os.path.basename(p) for p in SHIPPED] == [
        'cinder.yaml', 'glance.yaml', 'neutron.yaml', 'nova.yaml',
        'vsg.yaml']
    assert DEFINITIONS.report.errors == []


@pytest.mark.parametrize('name', [n for n in fixtures.fixture_names()
                                  if n.startswith(FAMILIES)])
def test_openstack_meters_match_ceilometer(name):
    envelope = fixtures.load_envelope(name)
    priority, notification = base.from_envelope(envelope)
    samples, failures = (DEFINITIONS.build_samples(notification)
                         if priority in base.SAMPLE_PRIORITIES else ([], []))
    assert failures == []
    assert fixtures.sample_differences(
        [s.as_dict() for s in samples], fixtures.load_expected(name),
        envelope.get('ctxt'), meters=CEILOMETER_NAMES) == []


@pytest.mark.parametrize('fixture,expected', [
    ('vcpe__cord-sample-publisher__vcpe', [('vsg', 'vcpe-222-432', 1.0)]),
    ('vcpe__cord-sample-publisher__vcpe-dns-cache-size',
     [('vsg.dns.cache.size', 'vcpe-222-432', 150.0)]),
    ('vcpe__cord-constructed__dns-total-inserted-entries-as-sent',
     [('vsg.dns.total_instered_entries', 'vcpe-222-432', 1834.0)]),
    ('vcpe__cord-constructed__dns-server-queries-sent',
     [('vsg.dns.server.queries_sent', 'vcpe-222-432-8.8.8.8', 2703.0)]),
])
def test_vsg_definitions(fixture, expected):
    _, notification = base.from_envelope(fixtures.load_envelope(fixture))
    samples, failures = DEFINITIONS.build_samples(notification)
    assert failures == []
    assert [(s.name, s.resource_id, s.volume) for s in samples] == expected
