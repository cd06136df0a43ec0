"""TenantAuth's cheap paths, on a clock of the test's (hermetic: no
Keystone is reached; what Keystone answers is tested in
tests/functional/proxy/proxy/test_keystone.py)."""

import json

import pytest

from calipso_agent.wsgi import errors
from calipso_proxy.proxy import scope as scope_mod
from calipso_proxy.proxy import tenant_auth, token_gate

TOKEN = 'channel-token'


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def auth(clock, **kwargs):
    # No session: Keystone tokens are not accepted, every other token is
    # a failed authentication.
    return tenant_auth.TenantAuth(
        scope_mod.ProjectScope(['p1']), tenant_auth.token_hash(TOKEN),
        clock=clock, **kwargs)


def test_failures_are_limited_per_address_and_earned_back():
    clock = Clock()
    checker = auth(clock, failed_auth_burst=3, failed_auth_rate=0.5)
    for _ in range(3):
        with pytest.raises(errors.UnauthorizedError):
            checker.check({'X-Auth-Token': 'wrong'}, '10.0.0.1')
    with pytest.raises(tenant_auth.TooManyFailures) as limited:
        checker.check({'X-Auth-Token': 'wrong'}, '10.0.0.1')
    assert limited.value.code == 429
    assert limited.value.headers == {'Retry-After': '2'}
    # The channel token and other addresses are not limited.
    checker.check({'X-Auth-Token': TOKEN}, '10.0.0.1')
    with pytest.raises(errors.UnauthorizedError):
        checker.check({'X-Auth-Token': 'wrong'}, '10.0.0.2')
    clock.now += 2
    with pytest.raises(errors.UnauthorizedError):
        checker.check({'X-Auth-Token': 'wrong'}, '10.0.0.1')
    with pytest.raises(tenant_auth.TooManyFailures):
        checker.check({'X-Auth-Token': 'wrong'}, '10.0.0.1')


def test_no_limit_when_the_burst_is_zero():
    checker = auth(Clock(), failed_auth_burst=0)
    for _ in range(100):
        with pytest.raises(errors.UnauthorizedError):
            checker.check({'X-Auth-Token': 'wrong'}, '10.0.0.1')


def test_the_verdict_cache_is_bounded_and_expires():
    clock = Clock()
    cache = tenant_auth.VerdictCache(2, clock)
    for digest in ('a', 'b', 'c'):
        cache.put(digest, True, 10)
    assert (cache.get('a'), cache.get('b'), cache.get('c')) == (
        None, True, True)
    clock.now += 10
    assert cache.get('b') is None
    cache.put('d', True, 0)
    assert cache.get('d') is None


@pytest.mark.parametrize('token', ['x' * 31, 'y' * 2049, 'a b' * 20,
                                   'é' * 40, 'tok;en' * 10])
def test_malformed_keystone_tokens(token):
    assert not tenant_auth.KEYSTONE_TOKEN.fullmatch(token)


@pytest.mark.parametrize('token', ['0123456789abcdef' * 2,
                                   'gAAAAABm' + 'A-_' * 60 + '==',
                                   'eyJh.eyJz.c2ln' * 4])
def test_keystone_token_formats(token):
    assert tenant_auth.KEYSTONE_TOKEN.fullmatch(token)


def call_gate(gate, path, token=None, method='GET'):
    environ = {'PATH_INFO': path, 'REQUEST_METHOD': method,
               'REMOTE_ADDR': '10.0.0.1'}
    if token:
        environ['HTTP_X_AUTH_TOKEN'] = token
    answered = {}

    def start_response(status, headers):
        answered.update(status=status, headers=dict(headers))
    body = b''.join(gate(environ, start_response))
    return answered, body, environ


def test_the_gate_answers_refused_tokens_itself():
    passed = []

    def application(environ, start_response):
        passed.append(environ['PATH_INFO'])
        start_response('200 OK', [])
        return [b'ok']

    gate = token_gate.TokenGate(application, auth(Clock(),
                                                  failed_auth_burst=1))
    answered, body, _ = call_gate(gate, '/v2/meters', 'wrong')
    assert answered['status'] == '401 Unauthorized'
    assert json.loads(body)['error_message']['faultcode'] == 'Client'
    answered, body, _ = call_gate(gate, '/v2/meters', 'wrong', 'HEAD')
    assert answered['status'] == '429 Too Many Requests' and body == b''
    assert answered['headers']['Retry-After'] == '1'
    _, body, environ = call_gate(gate, '/v2/meters', TOKEN)
    assert body == b'ok' and environ[token_gate.AUTHENTICATED]
    _, body, environ = call_gate(gate, '/healthcheck')
    assert body == b'ok' and token_gate.AUTHENTICATED not in environ
    assert passed == ['/v2/meters', '/healthcheck']
