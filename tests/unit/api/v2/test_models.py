"""Representations (api/v2/models.py)."""

import datetime

from calipso_agent.api.v2 import models

UTC = datetime.UTC


def test_flatten_metadata_as_ceilometer():
    assert models.flatten_metadata({
        'a': {'b': {'c': 1}, 'd': [1, 'x']}, 'e.f': True, 'g': None,
        'h': {}, 'i': 2.5}) == {
        'a.b:c': '1', 'a.d': "[1, 'x']", 'e.f': 'True', 'g': 'None',
        'i': '2.5'}
    assert models.flatten_metadata(None) == {}


def test_flatten_metadata_keys_and_values_as_ceilometer():
    class Text(str):
        pass

    flat = models.flatten_metadata({
        'x.y.z': 1, 'p:q': 'v', 'tags': {'a', 'b'}, 'frozen': frozenset(),
        'name': Text('vm'), 'n': {'m': {'k.l': False}}, 'b': b'raw'})
    assert flat == {'x.y:z': '1', 'p.q': 'v', 'name': 'vm',
                    'n.m:k:l': 'False', 'b': "b'raw'"}
    assert type(flat['name']) is str
    assert list(flat) == sorted(flat, key=['b', 'n.m:k:l', 'name', 'p.q',
                                           'x.y:z'].index)


def test_restore_nesting():
    assert models.restore_nesting({'a.b': 1, 'a.c': 'x', 'd': 2}) == {
        'a': {'b': 1, 'c': 'x'}, 'd': 2}
    assert models.restore_nesting({'a': 1, 'a.b': 2}) == {'a': {'b': 2}}


def test_format_datetime():
    assert models.format_datetime(
        datetime.datetime(2026, 1, 1, tzinfo=UTC)) == '2026-01-01T00:00:00'
    assert models.format_datetime(
        '2026-01-01T02:00:00.000500+02:00') == '2026-01-01T00:00:00.000500'
    assert models.format_datetime(None) is None


def test_flatten_capabilities():
    assert models.flatten_capabilities({'a': {'b': True}, 'c': False}) == {
        'a:b': True, 'c': False}
