"""Monitoring channels: validation, representation, the proxy's config
file, port allocation, the lock and ChannelService over SQLite.

``make_conf`` and ``FakeLauncher`` serve the other controller tests
too."""

import hashlib
import logging
import os
import re
import socket
import stat
import subprocess
import sys
import time

import pytest
from keystoneauth1 import loading as ks_loading
from oslo_config import cfg

from calipso_agent import opts as agent_opts
from calipso_agent import project_scope, storage
from calipso_agent.wsgi import errors
from calipso_proxy import opts as proxy_opts
from calipso_proxy.controller import channels
from calipso_proxy.launcher import base as launcher_base
from calipso_proxy.proxy import backend
from tests.helpers import basics


def make_conf(tmp_path, ports=3, **overrides):
    """A parsed ConfigOpts with calipso's and the proxy's options: state
    and SQLite store in ``tmp_path``, a free range of ``ports`` proxy
    ports; ``group__name=value`` overrides."""
    conf = cfg.ConfigOpts()
    agent_opts.register_opts(conf)
    proxy_opts.register_opts(conf)
    conf([], project='calipso', default_config_files=[])
    first = basics.free_port_range(ports)
    settings = {'state_path': str(tmp_path),
                'database__connection':
                    f'sqlite:///{tmp_path}/calipso.sqlite',
                'controller__auth_strategy': 'noauth',
                'controller__proxy_port_min': first,
                'controller__proxy_port_max': first + ports - 1}
    settings.update(overrides)
    for key, value in settings.items():
        group, _, name = key.rpartition('__')
        conf.set_override(name, value, group=group or None)
    return conf


class FakeLauncher(launcher_base.Launcher):
    """Records calls; ``processes`` are the proxies it 'runs'."""

    def __init__(self, conf):
        super().__init__(conf)
        self.calls = []
        self.processes = {}
        self._next_pid = 1000

    def start(self, channel, config_path, port):
        self.calls.append(('start', channel['id'], config_path, port))
        if channel['id'] not in self.processes:
            self._next_pid += 1
            self.processes[channel['id']] = {
                'pid': self._next_pid, 'channel_id': channel['id'],
                'config_path': config_path, 'port': port}
        return self.processes[channel['id']]

    def stop(self, channel_id):
        self.calls.append(('stop', channel_id))
        return self.processes.pop(channel_id, None) is not None

    def running(self):
        return dict(self.processes)

    def actions(self):
        return [call[:2] for call in self.calls]


@pytest.fixture
def service(conf, launcher, store):
    return channels.ChannelService(conf, launcher, lambda: store)


def channel_dict(**overrides):
    channel = {'id': 'c-1', 'name': 'analytics', 'tenant_list': ['p1',
                                                                 'p2'],
               'port': 9100, 'token_hash': 'ab' * 32, 'state': 'starting',
               'proxy_url': '', 'creator': 'u-1',
               'created_at': '2026-01-01T00:00:00+00:00'}
    channel.update(overrides)
    return channel


# --- validation -----------------------------------------------------------


@pytest.mark.parametrize('body, expected', [
    ({'tenant_list': ['p1', 'p2']}, ['p1', 'p2']),
    ({'tenant_list_str': 'p1,p2'}, ['p1', 'p2']),
    ({'tenant_list_str': ' p1 , p2 '}, ['p1', 'p2']),
    ({'tenant_list': ['p1', 'p2', 'p1']}, ['p1', 'p2']),
    ({'tenant_list': ['p1'], 'tenant_list_str': 'p1'}, ['p1']),
    ({}, None),
])
def test_tenant_list(body, expected):
    assert channels.parse_tenant_list(body) == expected


@pytest.mark.parametrize('body', [
    {'tenant_list': []},
    {'tenant_list': 'p1'},
    {'tenant_list': ['p1', '']},
    {'tenant_list': ['p1', 7]},
    {'tenant_list': ['p1,p2']},
    {'tenant_list': ['p 1']},
    {'tenant_list': ['p1\t']},
    {'tenant_list_str': ''},
    {'tenant_list_str': 'p1,,p2'},
    {'tenant_list_str': 'p1 p2'},
    {'tenant_list_str': ['p1']},
    {'tenant_list': ['p1'], 'tenant_list_str': 'p2'},
])
def test_bad_tenant_list(body):
    with pytest.raises(errors.InvalidParameterError) as raised:
        channels.parse_tenant_list(body)
    assert raised.value.code == 400


def test_creation_body():
    assert channels.parse_creation(
        {'name': 'a', 'tenant_list_str': 'p1'}) == ('a', ['p1'])
    assert channels.parse_creation(
        {'humanReadableName': 'a', 'tenant_list': ['p1']}) == ('a', ['p1'])


@pytest.mark.parametrize('body', [
    {'tenant_list': ['p1']},
    {'name': '', 'tenant_list': ['p1']},
    {'name': '  ', 'tenant_list': ['p1']},
    {'name': 3, 'tenant_list': ['p1']},
    {'name': 'x' * 256, 'tenant_list': ['p1']},
    {'name': 'a'},
])
def test_bad_creation_body(body):
    with pytest.raises(errors.ClientError):
        channels.parse_creation(body)


def test_changes():
    assert channels.parse_changes({'name': 'b'}) == {'name': 'b'}
    assert channels.parse_changes({'tenant_list_str': 'p3'}) == {
        'tenant_list': ['p3']}
    with pytest.raises(errors.ClientError):
        channels.parse_changes({'id': 'x'})


# --- representation -------------------------------------------------------


def test_resource_hides_the_url_until_running():
    starting = channels.to_resource(channel_dict(
        proxy_url='http://h:9100/'))
    assert starting['ceilometer_url'] == ''
    running = channels.to_resource(channel_dict(
        state='running', proxy_url='http://h:9100/'))
    assert running['ceilometer_url'] == 'http://h:9100/'
    assert running == {
        'id': 'c-1', 'humanReadableName': 'analytics', 'name': 'analytics',
        'ceilometer_url': 'http://h:9100/', 'tenant_list_str': 'p1,p2',
        'tenant_list': ['p1', 'p2'], 'creator': 'u-1', 'state': 'running',
        'created_at': '2026-01-01T00:00:00+00:00'}
    assert 'token' not in running and 'token_hash' not in running
    assert channels.to_resource(channel_dict(), token='t')['token'] == 't'


def test_urls(tmp_path):
    conf = make_conf(tmp_path)
    assert channels.proxy_url(conf, 9100) == 'http://127.0.0.1:9100/'
    assert channels.healthcheck_url(conf, 9100) == (
        'http://127.0.0.1:9100/healthcheck')
    conf.set_override('proxy_public_host', 'proxy.example.org',
                      'controller')
    conf.set_override('proxy_host', '0.0.0.0', 'controller')
    assert channels.proxy_url(conf, 9101) == (
        'http://proxy.example.org:9101/')
    assert channels.healthcheck_url(conf, 9101) == (
        'http://127.0.0.1:9101/healthcheck')
    conf.clear_override('proxy_public_host', 'controller')
    conf.set_override('proxy_host', '::', 'controller')
    assert channels.proxy_url(conf, 9102) == 'http://[::]:9102/'
    assert channels.healthcheck_url(conf, 9102) == (
        'http://[::1]:9102/healthcheck')


# --- the proxy's config file ----------------------------------------------


def read_as_proxy(path):
    """The proxy's view of its config file: its options parsed by
    oslo.config from that file only."""
    conf = cfg.ConfigOpts()
    proxy_opts.register_opts(conf)
    conf(['--config-file', str(path)], project='calipso',
         default_config_files=[])
    auth_type = conf.service_credentials.auth_type
    if auth_type:
        conf.register_opts(
            ks_loading.get_auth_plugin_conf_options(auth_type),
            group='service_credentials')
    return conf


def test_config_file(tmp_path):
    conf = make_conf(tmp_path, controller__backend_url='http://api:8777')
    credentials = {'auth_type': 'password',
                   'auth_url': 'http://keystone:5000/v3',
                   'username': 'calipso', 'password': 'pa$$ %(w)s; #x',
                   'project_name': 'service', 'user_domain_id': 'default',
                   'project_domain_name': 'Default', 'timeout': 30}
    ks_opts = ks_loading.get_auth_plugin_conf_options('password')
    conf.register_opts(ks_opts, group='service_credentials')
    for name, value in credentials.items():
        conf.set_override(name, value, 'service_credentials')
    channel = channel_dict(port=9123)
    path = channels.write_config(conf, channel)
    assert path == os.path.join(str(tmp_path), 'proxies', 'c-1',
                                'proxy.conf')
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    proxy = read_as_proxy(path)
    assert proxy.proxy.channel_id == 'c-1'
    assert proxy.proxy.authorized_projects == ['p1', 'p2']
    assert proxy.proxy.backend_url == 'http://api:8777'
    assert proxy.proxy.token_hash == 'ab' * 32
    assert (proxy.proxy.host, proxy.proxy.port) == ('127.0.0.1', 9123)
    # The same values as the controller's (oslo.config reads $$ as $).
    assert '$' in conf.service_credentials.password
    for name in credentials:
        assert getattr(proxy.service_credentials, name) == getattr(
            conf.service_credentials, name), name
    text = open(path).read()
    # Only what is set is copied.
    assert 'user_id' not in text and 'insecure' not in text


def test_config_without_credentials(tmp_path):
    conf = make_conf(tmp_path)
    text = channels.render_config(conf, channel_dict())
    assert text.rstrip().endswith('[service_credentials]')
    proxy = read_as_proxy(channels.write_config(conf, channel_dict()))
    assert proxy.service_credentials.auth_type is None


def test_config_is_rewritten_only_when_it_changes(tmp_path):
    conf = make_conf(tmp_path)
    path = channels.write_config(conf, channel_dict())
    before = os.stat(path)
    channels.write_config(conf, channel_dict())
    assert os.stat(path).st_ino == before.st_ino
    channels.write_config(conf, channel_dict(tenant_list=['p3']))
    assert read_as_proxy(path).proxy.authorized_projects == ['p3']
    assert channels.read_config(conf, 'c-1') == channels.render_config(
        conf, channel_dict(tenant_list=['p3']))
    assert channels.read_config(conf, 'nope') is None


# --- ports and lock -------------------------------------------------------


def test_lowest_free_port(tmp_path):
    conf = make_conf(tmp_path, ports=4)
    first = conf.controller.proxy_port_min
    assert channels.allocate_port(conf, set()) == first
    assert channels.allocate_port(conf, {first}) == first + 1
    with socket.socket() as busy:
        busy.bind(('127.0.0.1', first + 1))
        busy.listen()
        assert not channels.port_is_free('127.0.0.1', first + 1)
        assert channels.allocate_port(conf, {first}) == first + 2
    with pytest.raises(channels.NoFreePort) as raised:
        channels.allocate_port(conf, set(range(first, first + 4)))
    assert raised.value.code == 503


def test_lock_excludes_other_processes(tmp_path):
    conf = make_conf(tmp_path)
    lock = channels.ControllerLock(conf)
    holder = subprocess.Popen(
        [sys.executable, '-c', 'import fcntl, os, sys, time\n'
         'fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n'
         'fcntl.lockf(fd, fcntl.LOCK_EX)\n'
         'print("held", flush=True)\n'
         'time.sleep(1)\n', lock.path],
        stdout=subprocess.PIPE)
    try:
        os.makedirs(os.path.dirname(lock.path), exist_ok=True)
        assert holder.stdout.readline() == b'held\n'
        started = time.monotonic()
        with lock():
            waited = time.monotonic() - started
    finally:
        holder.wait(10)
    assert waited > 0.5


# --- the service ----------------------------------------------------------


def test_create(service, store, conf):
    channel, token = service.create('analytics', ['p1', 'p2'], 'u-1')
    assert re.fullmatch('[0-9a-f]{64}', token), token
    stored = store.get_channels()
    assert stored == [channel]
    assert channel['token_hash'] == hashlib.sha256(
        token.encode()).hexdigest()
    assert token not in repr(stored)
    assert channel['port'] == conf.controller.proxy_port_min
    assert (channel['name'], channel['tenant_list'], channel['creator'],
            channel['state'], channel['proxy_url']) == (
        'analytics', ['p1', 'p2'], 'u-1', 'starting', '')
    assert channel['created_at'].endswith('+00:00')
    second, second_token = service.create('other', ['p3'])
    assert second_token != token
    assert second['port'] == conf.controller.proxy_port_min + 1
    assert second['creator'] is None


def test_no_free_port(service, conf):
    for _ in range(3):
        service.create('a', ['p1'])
    with pytest.raises(channels.NoFreePort):
        service.create('a', ['p1'])


def test_update(service, store, launcher, conf):
    channel, _ = service.create('analytics', ['p1'])
    store.update_channel(channel['id'], {'state': 'running',
                                         'proxy_url': 'http://x/'})
    renamed = service.update(channel['id'], {'name': 'b'})
    assert (renamed['name'], renamed['state']) == ('b', 'running')
    assert launcher.calls == []
    same = service.update(channel['id'], {'tenant_list': ['p1']})
    assert same['state'] == 'running' and launcher.calls == []
    changed = service.update(channel['id'], {'tenant_list': ['p1', 'p2']})
    assert (changed['state'], changed['proxy_url']) == ('starting', '')
    assert launcher.actions() == [('stop', channel['id'])]
    assert read_as_proxy(launcher_base.config_path(
        conf, channel['id'])).proxy.authorized_projects == ['p1', 'p2']
    with pytest.raises(errors.NotFoundError):
        service.update('nope', {'name': 'x'})


def test_delete(service, store, launcher, conf):
    channel, _ = service.create('analytics', ['p1'])
    channels.write_config(conf, channel)
    service.delete(channel['id'])
    assert launcher.actions() == [('stop', channel['id'])]
    assert store.get_channels() == []
    assert not os.path.exists(launcher_base.channel_dir(conf,
                                                        channel['id']))
    with pytest.raises(errors.NotFoundError):
        service.delete(channel['id'])


def test_reconciler_operations(service, store, launcher, conf):
    channel, _ = service.create('analytics', ['p1'])
    channel_id = channel['id']
    info = service.start_proxy(channel_id, 'test')
    assert launcher.calls == [('start', channel_id, launcher_base.
                               config_path(conf, channel_id),
                               channel['port'])]
    assert os.path.exists(info['config_path'])
    running = service.mark_running(channel_id)
    assert (running['state'], running['proxy_url']) == (
        'running', f'http://127.0.0.1:{channel["port"]}/')
    service.restart_proxy(channel_id, 'test')
    assert launcher.actions()[1:] == [('stop', channel_id),
                                      ('start', channel_id)]
    assert store.get_channels()[0]['state'] == 'starting'
    # An orphan only when the channel is not stored.
    assert not service.stop_orphan(channel_id)
    launcher.stop(channel_id)
    assert service.mark_running(channel_id) is None
    assert store.get_channels()[0]['state'] == 'starting'
    store.delete_channel(channel_id)
    assert service.start_proxy(channel_id, 'test') is None
    assert service.stop_orphan(channel_id)
    assert not os.path.exists(launcher_base.channel_dir(conf, channel_id))



def test_a_proxy_moves_off_a_port_another_program_took(
        service, store, launcher, conf, caplog):
    channel, _ = service.create('analytics', ['p1'])
    taken = channel['port']
    with socket.socket() as other, caplog.at_level(
            logging.WARNING, 'calipso_proxy.controller.channels'):
        other.bind(('127.0.0.1', taken))
        other.listen()
        info = service.start_proxy(channel['id'], 'test')
    moved = store.get_channels([channel['id']])[0]
    assert moved['port'] != taken
    assert info['port'] == moved['port']
    assert launcher.calls[-1][3] == moved['port']
    assert (moved['state'], moved['proxy_url']) == ('starting', '')
    assert f'port {taken} is taken by another program' in caplog.text
    assert f'moves to port {moved["port"]}' in caplog.text
    running = service.mark_running(channel['id'])
    assert running['proxy_url'] == f'http://127.0.0.1:{moved["port"]}/'


def test_a_proxy_stays_on_its_taken_port_when_no_other_is_free(
        tmp_path, caplog):
    conf = make_conf(tmp_path, ports=1)
    store = storage.get_connection(conf)
    launcher = FakeLauncher(conf)
    service = channels.ChannelService(conf, launcher, lambda: store)
    channel, _ = service.create('analytics', ['p1'])
    with socket.socket() as other, caplog.at_level(logging.ERROR):
        other.bind(('127.0.0.1', channel['port']))
        other.listen()
        service.start_proxy(channel['id'], 'test')
    assert store.get_channels()[0]['port'] == channel['port']
    assert launcher.calls[-1][3] == channel['port']
    assert 'no other is free' in caplog.text
    store.close()

def test_config_carries_the_scope_signature_not_the_key(tmp_path):
    key = 'scope-signing-key-' + 'x' * 20
    conf = make_conf(tmp_path, api__scope_signing_key=key)
    proxy = read_as_proxy(channels.write_config(
        conf, channel_dict(tenant_list=['p2', 'p1'])))
    assert project_scope.verify(key, ['p1', 'p2'],
                                proxy.proxy.scope_signature)
    assert key not in channels.render_config(conf, channel_dict())
    unsigned = make_conf(tmp_path / 'unsigned')
    assert 'scope_signature' not in channels.render_config(
        unsigned, channel_dict())


def test_backend_sends_the_scope_and_its_signature(tmp_path):
    conf = make_conf(tmp_path)
    conf.set_override('authorized_projects', ['p2', 'p1'], 'proxy')
    conf.set_override('scope_signature', 'abc', 'proxy')
    sent = backend.BackendClient(conf, session=None).scope_headers
    assert sent == {project_scope.HEADER: 'p1,p2',
                    project_scope.SIGNATURE_HEADER: 'abc'}
    conf.clear_override('scope_signature', 'proxy')
    assert backend.BackendClient(conf).scope_headers == {
        project_scope.HEADER: 'p1,p2'}
