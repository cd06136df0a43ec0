"""Subscriptions: CORD bodies, targets, matching; a tenant never gets a
foreign project's sample whatever its query says (property test)."""

import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calipso_agent import subscriptions
from calipso_agent.wsgi import errors
from tests.helpers.basics import make_sample

CHANNEL = frozenset(('p-1', 'p-2'))
PROJECTS = ['p-1', 'p-2', 'p-3', 'P-1', '', 'p-1,p-3']


def body(**fields):
    data = {'app_id': 'app', 'target': 'udp://127.0.0.1:5000',
            'sub_info': 'cpu'}
    data.update(fields)
    return data


def test_cord_body_is_scoped_to_the_channel():
    parsed = subscriptions.parse_body(body(
        sub_info=['cpu_*', 'memory'],
        query=[{'field': 'counter_volume', 'op': '>=', 'value': '2'}]),
        CHANNEL)
    assert parsed['meters'] == ['cpu_*', 'memory']
    assert parsed['query'] == [
        {'field': 'volume', 'op': 'ge', 'value': '2'},
        {'field': 'project_id', 'op': 'in', 'value': ['p-1', 'p-2']}]


@pytest.mark.parametrize('fields', [
    {'app_id': ''}, {'app_id': 'a b'}, {'app_id': 7},
    {'sub_info': []}, {'sub_info': ''}, {'sub_info': [1]},
    {'query': 'x'}, {'query': [{'field': 'nope', 'value': 1}]},
    {'query': [{'field': 'volume', 'op': 'like', 'value': 1}]},
    {'query': [{'field': 'volume', 'op': 'in', 'value': []}]},
    {'query': [{'field': 'volume', 'value': {'a': 1}}]},
    {'target': 'ftp://h/x'}, {'target': 'udp://h'},
    {'target': 'udp://u:p@h:1'}, {'target': 'http://'},
    {'target': 'http://h:0/'}, {'target': 'http://h:99999/'},
    {'target': 'amqp://broker/x'}, {'target': 'http://h/ x'},
    {'extra': 1},
])
def test_bad_bodies_are_client_errors(fields):
    with pytest.raises(errors.ClientError) as caught:
        subscriptions.parse_body(body(**fields), CHANNEL)
    assert caught.value.code == 400


def test_credentials_never_shown():
    url = 'https://app:s3cret@example.com:8443/hook?x=1'
    assert subscriptions.redact(url) == 'https://***@example.com:8443/hook?x=1'
    with pytest.raises(errors.ClientError) as caught:
        subscriptions.parse_target('udp://app:s3cret@h:1/path')
    assert 's3cret' not in str(caught.value)
    view = subscriptions.public_view(
        {'id': 'i', 'app_id': 'a', 'target': url, 'meters': ['cpu'],
         'query': []})
    assert 's3cret' not in repr(view)


def test_target_addresses_are_limited_to_the_allowed_networks():
    def resolve(host, port, *args):
        return [(socket.AF_INET, socket.SOCK_STREAM, 0, '',
                 ({'inside': '10.1.2.3', 'outside': '127.0.0.1'}[host],
                  port))]

    networks = subscriptions.parse_networks(['10.0.0.0/8'])
    inside = subscriptions.parse_target('http://inside:80/')
    outside = subscriptions.parse_target('udp://outside:9')
    assert subscriptions.check_target_address(inside, networks,
                                              resolve) == ['10.1.2.3']
    with pytest.raises(errors.ClientError):
        subscriptions.check_target_address(outside, networks, resolve)
    assert subscriptions.check_target_address(outside, [], resolve)


def test_matching_by_name_pattern_and_terms():
    index = subscriptions.MatcherIndex([
        subscriptions.Matcher(dict(parsed, id=name))
        for name, parsed in (
            ('exact', subscriptions.parse_body(body(sub_info='cpu'),
                                               CHANNEL)),
            ('pattern', subscriptions.parse_body(body(
                sub_info='disk.*', query=[
                    {'field': 'resource_metadata.flavor.name',
                     'value': 'm1.small'},
                    {'field': 'volume', 'op': 'lt', 'value': 5}]),
                CHANNEL)))])

    def ids(sample):
        return sorted(m.id for m in index.matching(sample))

    assert ids(make_sample(1, project_id='p-1')) == ['exact']
    assert ids(make_sample(1, project_id='p-3')) == []
    assert ids(make_sample(1, name='disk.read', project_id='p-2')) == [
        'pattern']
    assert ids(make_sample(7, name='disk.read', project_id='p-2')) == []
    assert ids(make_sample(1, name='disk.read', project_id='p-2',
                           resource_metadata={})) == []


FIELDS = st.sampled_from(['project_id', 'project', 'resource_id',
                          'volume', 'user_id', 'resource_metadata.x',
                          'name', 'source'])
OPS = st.sampled_from(['eq', 'ne', 'lt', 'le', 'gt', 'ge', 'in', '=',
                       '!=', None])
VALUES = st.one_of(st.sampled_from(PROJECTS), st.integers(-3, 3),
                   st.lists(st.sampled_from(PROJECTS), max_size=3),
                   st.text(max_size=5))
TERMS = st.lists(st.fixed_dictionaries(
    {'field': FIELDS, 'op': OPS, 'value': VALUES}), max_size=4)


@settings(max_examples=400, deadline=None)
@given(TERMS, st.lists(st.sampled_from(PROJECTS[:4]), min_size=1,
                       max_size=6))
def test_no_query_reaches_a_foreign_project(terms, sample_projects):
    try:
        parsed = subscriptions.parse_body(body(query=terms), CHANNEL)
    except errors.ClientError as exc:
        assert exc.code in (400, 403)
        return
    # What the proxy forwards, the API parses to the same subscription.
    assert subscriptions.parse_body(
        {'app_id': parsed['app_id'], 'target': parsed['target'],
         'sub_info': parsed['meters'], 'query': parsed['query']},
        CHANNEL) == parsed
    matcher = subscriptions.Matcher(dict(parsed, id='s'))
    for index, project in enumerate(sample_projects):
        sample = make_sample(index, project_id=project)
        if matcher.matches(sample):
            assert project in CHANNEL
    # Stored as it is, read back by another agent: the same verdicts.
    again = subscriptions.Matcher(dict(parsed, id='s',
                                       projects=['p-1', 'p-2', 'p-3']))
    for index, project in enumerate(sample_projects):
        if again.matches(make_sample(index, project_id=project)):
            assert project in CHANNEL
