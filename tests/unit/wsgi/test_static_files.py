"""The topology page's files (wsgi/static_files.py): served before
authentication by the API's pipelines, nothing outside calipso_agent/ui/."""

import pytest
import webob

from calipso_agent.wsgi import static_files


def ask(application, path, method='GET', headers=None):
    request = webob.Request.blank(path, method=method, headers=headers or {})
    return request.get_response(application)


@pytest.fixture
def page():
    def downstream(environ, start_response):
        start_response('418 I\'m a teapot', [('Content-Type', 'text/plain')])
        return [b'downstream']
    return static_files.StaticFiles(downstream)


def test_index_is_the_page_with_a_strict_policy(page):
    response = ask(page, '/ui/')
    assert response.status_int == 200
    assert response.content_type == 'text/html'
    assert b'<title>' in response.body
    policy = response.headers['Content-Security-Policy']
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert response.headers['Referrer-Policy'] == 'no-referrer'


def test_bare_prefix_is_redirected_so_relative_paths_work(page):
    response = ask(page, '/ui')
    assert response.status_int == 301
    assert response.location.endswith('/ui/')


def test_scripts_have_their_type(page):
    response = ask(page, '/ui/app.js')
    assert response.status_int == 200
    assert response.content_type == 'text/javascript'


def test_same_etag_is_not_modified(page):
    etag = ask(page, '/ui/app.js').etag
    response = ask(page, '/ui/app.js', headers={'If-None-Match': f'"{etag}"'})
    assert response.status_int == 304 and response.body == b''


@pytest.mark.parametrize('path', [
    '/ui/../api/app.py', '/ui/%2e%2e/wsgi/router.py', '/ui/.hidden.js',
    '/ui/nothing.js', '/ui/package.json', '/ui/vendor/../../opts.py',
    '/ui/a\\b.js'])
def test_nothing_outside_the_page(page, path):
    response = ask(page, path)
    assert response.status_int == 404
    assert response.json['error_message']['faultcode'] == 'Client'


def test_other_paths_go_on(page):
    assert ask(page, '/v2/meters').status_int == 418
    assert ask(page, '/uix').status_int == 418


def test_only_reads(page):
    response = ask(page, '/ui/', method='POST')
    assert response.status_int == 405
    assert response.headers['Allow'] == 'GET, HEAD'

