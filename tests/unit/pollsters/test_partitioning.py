"""Partitioning helpers that need no coordination backend."""

from calipso_agent.pollsters import partitioning
from tests.helpers.basics import make_conf


def test_member_timeout_is_set_unless_the_url_sets_it():
    assert partitioning.with_member_timeout(
        'redis://127.0.0.1:6379', 2.5) == (
            'redis://127.0.0.1:6379?membership_timeout=2.5&timeout=2')
    assert partitioning.with_member_timeout(
        'redis://h:1?membership_timeout=9&timeout=4', 2.5) == (
            'redis://h:1?membership_timeout=9&timeout=4')


def test_without_url_one_agent_polls_everything():
    partitioner = partitioning.from_conf(make_conf())
    assert isinstance(partitioner, partitioning.NoPartitioner)
    assert partitioner.my_share('s', ['a', 'b']) == ['a', 'b']
