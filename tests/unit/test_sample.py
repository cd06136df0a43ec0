"""Samples: deterministic ids, UTC timestamps, JSON form."""

import datetime
import uuid

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from calipso_agent import sample as sample_mod


@given(st.text(), st.text(), st.text(), st.integers(0, 1000))
def test_sample_id_is_uuid5(message_id, name, resource_id, index):
    key = f'{message_id}/{name}/{resource_id}'
    if index:
        key += f'/{index}'
    assert sample_mod.sample_id(message_id, name, resource_id, index) == str(
        uuid.uuid5(sample_mod.SAMPLE_ID_NAMESPACE, key))


def test_ids_differ_by_each_part():
    ids = {sample_mod.sample_id('m', 'n', 'r'),
           sample_mod.sample_id('m2', 'n', 'r'),
           sample_mod.sample_id('m', 'n2', 'r'),
           sample_mod.sample_id('m', 'n', 'r2'),
           sample_mod.sample_id('m', 'n', 'r', 1)}
    assert len(ids) == 5


@pytest.mark.parametrize('value,expected', [
    ('2012-05-08 16:03:44.122481', '2012-05-08T16:03:44.122481+00:00'),
    ('2012-05-08T16:03:44Z', '2012-05-08T16:03:44+00:00'),
    ('2012-05-08T18:03:44+02:00', '2012-05-08T16:03:44+00:00'),
    (datetime.datetime(2020, 1, 1), '2020-01-01T00:00:00+00:00'),
])
def test_normalize_timestamp(value, expected):
    assert sample_mod.normalize_timestamp(value) == expected


@pytest.mark.parametrize('value', ['2014-05-1510: 24: 56.335612', '', None,
                                   12, 'yesterday'])
def test_bad_timestamps(value):
    with pytest.raises(ValueError):
        sample_mod.normalize_timestamp(value)


def test_json_round_trip_and_odd_metadata():
    s = sample_mod.Sample('m', 'gauge', 'u', 1.5, 'u', 'p', 'r',
                          '2024-01-01T00:00:00+00:00',
                          {'when': datetime.date(2024, 1, 2), 1: 'x'},
                          message_id='mid')
    data = orjson.loads(s.to_json())
    assert data['resource_metadata'] == {'when': '2024-01-02', '1': 'x'}
    assert data['id'] == sample_mod.sample_id('mid', 'm', 'r')
    assert sample_mod.Sample.from_dict(s.as_dict()) == s


def test_made_is_the_sample_the_class_makes():
    args = ('cpu', 'cumulative', 'ns', 42, 'host-1',
            '2024-01-01T00:00:00+00:00', {'host': 'host-1'}, 'openstack',
            'some-id')
    made = sample_mod.Sample.made(*args)
    name, type_, unit, volume, resource_id, timestamp, metadata, source, \
        sample_id = args
    assert made == sample_mod.Sample(
        name, type_, unit, volume, None, None, resource_id, timestamp,
        metadata, source, None, sample_id)
    assert type(made) is sample_mod.Sample
    assert made.as_dict()['recorded_at'] is None
