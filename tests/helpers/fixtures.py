"""The shared notification fixtures (../shared/fixtures) and the comparison of
samples with what Ceilometer made of them."""

import copy
import datetime
import glob
import json
import math
import os

from tests.helpers.basics import REPO

SHARED = os.environ.get('CALIPSO_SHARED_DIR',
                        os.path.join(os.path.dirname(REPO), 'shared'))


FIXTURES = os.path.join(SHARED, 'fixtures')


NOTIFICATIONS = os.path.join(FIXTURES, 'notifications')


EXPECTED = os.path.join(FIXTURES, 'expected')


CEILOMETER_METERS = os.path.join(FIXTURES, 'ceilometer', 'meters.yaml')


def fixture_names():
    return sorted(os.path.basename(p)[:-len('.json')]
                  for p in glob.glob(os.path.join(NOTIFICATIONS, '*.json')))


def load_envelope(name):
    with open(os.path.join(NOTIFICATIONS, name + '.json')) as handle:
        return json.load(handle)


def load_expected(name):
    with open(os.path.join(EXPECTED, name + '.samples.json')) as handle:
        return json.load(handle)


def _instant(value):
    ts = datetime.datetime.fromisoformat(value.replace('Z', '+00:00'))
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=datetime.UTC)
    return ts


def _json_equal(a, b):
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k])
                                            for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_json_equal, a, b))
    return a == b


def _context_fallback(ctxt, field):
    keys = {'user_id': ('user_id', 'user'),
            'project_id': ('project_id', 'tenant_id')}[field]
    for key in keys:
        if (ctxt or {}).get(key) is not None:
            return ctxt[key]
    return None


def sample_differences(got, expected, ctxt, meters=None):
    """How ``got`` differs from Ceilometer's ``expected`` samples under the
    fixtures' comparison rules (README of the fixtures); [] when equal.

    ``meters``: compare only these meter names (the ones Ceilometer ships)
    when the agent defines more.
    """
    if meters is not None:
        got = [s for s in got if s['name'] in meters]
    problems = []
    if len(got) != len(expected):
        problems.append(f'{len(got)} samples, expected {len(expected)}')
    by_key = {}
    for sample in got:
        by_key.setdefault((sample['name'], sample['resource_id']),
                          []).append(sample)
    for want in expected:
        key = (want['name'], want['resource_id'])
        if not by_key.get(key):
            problems.append(f'missing {key}')
            continue
        have = by_key[key].pop(0)
        for field in ('type', 'unit', 'source'):
            if have[field] != want[field]:
                problems.append(f'{key} {field}: {have[field]!r} != '
                                f'{want[field]!r}')
        for field in ('user_id', 'project_id'):
            wanted = want[field]
            if wanted is None:
                wanted = _context_fallback(ctxt, field)
            if have[field] != wanted:
                problems.append(f'{key} {field}: {have[field]!r} != '
                                f'{wanted!r}')
        if not math.isclose(have['volume'], want['volume'], rel_tol=1e-9,
                            abs_tol=1e-9):
            problems.append(f'{key} volume: {have["volume"]!r} != '
                            f'{want["volume"]!r}')
        if _instant(have['timestamp']) != _instant(want['timestamp']):
            problems.append(f'{key} timestamp: {have["timestamp"]} != '
                            f'{want["timestamp"]}')
        metadata = json.loads(json.dumps(have['resource_metadata'],
                                         default=str))
        if not _json_equal(metadata, want['resource_metadata']):
            problems.append(f'{key} resource_metadata: {metadata!r} != '
                            f'{want["resource_metadata"]!r}')
    return problems


INSTANCE_EXISTS = 'nova_legacy__ceilometer-tests__instance_exists'


INSTANCE_METERS = ('disk.ephemeral.size', 'disk.root.size', 'memory',
                   'vcpus')


def instance_exists(instance_id, **payload):
    """The instance exists fixture envelope about ``instance_id`` (4
    samples with Ceilometer's meters.yaml; None: no instance_id at all),
    ``payload`` keys replaced; a value of None removes the key."""
    envelope = copy.deepcopy(load_envelope(INSTANCE_EXISTS))
    envelope['publisher_id'] = 'compute.host1'
    payload['instance_id'] = instance_id
    for key, value in payload.items():
        if value is None:
            envelope['payload'].pop(key, None)
        else:
            envelope['payload'][key] = value
    return envelope
