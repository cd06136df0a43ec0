"""Bounds of samples: ids, volumes, metadata size and depth."""

import pytest

from calipso_agent import sample_limits
from tests.helpers.basics import make_sample

LIMITS = sample_limits.SampleLimits(max_id_length=255,
                                    max_metadata_bytes=1000,
                                    max_metadata_depth=8)


def nested(levels):
    value = {}
    for _ in range(levels):
        value = {'a': value}
    return value


@pytest.mark.parametrize('field', ['name', 'resource_id', 'project_id',
                                   'user_id'])
def test_an_id_longer_than_the_limit_is_refused(field):
    assert LIMITS.check(make_sample(**{field: 'x' * 255})) is None
    assert LIMITS.check(make_sample(**{field: 'x' * 256})) == (
        f'{field} of 256 characters is longer than 255')


@pytest.mark.parametrize('volume,reason', [
    (True, 'volume True is a boolean, not a number'),
    (False, 'volume False is a boolean, not a number'),
    (float('nan'), 'volume nan is not a finite number'),
    (float('inf'), 'volume inf is not a finite number'),
    (-1.0, None),
    (0, None),
])
def test_a_volume_must_be_a_finite_number(volume, reason):
    assert LIMITS.check(make_sample(volume=volume)) == reason


def test_metadata_within_the_bounds_is_left_alone():
    metadata = {'flavor': {'name': 'm1', 'vcpus': 1}, 'tags': [1, 2]}
    sample = make_sample(resource_metadata=metadata)
    assert LIMITS.bound_metadata(sample) == []
    assert sample.resource_metadata is metadata


def test_a_field_nested_too_deeply_is_dropped():
    # The metadata mapping is level 1: nested(6) reaches level 8.
    sample = make_sample(resource_metadata={'ok': nested(6),
                                            'deep': nested(7),
                                            'keep': 'x'})
    assert LIMITS.bound_metadata(sample) == ['deep']
    assert sample.resource_metadata == {'ok': nested(6), 'keep': 'x'}


def test_nesting_no_encoder_writes_is_dropped_without_recursing():
    deep = nested(5000)
    limits = sample_limits.SampleLimits(max_metadata_depth=100000)
    sample = make_sample(resource_metadata={'deep': deep, 'keep': 1})
    assert limits.bound_metadata(sample) == ['deep']
    assert sample.resource_metadata == {'keep': 1}


def test_the_largest_fields_are_dropped_until_the_metadata_fits():
    sample = make_sample(resource_metadata={
        'display_name': 'n' * 700, 'notes': 'm' * 500, 'host': 'h1'})
    shared = sample.resource_metadata
    assert LIMITS.bound_metadata(sample) == ['display_name']
    assert sample.resource_metadata == {'notes': 'm' * 500, 'host': 'h1'}
    # The caller's mapping (shared by the meters of a notification) is
    # not changed in place.
    assert 'display_name' in shared


def test_depth_counts_lists_and_stops_at_the_limit():
    assert sample_limits.depth('x', 5) == 0
    assert sample_limits.depth({'a': [1, {'b': 2}]}, 5) == 3
    assert sample_limits.depth(nested(100000), 5) == 6


def test_from_conf_reads_the_options():
    from tests.helpers import basics
    conf = basics.make_conf(sample_limits__max_id_length=10,
                             sample_limits__max_metadata_depth=3)
    limits = sample_limits.SampleLimits.from_conf(conf)
    assert (limits.max_id_length, limits.max_metadata_depth,
            limits.max_metadata_bytes) == (10, 3, 65536)


@pytest.mark.parametrize('value', [42, {'a': 1}, ['x'], 1.5])
def test_an_id_that_is_not_text_is_refused(value):
    assert LIMITS.check(make_sample(user_id=value)) == (
        f'user_id is a {type(value).__name__}, not text')


def test_samples_sharing_metadata_values_are_bounded_alike():
    shared = {'display_name': 'n' * 700, 'notes': 'm' * 500, 'host': 'h1'}
    samples = [make_sample(i, resource_metadata=dict(shared))
               for i in range(3)]
    other = make_sample(9, resource_metadata={'host': 'h2'})
    dropped = LIMITS.bound_samples(samples + [other])
    assert dropped == {'display_name': 3}
    assert all(s.resource_metadata == {'notes': 'm' * 500, 'host': 'h1'}
               for s in samples)
    assert other.resource_metadata == {'host': 'h2'}
    assert 'display_name' in shared
