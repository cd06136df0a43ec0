"""calipso-proxy-controller as a process (noauth pipeline, two API
workers, SQLite) with the real calipso-proxy processes, on loopback.

The proxies' backend is a closed port: a tenant with the channel token
gets 502 (authenticated, nothing to forward to), without it 401.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests
from oslo_config import cfg

from calipso_agent import storage
from calipso_proxy import opts as proxy_opts
from calipso_proxy.controller import channels
from calipso_proxy.launcher import process
from calipso_proxy.proxy import liveness
from tests.helpers import basics

pytestmark = pytest.mark.functional

COLLECTION = '/api/tenant/monitoring/monitoringchannel/'
PORTS = 4


def command():
    """The console script of this environment, or the module when the
    package is not installed as scripts."""
    script = os.path.join(os.path.dirname(sys.executable),
                          'calipso-proxy-controller')
    if os.path.exists(script):
        return [script]
    return [sys.executable, '-m', 'calipso_proxy.cmd.controller']


class Controller:
    """The controller process; its log in ``workdir/controller.log``
    (appended to by every run)."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.port = basics.free_port()
        self.base = f'http://127.0.0.1:{self.port}'
        self.database = f'sqlite:///{workdir}/channels.sqlite'
        self.state_dir = os.path.join(workdir, 'proxies')
        self.first_port = basics.free_port_range(PORTS)
        self.config = os.path.join(workdir, 'controller.conf')
        self.log_path = os.path.join(workdir, 'controller.log')
        with open(self.config, 'w') as handle:
            handle.write(
                f'[DEFAULT]\nstate_path = {workdir}\nuse_stderr = true\n'
                f'[database]\nconnection = {self.database}\n'
                f'[controller]\nhost = 127.0.0.1\nport = {self.port}\n'
                'workers = 2\nthreads = 4\nauth_strategy = noauth\n'
                'proxy_host = 127.0.0.1\n'
                f'proxy_port_min = {self.first_port}\n'
                f'proxy_port_max = {self.first_port + PORTS - 1}\n'
                'reconcile_interval = 0.5\nproxy_start_timeout = 30\n'
                f'backend_url = http://127.0.0.1:{basics.free_port()}\n')
        self.process = None

    def start(self):
        with open(self.log_path, 'ab') as log:
            self.process = subprocess.Popen(
                command() + ['--config-file', self.config],
                cwd=basics.REPO, stdin=subprocess.DEVNULL, stdout=log,
                stderr=log, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            # Not yet listening, or (a loaded machine) slow to answer its
            # first healthcheck, which connects to the store.
            with contextlib.suppress(requests.ConnectionError,
                                     requests.Timeout):
                if requests.get(f'{self.base}/healthcheck',
                                timeout=5).status_code == 200:
                    return self
            assert self.process.poll() is None, self.log()
            assert time.monotonic() < deadline, self.log()
            time.sleep(0.2)

    def stop(self):
        """SIGTERM, as an init system stops it; its exit code."""
        if self.process is None or self.process.poll() is not None:
            return None
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait(10)

    def log(self):
        with open(self.log_path, errors='replace') as handle:
            return handle.read()

    def api(self, method, path='', **kwargs):
        return requests.request(method, f'{self.base}{COLLECTION}{path}',
                                timeout=30, **kwargs)

    def create(self, name, tenants):
        response = self.api('POST', json={'name': name,
                                          'tenant_list': tenants})
        assert response.status_code == 201, response.text
        return response.json()

    def wait_url(self, channel_id, timeout=60, headers=None):
        """The channel's ceilometer_url once set; every answer on the way
        must be the channel (200)."""
        def url():
            got = self.api('GET', f'{channel_id}/', headers=headers)
            assert got.status_code == 200, (got.status_code, got.text,
                                            self.log())
            return got.json()['ceilometer_url']
        found = basics.wait_until(url, timeout, interval=0.2)
        assert found, self.log() + self.proxy_log(channel_id)
        return found

    def pid_info(self, channel_id):
        try:
            with open(os.path.join(self.state_dir, channel_id,
                                   'proxy.pid')) as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return None

    def proxy_log(self, channel_id):
        try:
            with open(os.path.join(self.state_dir, channel_id,
                                   'proxy.log'), errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def cleanup(self):
        """Stop the controller and every proxy it left."""
        self.stop()
        conf = cfg.ConfigOpts()
        proxy_opts.register_opts(conf)
        conf([], default_config_files=[])
        conf.set_override('proxy_state_dir', self.state_dir, 'controller')
        conf.set_override('proxy_stop_timeout', 2, 'controller')
        launcher = process.ProcessLauncher(conf)
        for channel_id in launcher.running():
            launcher.stop(channel_id)


@pytest.fixture
def controller(tmp_path):
    started = Controller(str(tmp_path))
    try:
        yield started.start()
    finally:
        started.cleanup()


def healthcheck(url):
    try:
        return requests.get(f'{url}healthcheck', timeout=2).status_code
    except requests.RequestException:
        return None


def tenant_get(url, token):
    """Status of a tenant's request, None when it is not answered
    (connection refused)."""
    try:
        return requests.get(f'{url}v2/meters', timeout=10,
                            headers={'X-Auth-Token': token}).status_code
    except requests.RequestException:
        return None


def restarted(controller, channel_id, old_pid):
    info = controller.pid_info(channel_id)
    return (info is not None and info['pid'] != old_pid and
            healthcheck(f'http://127.0.0.1:{info["port"]}/') == 200)


def test_channel_life(controller):
    created = controller.create('analytics', ['p1', 'p2'])
    channel_id, token = created['id'], created['token']
    assert created['ceilometer_url'] == ''
    url = controller.wait_url(channel_id)
    assert url == f'http://127.0.0.1:{controller.first_port}/'
    assert healthcheck(url) == 200
    got = controller.api('GET', f'{channel_id}/').json()
    assert got['state'] == 'running' and 'token' not in got
    assert tenant_get(url, token) == 502
    # Its files are the controller's user's only; links point at url.
    directory = os.path.join(controller.state_dir, channel_id)
    for name in ('proxy.conf', 'proxy.log'):
        mode = os.stat(os.path.join(directory, name)).st_mode & 0o777
        assert mode == 0o600, (name, oct(mode))
    with open(os.path.join(directory, 'proxy.conf')) as handle:
        assert f'public_url = {url}\n' in handle.read()
    # The liveness the reconciler asks, answered by the proxy's master,
    # and the /healthcheck naming the proxy (its HTTP check).
    assert liveness.check(channels.liveness_socket(channel_id), 1)
    assert requests.get(f'{url}healthcheck', timeout=10).headers.get(
        'X-Calipso-Proxy') == channels.liveness_socket(channel_id)
    assert tenant_get(url, 'not-the-token') == 401

    # A proxy that dies is restarted by the reconciler: a new process
    # within a few reconcile intervals (0.5 s here), answering once it
    # has started (slow on a loaded machine).
    info = controller.pid_info(channel_id)
    os.kill(info['pid'], signal.SIGKILL)
    assert basics.wait_until(
        lambda: (controller.pid_info(channel_id) or info)['pid'] != info[
            'pid'], 5, interval=0.1), controller.log()
    assert basics.wait_until(
        lambda: restarted(controller, channel_id, info['pid']), 60,
        interval=0.2), controller.log()
    assert healthcheck(controller.wait_url(channel_id)) == 200

    # A new tenant list: new config, new proxy process.
    info = controller.pid_info(channel_id)
    response = controller.api('PUT', f'{channel_id}/',
                              json={'tenant_list_str': 'p3'})
    assert response.status_code == 200, response.text
    assert response.json()['tenant_list'] == ['p3']
    assert basics.wait_until(
        lambda: restarted(controller, channel_id, info['pid']), 30,
        interval=0.2), controller.log()
    with open(os.path.join(controller.state_dir, channel_id,
                           'proxy.conf')) as handle:
        assert 'authorized_projects = p3\n' in handle.read()
    assert tenant_get(controller.wait_url(channel_id), token) == 502

    # Deleted: the proxy is gone when DELETE answers.
    response = controller.api('DELETE', f'{channel_id}/')
    assert response.status_code == 204
    assert healthcheck(url) is None
    assert tenant_get(url, token) is None
    assert controller.api('GET', f'{channel_id}/').status_code == 404
    time.sleep(2)
    assert tenant_get(url, token) is None
    assert not os.path.exists(os.path.join(controller.state_dir,
                                           channel_id))

    log = controller.log()
    assert log.count('Reconciler started') == 1
    assert f'Started the proxy of channel {channel_id}' in log
    assert f'Restarted the proxy of channel {channel_id}' not in log



def take_port_of_killed_proxy(controller, channel_id, port, tries=5):
    """Kill the channel's proxy and listen on its port before the
    reconciler starts it again (when the reconciler is first, again);
    the listening socket."""
    for _ in range(tries):
        info = controller.pid_info(channel_id)
        os.killpg(info['pid'], signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            sock = socket.socket()
            try:
                sock.bind(('127.0.0.1', port))
                sock.listen()
                return sock
            except OSError:
                sock.close()
                time.sleep(0.005)
        assert basics.wait_until(
            lambda info=info: restarted(controller, channel_id,
                                        info['pid']), 60,
            interval=0.2), controller.log()
    pytest.fail(f'port {port} never taken before the reconciler: '
                f'{controller.log()}')


def test_a_proxy_whose_port_another_program_took_moves(controller):
    created = controller.create('moving', ['p1'])
    channel_id = created['id']
    url = controller.wait_url(channel_id)
    port = controller.pid_info(channel_id)['port']
    assert url == f'http://127.0.0.1:{port}/'
    holder = take_port_of_killed_proxy(controller, channel_id, port)
    try:
        def moved():
            got = controller.api('GET', f'{channel_id}/').json()
            return got['ceilometer_url'] not in ('', url) and got

        channel = basics.wait_until(moved, 60, interval=0.2)
        assert channel, controller.log()
        new_url = channel['ceilometer_url']
        assert channel['state'] == 'running'
        answer = requests.get(f'{new_url}healthcheck', timeout=10)
        assert answer.status_code == 200
        assert answer.headers.get('X-Calipso-Proxy') == (
            channels.liveness_socket(channel_id))
        assert (f'Channel {channel_id}: port {port} is taken by another '
                'program') in controller.log()
    finally:
        holder.close()

def test_restarted_controller_adopts_proxies_and_stops_orphans(
        controller):
    kept = controller.create('kept', ['p1'])
    orphan = controller.create('orphan', ['p2'])
    kept_url = controller.wait_url(kept['id'])
    orphan_url = controller.wait_url(orphan['id'])
    kept_pid = controller.pid_info(kept['id'])['pid']

    assert controller.stop() == 0
    # The proxies outlive the controller.
    assert healthcheck(kept_url) == 200
    assert healthcheck(orphan_url) == 200
    conf = basics.make_conf(database__connection=controller.database)
    store = storage.get_connection(conf)
    try:
        assert store.delete_channel(orphan['id'])
    finally:
        store.close()

    controller.start()
    assert basics.wait_until(lambda: healthcheck(orphan_url) is None, 20,
                              interval=0.2), controller.log()
    assert tenant_get(orphan_url, orphan['token']) is None
    assert healthcheck(kept_url) == 200
    assert tenant_get(kept_url, kept['token']) == 502
    # Adopted, not restarted.
    assert controller.pid_info(kept['id'])['pid'] == kept_pid
    assert controller.wait_url(kept['id']) == kept_url
    assert basics.wait_until(
        lambda: f'Stopped the proxy of channel {orphan["id"]}' in
        controller.log(), 10)
    assert not os.path.exists(os.path.join(controller.state_dir,
                                           orphan['id']))
    log = controller.log()
    assert f'Proxy of channel {kept["id"]} (pid {kept_pid}) found' in log
    assert f'Restarted the proxy of channel {kept["id"]}' not in log
