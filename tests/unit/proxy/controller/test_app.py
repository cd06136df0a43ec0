"""The controller API (webob, SQLite store, a fake launcher), its paste
pipelines, and the reconciler (fake launcher, healthchecks and clock)."""

import http.server
import json
import os
import threading

import pytest
import webob
from oslo_config import cfg

from calipso_agent import opts as agent_opts
from calipso_agent import storage
from calipso_agent.storage import base as storage_base
from calipso_proxy import opts as proxy_opts
from calipso_proxy.cmd import controller as controller_cmd
from calipso_proxy.controller import app as controller_app
from calipso_proxy.controller import channels
from calipso_proxy.controller import reconciler as reconciler_mod
from calipso_proxy.launcher import base as launcher_base
from calipso_proxy.launcher import process
from calipso_proxy.proxy import app as proxy_app
from calipso_proxy.proxy import healthcheck
from tests.helpers import daemons
from tests.unit.proxy.controller.test_channels import make_conf

COLLECTION = '/api/tenant/monitoring/monitoringchannel'
ADMIN = {'X-Roles': 'admin', 'X-User-Id': 'admin-user'}


@pytest.fixture
def app(conf, launcher, store):
    return controller_app.ControllerApp(conf, channels.ChannelService(
        conf, launcher, lambda: store))


def call(app, method, path, body=None, headers=ADMIN, raw=None,
         content_type='application/json'):
    request = webob.Request.blank(path, method=method,
                                  headers=dict(headers or {}))
    if body is not None or raw is not None:
        request.body = raw if raw is not None else json.dumps(
            body).encode()
        request.content_type = content_type
    return request.get_response(app)


def assert_error(response, status):
    assert response.status_code == status, response.text
    assert response.content_type == 'application/json'
    fault = response.json['error_message']
    assert fault['faultstring']
    assert fault['faultcode'] == ('Client' if status < 500 else 'Server')
    return fault['faultstring']


def create(app, name='analytics', tenants=('p1', 'p2')):
    response = call(app, 'POST', COLLECTION + '/',
                    {'name': name, 'tenant_list': list(tenants)})
    assert response.status_code == 201, response.text
    return response.json


# --- the API --------------------------------------------------------------


def test_create(app, store, conf):
    response = call(app, 'POST', COLLECTION + '/',
                    {'name': 'analytics', 'tenant_list_str': 'p1,p2'})
    assert response.status_code == 201, response.text
    body = response.json
    assert body['humanReadableName'] == 'analytics'
    assert body['tenant_list_str'] == 'p1,p2'
    assert body['tenant_list'] == ['p1', 'p2']
    assert body['creator'] == 'admin-user'
    assert (body['state'], body['ceilometer_url']) == ('starting', '')
    assert body['token']
    assert 'token_hash' not in body
    assert response.headers['Location'] == (
        f'http://localhost{COLLECTION}/{body["id"]}/')
    [stored] = store.get_channels()
    assert stored['port'] == conf.controller.proxy_port_min


def test_token_is_given_once(app):
    created = create(app)
    for path in (COLLECTION, f'{COLLECTION}/{created["id"]}/'):
        response = call(app, 'GET', path)
        assert response.status_code == 200
        assert created['token'] not in response.text
        assert 'token' not in response.text


def test_list_and_get(app):
    assert call(app, 'GET', COLLECTION + '/').json == []
    first = create(app, 'a')
    second = create(app, 'b', ['p3'])
    listed = call(app, 'GET', COLLECTION).json
    assert sorted(c['id'] for c in listed) == sorted([first['id'],
                                                      second['id']])
    for path in (f'{COLLECTION}/{second["id"]}/',
                 f'{COLLECTION}/{second["id"]}'):
        got = call(app, 'GET', path).json
        assert {k: v for k, v in second.items() if k != 'token'} == got
    assert call(app, 'HEAD', COLLECTION).status_code == 200


def test_form_body(app):
    response = call(app, 'POST', COLLECTION, raw=b'name=a&tenant_list_str='
                    b'p1%2Cp2', content_type='application/'
                    'x-www-form-urlencoded')
    assert response.status_code == 201, response.text
    assert response.json['tenant_list'] == ['p1', 'p2']


def test_json_body_sent_as_a_form(app):
    """curl -d '{...}' without -H 'Content-Type: application/json'."""
    response = call(app, 'POST', COLLECTION,
                    raw=b'{"name": "a", "tenant_list": ["p1"]}',
                    content_type='application/x-www-form-urlencoded')
    assert response.status_code == 201, response.text
    assert (response.json['name'], response.json['tenant_list']) == (
        'a', ['p1'])


@pytest.mark.parametrize('raw', [
    b'', b'{not json', b'[1]', b'\xff',
    b'{"name": "a"}', b'{"tenant_list": ["p1"]}',
    b'{"name": "a", "tenant_list": []}',
    b'{"name": "a", "tenant_list": ["p 1"]}',
    b'{"name": "", "tenant_list": ["p1"]}',
    b'{"name": "a", "tenant_list_str": "p1,,p2"}',
])
def test_bad_creation(app, raw, store):
    assert_error(call(app, 'POST', COLLECTION, raw=raw), 400)
    assert store.get_channels() == []


def test_unknown(app):
    for method in ('GET', 'PUT', 'PATCH', 'DELETE'):
        response = call(app, method, f'{COLLECTION}/nope/',
                        body={'name': 'x'})
        assert 'nope' in assert_error(response, 404)
    assert_error(call(app, 'GET', '/api/tenant/monitoring/other'), 404)
    assert_error(call(app, 'GET', f'{COLLECTION}/a/b'), 404)


def test_methods_not_allowed(app):
    created = create(app)
    response = call(app, 'DELETE', COLLECTION)
    assert_error(response, 405)
    assert response.headers['Allow'] == 'GET, HEAD, POST'
    response = call(app, 'POST', f'{COLLECTION}/{created["id"]}/',
                    body={'name': 'x'})
    assert_error(response, 405)
    assert 'DELETE' in response.headers['Allow']


def test_update_tenant_list(app, launcher, store, conf):
    created = create(app)
    store.update_channel(created['id'], {
        'state': 'running', 'proxy_url': 'http://127.0.0.1:1/'})
    response = call(app, 'PUT', f'{COLLECTION}/{created["id"]}/',
                    {'tenant_list_str': 'p3'})
    assert response.status_code == 200, response.text
    body = response.json
    assert (body['tenant_list'], body['state'], body['ceilometer_url']) == (
        ['p3'], 'starting', '')
    assert launcher.actions() == [('stop', created['id'])]
    assert 'authorized_projects = p3\n' in channels.read_config(
        conf, created['id'])


def test_patch_name(app, launcher):
    created = create(app)
    response = call(app, 'PATCH', f'{COLLECTION}/{created["id"]}',
                    {'name': 'renamed'})
    assert response.status_code == 200, response.text
    assert response.json['humanReadableName'] == 'renamed'
    assert response.json['tenant_list'] == ['p1', 'p2']
    assert launcher.calls == []
    assert_error(call(app, 'PATCH', f'{COLLECTION}/{created["id"]}',
                      {'tenant_list': ['a,b']}), 400)
    assert_error(call(app, 'PUT', f'{COLLECTION}/{created["id"]}', {}),
                 400)


def test_delete(app, launcher, store):
    created = create(app)
    launcher.processes[created['id']] = {'pid': 1}
    response = call(app, 'DELETE', f'{COLLECTION}/{created["id"]}/')
    assert response.status_code == 204
    assert response.body == b''
    assert launcher.actions() == [('stop', created['id'])]
    assert store.get_channels() == []
    assert_error(call(app, 'GET', f'{COLLECTION}/{created["id"]}/'), 404)


@pytest.mark.parametrize('headers, status', [
    ({'X-Roles': 'member', 'X-User-Id': 'u'}, 403),
    ({'X-Roles': 'member,reader'}, 403),
    ({'X-Roles': 'admin', 'X-Identity-Status': 'Invalid'}, 401),
])
def test_admin_only(app, headers, status, store):
    assert_error(call(app, 'GET', COLLECTION, headers=headers), status)
    assert_error(call(app, 'POST', COLLECTION, {'name': 'a',
                                                'tenant_list': ['p1']},
                      headers=headers), status)
    assert store.get_channels() == []


def test_keystone_strategy(conf, launcher, store):
    conf.set_override('auth_strategy', 'keystone', 'controller')
    conf.set_override('admin_role', 'Cloud_Admin', 'controller')
    app = controller_app.ControllerApp(conf, channels.ChannelService(
        conf, launcher, lambda: store))
    # No keystonemiddleware in front: nobody is authenticated.
    assert_error(call(app, 'GET', COLLECTION), 401)
    confirmed = {'X-Identity-Status': 'Confirmed', 'X-User-Id': 'u'}
    assert_error(call(app, 'GET', COLLECTION, headers=dict(
        confirmed, **{'X-Roles': 'admin'})), 403)
    response = call(app, 'GET', COLLECTION, headers=dict(
        confirmed, **{'X-Roles': 'member,cloud_admin'}))
    assert response.status_code == 200, response.text


def test_store_down(conf, launcher):
    def broken():
        raise storage_base.StorageError('down')

    app = controller_app.ControllerApp(conf, channels.ChannelService(
        conf, launcher, broken))
    assert_error(call(app, 'GET', COLLECTION), 503)


# --- the paste pipelines --------------------------------------------------


def test_noauth_pipeline(conf):
    app = controller_app.load_app(conf)
    response = call(app, 'GET', '/healthcheck', headers={})
    assert (response.status_code, response.text) == (200, 'OK')
    assert 'X-OpenStack-Request-ID' in response.headers
    created = call(app, 'POST', COLLECTION, {'name': 'a',
                                             'tenant_list': ['p1']},
                   headers={})
    assert created.status_code == 201, created.text
    # The default launcher is the process launcher.
    inner = app
    while not isinstance(inner, controller_app.ControllerApp):
        inner = inner.application
    assert isinstance(inner.service.launcher, process.ProcessLauncher)
    response = call(app, 'DELETE', f'{COLLECTION}/{created.json["id"]}',
                    headers={})
    assert response.status_code == 204
    assert_error(call(app, 'GET', COLLECTION, headers={
        'X-Roles': 'member'}), 403)


def test_keystone_pipeline_refuses_without_token(tmp_path):
    path = tmp_path / 'controller.conf'
    path.write_text(
        f'[database]\nconnection = sqlite:///{tmp_path}/calipso.sqlite\n'
        f'[controller]\nproxy_state_dir = {tmp_path}/proxies\n'
        '[keystone_authtoken]\n'
        'www_authenticate_uri = http://127.0.0.1:5000/identity\n'
        + daemons.KEYSTONE_SERVICE_USER)
    conf = cfg.ConfigOpts()
    agent_opts.register_opts(conf)
    proxy_opts.register_opts(conf)
    conf(['--config-file', str(path)], project='calipso')
    assert conf.controller.auth_strategy == 'keystone'
    app = controller_app.load_app(conf)
    assert call(app, 'GET', '/healthcheck', headers={}).status_code == 200
    assert_error(call(app, 'GET', COLLECTION, headers=ADMIN), 401)


def test_keystone_pipeline_without_auth_plugin_does_not_load(tmp_path):
    """Without a service user every request would be a 500: the
    controller refuses to start instead, naming what is missing."""
    path = tmp_path / 'controller.conf'
    path.write_text(
        f'[database]\nconnection = sqlite:///{tmp_path}/calipso.sqlite\n'
        f'[controller]\nproxy_state_dir = {tmp_path}/proxies\n')
    conf = cfg.ConfigOpts()
    agent_opts.register_opts(conf)
    proxy_opts.register_opts(conf)
    conf(['--config-file', str(path)], project='calipso')
    with pytest.raises(ValueError, match=r'\[keystone_authtoken\] has no '
                                         r'auth_type'):
        controller_app.load_app(conf)


def test_paste_config_not_found(tmp_path):
    conf = make_conf(tmp_path, controller__paste_config='missing.ini')
    with pytest.raises(ValueError, match='missing.ini'):
        controller_app.load_app(conf)


# --- the reconciler -------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def reconciler(conf, launcher):
    clock = Clock()
    reconciler = reconciler_mod.Reconciler(
        conf, launcher, connect=lambda: storage.get_connection(conf),
        clock=clock)
    reconciler.clock_value = clock
    reconciler.answering = set()
    reconciler.healthy = lambda channel: (channel['port'] in
                                          reconciler.answering)
    return reconciler


def stored(store, channel_id):
    return store.get_channels([channel_id])[0]


def test_reconciler_starts_and_marks_running(app, reconciler, launcher,
                                             store, conf):
    created = create(app)
    channel_id = created['id']
    port = stored(store, channel_id)['port']
    assert reconciler.run_once() is True
    assert launcher.calls == [('start', channel_id, launcher_base.
                               config_path(conf, channel_id), port)]
    assert os.path.exists(launcher_base.config_path(conf, channel_id))
    assert reconciler.run_once() is True
    assert stored(store, channel_id)['state'] == 'starting'
    reconciler.answering.add(port)
    assert reconciler.run_once() is False
    got = call(app, 'GET', f'{COLLECTION}/{channel_id}/').json
    assert (got['state'], got['ceilometer_url']) == (
        'running', f'http://127.0.0.1:{port}/')
    assert len(launcher.calls) == 1


def test_reconciler_backs_off_a_proxy_that_never_answers(
        app, reconciler, launcher, store, conf, caplog):
    """A proxy dying at once is started again after 1, 2, 4... s (capped),
    not on every pass; once it answers, a later death restarts it at
    once."""
    conf.set_override('proxy_restart_backoff_initial', 1.0, 'controller')
    conf.set_override('proxy_restart_backoff_max', 4.0, 'controller')
    channel_id = create(app)['id']
    port = stored(store, channel_id)['port']
    clock = reconciler.clock_value
    starts = []
    for _ in range(40):
        before = len(launcher.calls)
        reconciler.run_once()
        if len(launcher.calls) > before:
            starts.append(clock.now - 1000.0)
        launcher.processes.pop(channel_id, None)
        clock.now += 0.5
    assert launcher.actions() == [('start', channel_id)] * len(starts)
    assert starts == [0.0, 1.0, 3.0, 7.0, 11.0, 15.0, 19.0]
    assert 'has not answered since its last 4 start(s)' in caplog.text
    clock.now += 4.0
    reconciler.run_once()
    assert channel_id in launcher.processes
    reconciler.answering.add(port)
    reconciler.run_once()
    assert stored(store, channel_id)['state'] == 'running'
    launcher.processes.pop(channel_id)
    before = len(launcher.calls)
    reconciler.run_once()
    assert launcher.actions()[before:] == [('start', channel_id)]


def test_reconciler_restarts_a_dead_proxy(app, reconciler, launcher,
                                          store):
    channel_id = create(app)['id']
    port = stored(store, channel_id)['port']
    reconciler.answering.add(port)
    reconciler.run_once()
    reconciler.run_once()
    assert stored(store, channel_id)['state'] == 'running'
    del launcher.processes[channel_id]
    reconciler.run_once()
    assert launcher.actions()[-1] == ('start', channel_id)
    assert stored(store, channel_id)['state'] == 'starting'
    assert call(app, 'GET', f'{COLLECTION}/{channel_id}/').json[
        'ceilometer_url'] == ''


def test_reconciler_restarts_a_silent_proxy(app, reconciler, launcher,
                                            conf):
    channel_id = create(app)['id']
    reconciler.run_once()
    timeout = conf.controller.proxy_start_timeout
    reconciler.clock_value.now += timeout - 1
    reconciler.run_once()
    assert launcher.actions() == [('start', channel_id)]
    reconciler.clock_value.now += 2
    reconciler.run_once()
    assert launcher.actions() == [('start', channel_id),
                                  ('stop', channel_id),
                                  ('start', channel_id)]


def test_reconciler_restarts_a_proxy_that_stops_answering(
        app, reconciler, launcher, store, conf):
    channel_id = create(app)['id']
    port = stored(store, channel_id)['port']
    reconciler.answering.add(port)
    reconciler.run_once()
    reconciler.run_once()
    reconciler.answering.clear()
    reconciler.clock_value.now += conf.controller.proxy_start_timeout / 2
    reconciler.run_once()
    assert len(launcher.calls) == 1
    reconciler.clock_value.now += conf.controller.proxy_start_timeout
    reconciler.run_once()
    assert launcher.actions()[1:] == [('stop', channel_id),
                                      ('start', channel_id)]


def test_reconciler_restarts_on_new_configuration(app, reconciler,
                                                  launcher, conf, store):
    channel_id = create(app)['id']
    reconciler.run_once()
    path = launcher_base.config_path(conf, channel_id)
    with open(path, 'a') as handle:
        handle.write('# edited\n')
    reconciler.run_once()
    assert launcher.actions()[1:] == [('stop', channel_id),
                                      ('start', channel_id)]
    assert channels.read_config(conf, channel_id) == (
        channels.render_config(conf, stored(store, channel_id)))


def test_reconciler_after_update(app, reconciler, launcher, conf):
    channel_id = create(app)['id']
    reconciler.run_once()
    call(app, 'PATCH', f'{COLLECTION}/{channel_id}/',
         {'tenant_list': ['p9']})
    assert channel_id not in launcher.processes
    reconciler.run_once()
    assert launcher.actions() == [('start', channel_id),
                                  ('stop', channel_id),
                                  ('start', channel_id)]
    assert 'authorized_projects = p9\n' in channels.read_config(
        conf, channel_id)


def test_reconciler_adopts_and_stops_orphans(app, reconciler, launcher,
                                             store, conf):
    channel_id = create(app)['id']
    port = stored(store, channel_id)['port']
    channels.write_config(conf, stored(store, channel_id))
    # Running before this reconciler: one of a stored channel, one not.
    launcher.processes[channel_id] = {'pid': 42, 'port': port}
    launcher.processes['gone'] = {'pid': 43}
    os.makedirs(launcher_base.channel_dir(conf, 'gone'))
    reconciler.answering.add(port)
    reconciler.run_once()
    assert launcher.actions() == [('stop', 'gone')]
    assert not os.path.exists(launcher_base.channel_dir(conf, 'gone'))
    assert launcher.processes[channel_id]['pid'] == 42
    assert stored(store, channel_id)['state'] == 'running'


def test_reconciler_survives_a_failing_channel(app, reconciler, launcher,
                                               store):
    first = create(app, 'a')['id']
    second = create(app, 'b')['id']
    original = launcher.start

    def start(channel, config_path, port):
        if channel['id'] == first:
            raise OSError('cannot start')
        return original(channel, config_path, port)

    launcher.start = start
    assert reconciler.run_once() is True
    assert second in launcher.processes


class HealthHandler(http.server.BaseHTTPRequestHandler):
    """The proxy of channel ``no-liveness``, without a liveness socket."""

    def do_GET(self):  # noqa: N802
        status = 200 if self.path == '/healthcheck' else 404
        self.send_response(status)
        self.send_header(healthcheck.IDENTITY_HEADER,
                         channels.liveness_socket('no-liveness'))
        self.send_header('Content-Length', '2')
        self.end_headers()
        self.wfile.write(b'OK')

    def log_message(self, *args):
        pass


def test_real_healthcheck_and_thread(conf, launcher, store):
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0),
                                             HealthHandler)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    conf.set_override('reconcile_interval', 0.1, 'controller')
    reconciler = reconciler_mod.Reconciler(conf, launcher)
    try:
        assert reconciler.healthy({'id': 'no-liveness', 'port': port})
        # Another channel's proxy on the port is not this one's.
        assert not reconciler.healthy({'id': 'another', 'port': port})
    finally:
        server.shutdown()
        server.server_close()
    assert not reconciler.healthy({'id': 'no-liveness', 'port': port})
    service = channels.ChannelService(conf, launcher, lambda: store)
    channel, _ = service.create('a', ['p1'])
    reconciler.start()
    try:
        deadline = 50
        while channel['id'] not in launcher.processes and deadline:
            threading.Event().wait(0.1)
            deadline -= 1
        assert channel['id'] in launcher.processes
    finally:
        reconciler.stop(5)
    assert not reconciler._thread.is_alive()


# --- the command ---------------------------------------------------------


@pytest.mark.parametrize('overrides, reason', [
    ({'controller__proxy_port_min': 9200, 'controller__proxy_port_max': 9100},
     'proxy_port_min'),
    ({'controller__launcher': 'nope'}, "launcher 'nope'"),
    ({'controller__paste_config': 'missing.ini'}, 'paste'),
    ({'service_credentials__auth_type': 'no-such-plugin'},
     'service_credentials'),
])
def test_bad_configuration(tmp_path, overrides, reason):
    conf = make_conf(tmp_path, **overrides)
    with pytest.raises(SystemExit) as raised:
        controller_cmd.check_config(conf)
    assert reason in str(raised.value)


def test_configuration(tmp_path):
    conf = make_conf(tmp_path, service_credentials__auth_type='password')
    assert isinstance(controller_cmd.check_config(conf),
                      process.ProcessLauncher)
    # The plugin's options are registered before gunicorn forks.
    assert conf.service_credentials.username is None
    assert controller_cmd.server_options()['proc_name'] == (
        'calipso-proxy-controller')


@pytest.mark.parametrize('factory, what', [
    (controller_app.app_factory, 'the controller API'),
    (proxy_app.app_factory, 'the proxy')])
def test_factories_refuse_a_paste_deploy_started_elsewhere(factory, what):
    with pytest.raises(ValueError, match=f'^{what} is composed by load_app'):
        factory({})
