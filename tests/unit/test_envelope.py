"""A notification's message id, timestamp and context, read one way."""

import pytest

from calipso_agent import envelope


def test_message_id_and_timestamp_come_from_the_metadata():
    notification = {'metadata': {'message_id': 'm-1',
                                 'timestamp': '2026-01-02 03:04:05'}}
    assert envelope.message_id(notification) == 'm-1'
    assert envelope.timestamp(notification) == '2026-01-02 03:04:05'


@pytest.mark.parametrize('notification', [
    {}, {'metadata': None}, {'metadata': ['m-1']}, {'metadata': 'm-1'},
    {'metadata': {}},
])
def test_missing_or_malformed_metadata_reads_as_none(notification):
    assert envelope.message_id(notification) is None
    assert envelope.timestamp(notification) is None


def test_context_is_split_off_without_oslo_private_keys():
    ctxt, message = envelope.split_context({
        '_context_user': 'u', '_context_project_id': 'p', '_unique_id': 'x',
        '_msg_id': 'y', 'event_type': 'e', 'payload': {'a': 1}})
    assert ctxt == {'user': 'u', 'project_id': 'p'}
    assert message == {'event_type': 'e', 'payload': {'a': 1}}


def test_added_context_splits_back_to_itself():
    message = envelope.add_context({'event_type': 'e'},
                                   {'user': 'u', 'roles': ['admin']})
    assert message == {'event_type': 'e', '_context_user': 'u',
                       '_context_roles': ['admin']}
    assert envelope.split_context(message) == (
        {'user': 'u', 'roles': ['admin']}, {'event_type': 'e'})
    assert envelope.add_context({'a': 1}, None) == {'a': 1}
