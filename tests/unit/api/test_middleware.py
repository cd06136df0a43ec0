"""The paste pipelines of etc/calipso/api-paste.ini and their filters."""

import os

import pytest
import webob
from oslo_config import cfg

from calipso_agent import opts
from calipso_agent.api import app
from tests.helpers import basics, daemons
from tests.unit.api import support
from tests.unit.api.support import fault


@pytest.fixture
def noauth(tmp_path, samples):
    conf = support.make_conf(tmp_path, api__auth_strategy='noauth')
    pipeline = app.load_app(conf)
    app.setup_app(conf).storage().record_samples(samples)
    return support.Client(pipeline, headers={})


@pytest.fixture
def keystone(tmp_path):
    """The keystone pipeline, configured from a file as in production."""
    path = tmp_path / 'calipso.conf'
    path.write_text(
        f'[database]\nconnection = sqlite:///{tmp_path}/calipso.sqlite\n'
        '[keystone_authtoken]\n'
        'www_authenticate_uri = http://127.0.0.1:5000/identity\n'
        + daemons.KEYSTONE_SERVICE_USER)
    conf = cfg.ConfigOpts()
    opts.register_opts(conf)
    conf(['--config-file', str(path)], project='calipso')
    return support.Client(app.load_app(conf), headers={})


def test_keystone_pipeline_without_auth_plugin_does_not_load(tmp_path):
    """Every request would be a 500 (MissingAuthPlugin): loading fails,
    so calipso-api refuses to start and says what to configure."""
    conf = support.make_conf(tmp_path)
    assert conf.api.auth_strategy == 'keystone'
    with pytest.raises(ValueError, match=r'\[keystone_authtoken\] has no '
                                         r'auth_type'):
        app.load_app(conf)


def test_noauth_request_without_roles_is_an_admins(noauth):
    projects = {s['project_id'] for s in noauth.get('/v2/samples').json}
    assert projects == {'project-a', 'project-b'}


def test_noauth_takes_identity_headers_as_given(noauth):
    response = noauth.get('/v2/samples',
                          headers=support.member('project-b'))
    assert {s['project_id'] for s in response.json} == {'project-b'}


def test_request_id_header(noauth):
    response = noauth.get('/v2/meters')
    assert response.headers['x-openstack-request-id'].startswith('req-')


@pytest.mark.parametrize('pipeline', ['noauth', 'keystone'])
def test_healthcheck_needs_no_token(request, pipeline):
    client = request.getfixturevalue(pipeline)
    for method in ('GET', 'HEAD'):
        response = webob.Request.blank(
            '/healthcheck', method=method).get_response(client.app)
        assert response.status_code == 200
        assert response.content_type == 'text/plain'
    response = webob.Request.blank('/healthcheck').get_response(client.app)
    assert response.text == 'OK'
    support.validate(response.text, support.DOCUMENT['paths'][
        '/healthcheck']['get']['responses']['200']['content'][
        'text/plain']['schema'])
    response = webob.Request.blank('/healthcheck',
                                   method='POST').get_response(client.app)
    assert fault(response)[0] == 405


def test_healthcheck_is_503_while_the_store_does_not_answer(tmp_path):
    port = basics.free_port()
    conf = basics.make_conf(
        api__auth_strategy='noauth', state_path=str(tmp_path),
        database__connection=f'postgresql://postgres@127.0.0.1:{port}/x'
                             f'?connect_timeout=2')
    pipeline = app.load_app(conf)
    for method in ('GET', 'HEAD'):
        response = webob.Request.blank(
            '/healthcheck', method=method).get_response(pipeline)
        assert response.status_code == 503
    response = webob.Request.blank('/healthcheck').get_response(pipeline)
    status, code, message = fault(response)
    assert (status, code) == (503, 'Server')
    assert message.startswith('The store does not answer: ')
    assert str(port) in message
    support.validate(response.json, support.DOCUMENT['components'][
        'schemas']['Error'])


@pytest.mark.parametrize('pipeline', ['noauth', 'keystone'])
def test_openapi_document_needs_no_token(request, pipeline):
    client = request.getfixturevalue(pipeline)
    response = client.get('/v2/openapi.json')
    assert response.json == support.DOCUMENT


def test_keystone_without_token_is_401_json(keystone):
    response = keystone.get('/v2/meters')
    status, code, message = fault(response)
    assert (status, code) == (401, 'Client')
    assert 'authentication' in message
    assert response.headers['WWW-Authenticate'].startswith('Keystone uri=')


def test_keystone_pipeline_drops_forged_identity_headers(keystone):
    response = keystone.get('/v2/meters', headers=support.ADMIN)
    assert fault(response)[0] == 401


def test_paste_config_lookup(tmp_path):
    conf = basics.make_conf()
    assert app.paste_config_path(conf) == os.path.join(basics.ETC,
                                                       'api-paste.ini')
    custom = tmp_path / 'custom-paste.ini'
    custom.write_text('[app:main]\n')
    conf.set_override('paste_config', str(custom), group='api')
    assert app.paste_config_path(conf) == str(custom)
    conf.set_override('paste_config', 'missing-paste.ini', group='api')
    with pytest.raises(ValueError, match='missing-paste.ini'):
        app.paste_config_path(conf)


def test_paste_config_in_the_configuration_directory(tmp_path):
    (tmp_path / 'calipso.conf').write_text('[api]\n')
    (tmp_path / 'api-paste.ini').write_text('[app:main]\n')
    conf = cfg.ConfigOpts()
    opts.register_opts(conf)
    conf(['--config-file', str(tmp_path / 'calipso.conf')],
         project='calipso')
    assert app.paste_config_path(conf) == str(tmp_path / 'api-paste.ini')


def test_app_factory_without_load_app_reads_the_default_files(
        monkeypatch):
    monkeypatch.setattr('sys.argv', ['uwsgi'])
    api = app.app_factory({})
    assert api.conf.api.auth_strategy == 'keystone'


@pytest.mark.parametrize('pipeline', ['noauth', 'keystone'])
@pytest.mark.parametrize('path', ['/v2/samples/\xff', '/healthcheck\xfe'])
def test_path_not_utf8_is_400(request, pipeline, path):
    client = request.getfixturevalue(pipeline)
    response = client.get('/', environ={'PATH_INFO': path})
    assert fault(response) == (400, 'Client',
                               'The request path is not UTF-8')


@pytest.mark.parametrize('public_url, expected', [
    ('https://telemetry.example.com:8777/metering/',
     'https://telemetry.example.com:8777/metering'),
    (None, 'http://evil.example:666'),
])
def test_links_start_with_the_public_url(tmp_path, samples, public_url,
                                         expected):
    """A client's Host header chooses the links only when [api]
    public_url is unset."""
    conf = support.make_conf(tmp_path, api__auth_strategy='noauth',
                             api__public_url=public_url)
    app.setup_app(conf).storage().record_samples(samples)
    client = support.Client(app.load_app(conf), headers={})
    host = {'Host': 'evil.example:666'}
    hrefs = [link['href'] for resource in client.get(
        '/v2/resources', headers=host).json for link in resource['links']]
    hrefs += [link['href'] for link in client.get(
        '/v2/resources/vm-0', headers=host).json['links']]
    versions = client.get('/', headers=host).json
    hrefs += [link['href'] for link in
              versions['versions']['values'][0]['links']]
    assert len(hrefs) > 4
    assert all(href.startswith(expected + '/v2/') or
               href == expected + '/v2' for href in hrefs), hrefs


def test_versions_through_the_api_route_use_the_public_url(tmp_path):
    conf = support.make_conf(tmp_path,
                             api__public_url='https://t.example/')
    client = support.Client(app.setup_app(conf), headers={})
    versions = client.get('/', headers={'Host': 'evil.example'}).json
    assert versions['versions']['values'][0]['links'] == [
        {'href': 'https://t.example/v2', 'rel': 'self'}]


@pytest.mark.parametrize('pipeline', ['noauth', 'keystone'])
def test_topology_page_is_served_without_token(pipeline, request):
    client = request.getfixturevalue(pipeline)
    response = webob.Request.blank('/ui/').get_response(client.app)
    assert response.status_int == 200
    assert b'app.js' in response.body
    assert 'Content-Security-Policy' in response.headers
