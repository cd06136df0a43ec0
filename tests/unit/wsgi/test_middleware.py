"""The generic filters: FaultWrapper's JSON errors, NoAuth (their use in
the API's pipelines is tested in tests/unit/api/test_middleware.py)."""

import pytest
import webob

from calipso_agent.wsgi import auth, middleware
from tests.unit.api.support import fault


def inner_app(status, content_type, body):
    def application(environ, start_response):
        start_response(status, [('Content-Type', content_type),
                                ('WWW-Authenticate', 'Basic'),
                                ('X-Other', 'dropped')])
        return [body]
    return application


@pytest.mark.parametrize('status, content_type, body, message', [
    ('404 Not Found', 'text/html', b'<h1>gone</h1>', 'Not Found'),
    ('401 Unauthorized', 'application/json',
     b'{"error": {"message": "Token expired", "code": 401}}',
     'Token expired'),
    ('503 Service Unavailable', 'application/json', b'[1]',
     'Service Unavailable'),
    ('502 Bad Gateway', 'application/json', b'{not json',
     'Bad Gateway'),
])
def test_fault_wrapper_rewrites_foreign_errors(status, content_type, body,
                                               message):
    wrapped = middleware.FaultWrapper(inner_app(status, content_type, body))
    response = webob.Request.blank('/').get_response(wrapped)
    code = int(status.split()[0])
    assert fault(response) == (code, 'Client' if code < 500 else 'Server',
                               message)
    assert response.headers['WWW-Authenticate'] == 'Basic'
    assert 'X-Other' not in response.headers


def test_fault_wrapper_keeps_api_errors_and_successes():
    body = b'{"error_message": {"faultstring": "x", "faultcode": "Client"}}'
    for status, content in (('400 Bad Request', body),
                            ('200 OK', b'plain')):
        wrapped = middleware.FaultWrapper(inner_app(status, 'text/plain'
                                                    if content == b'plain'
                                                    else 'application/json',
                                                    content))
        response = webob.Request.blank('/').get_response(wrapped)
        assert response.body == content


def test_fault_wrapper_turns_exceptions_into_500(caplog):
    def broken(environ, start_response):
        raise RuntimeError('boom')

    response = webob.Request.blank('/').get_response(
        middleware.FaultWrapper(broken))
    assert fault(response) == (500, 'Server', 'Internal server error')
    assert 'boom' in caplog.text


def test_errors_on_paths_not_utf8_are_logged(caplog):
    def broken(environ, start_response):
        raise RuntimeError('boom')

    wrapped = middleware.FaultWrapper(broken)
    response = webob.Request.blank('/', environ={
        'PATH_INFO': '/caf\xc3\xa9', 'QUERY_STRING': 'q=%ff'}).get_response(
        wrapped)
    assert fault(response)[0] == 500
    assert "GET '/caf\\xc3\\xa9?q=%ff'" in caplog.text


def test_noauth_keeps_given_roles():
    seen = {}

    def application(environ, start_response):
        seen['roles'] = environ.get('HTTP_X_ROLES')
        start_response('200 OK', [])
        return [b'']

    filtered = auth.NoAuth(application)
    webob.Request.blank('/').get_response(filtered)
    assert seen['roles'] == 'admin'
    webob.Request.blank('/', headers={'X-Roles': 'member'}).get_response(
        filtered)
    assert seen['roles'] == 'member'


def test_noauth_request_declaring_a_scope_is_the_readers():
    """A channel's proxy without service credentials reads a development
    API as the proxies' reader, never as an admin."""
    seen = []

    def application(environ, start_response):
        seen.append(environ.get('HTTP_X_ROLES'))
        start_response('200 OK', [])
        return [b'']

    filtered = auth.NoAuth(application, reader_role='calipso_reader')
    scope = {'X-Calipso-Project-Scope': 'p1,p2'}
    for headers in (scope, {}, {**scope, 'X-Roles': 'member'}):
        webob.Request.blank('/', headers=headers).get_response(filtered)
    assert seen == ['calipso_reader', 'admin', 'member']
    # Without a reader role (the controller's pipeline): an admin's.
    unconfigured = auth.NoAuth(application)
    webob.Request.blank('/', headers=scope).get_response(unconfigured)
    assert seen[-1] == 'admin'
