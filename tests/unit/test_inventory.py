"""Instants of inventory changes: one canonical text per instant."""

import datetime

import pytest

from calipso_agent import inventory


@pytest.mark.parametrize('given, canonical', [
    ('2024-05-01T12:00:00.000001+00:00', '2024-05-01T12:00:00.000001+00:00'),
    # oslo.messaging's metadata timestamp (naive: UTC).
    ('2024-05-01 12:00:00.123456', '2024-05-01T12:00:00.123456+00:00'),
    ('2024-05-01 12:00:00.123', '2024-05-01T12:00:00.123000+00:00'),
    ('2024-05-01T12:00:00', '2024-05-01T12:00:00.000000+00:00'),
    ('2024-05-01T12:00:00Z', '2024-05-01T12:00:00.000000+00:00'),
    ('2024-05-01T12:00:00+00:00', '2024-05-01T12:00:00.000000+00:00'),
    ('2024-05-01T14:00:00.5+02:00', '2024-05-01T12:00:00.500000+00:00'),
    (' 2024-05-01 12:00:00 ', '2024-05-01T12:00:00.000000+00:00'),
    ('0999-05-01T12:00:00', '0999-05-01T12:00:00.000000+00:00'),
    (datetime.datetime(2024, 5, 1, 14, tzinfo=datetime.timezone(
        datetime.timedelta(hours=2))), '2024-05-01T12:00:00.000000+00:00'),
    (datetime.datetime(999, 5, 1, 12), '0999-05-01T12:00:00.000000+00:00'),
    (None, None),
])
def test_every_spelling_of_an_instant_is_one_text(given, canonical):
    assert inventory.timestamp(given) == canonical


@pytest.mark.parametrize('given', [
    '2024-13-01 12:00:00', '2024-13-01 12:00:00.000000',
    '2024-02-30 12:00:00.000001', '2024-02-30T12:00:00.000000+00:00',
    '2024-05-01T25:00:00', 'yesterday', '', 12])
def test_what_is_no_instant_is_refused(given):
    with pytest.raises(ValueError, match='timestamp'):
        inventory.timestamp(given)
