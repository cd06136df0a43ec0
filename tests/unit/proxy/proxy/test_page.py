"""The topology page through a channel's proxy: its files are answered
before the token gate (they hold no data), everything else still needs
the channel token (etc/calipso/proxy-paste.ini)."""

import webob

from calipso_proxy.proxy import app as proxy_app
from tests.unit.proxy.proxy.test_isolation import proxy_conf


def ask(pipeline, path, token=None):
    request = webob.Request.blank(path)
    if token:
        request.headers['X-Auth-Token'] = token
    return request.get_response(pipeline)


def test_page_without_token_data_with_it_only():
    pipeline = proxy_app.load_app(proxy_conf(['project-a']))
    page = ask(pipeline, '/ui/')
    assert page.status_int == 200 and b'app.js' in page.body
    assert "connect-src 'self'" in page.headers['Content-Security-Policy']
    assert ask(pipeline, '/ui/graph.js').status_int == 200
    assert ask(pipeline, '/ui/../etc/passwd').status_int == 404
    refused = ask(pipeline, '/v2/inventory')
    assert refused.status_int == 401
    assert refused.json['error_message']['faultcode'] == 'Client'
    assert ask(pipeline, '/v2/inventory', token='wrong').status_int == 401
