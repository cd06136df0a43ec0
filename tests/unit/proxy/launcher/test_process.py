"""ProcessLauncher with real processes: a stand-in proxy (a small HTTP
server reading its port from the config file) replaces the proxy
command."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest
import requests

from calipso_proxy import launcher
from calipso_proxy.controller import channels
from calipso_proxy.launcher import base as launcher_base
from calipso_proxy.launcher import process
from tests.helpers import basics
from tests.unit.proxy.controller.test_channels import make_conf

# [test] child = true: it starts a child process in its group (named by
# the config path, as gunicorn's workers are named by the channel id);
# [test] ignore_term = true: SIGTERM is ignored (by the child too).
STAND_IN = textwrap.dedent('''\
    import configparser, http.server, signal, subprocess, sys
    path = sys.argv[sys.argv.index('--config-file') + 1]
    config = configparser.ConfigParser(interpolation=None)
    config.read(path)
    test = config['test'] if config.has_section('test') else {}
    if test.get('ignore_term') == 'true':
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if test.get('child') == 'true':
        subprocess.Popen([sys.executable, '-c',
                          'import time; time.sleep(600)', path])

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header('Content-Length', '2')
            self.end_headers()
            self.wfile.write(b'OK')

    server = http.server.HTTPServer(
        (config['proxy']['host'], int(config['proxy']['port'])), Handler)
    print('stand-in listening', flush=True)
    server.serve_forever()
''')


@pytest.fixture
def conf(tmp_path):
    return make_conf(tmp_path, controller__proxy_stop_timeout=5)


@pytest.fixture
def command(tmp_path):
    script = tmp_path / 'stand_in.py'
    script.write_text(STAND_IN)
    return [sys.executable, str(script)]


@pytest.fixture
def proxies(conf, command):
    """A ProcessLauncher of the stand-in; every proxy it started is
    killed afterwards."""
    started = process.ProcessLauncher(conf, command=command)
    yield started
    for pid in list(started._children):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    for child in started._children.values():
        child.wait(10)


def channel(conf, channel_id='c-1', test_section=''):
    """A stored-like channel and its config file (with a [test]
    section for the stand-in)."""
    data = {'id': channel_id, 'tenant_list': ['p1'], 'token_hash': 'x',
            'port': basics.free_port()}
    path = channels.write_config(conf, data)
    if test_section:
        with open(path, 'a') as handle:
            handle.write(f'[test]\n{test_section}\n')
    return data, path


def answers(port):
    try:
        return requests.get(f'http://127.0.0.1:{port}/healthcheck',
                            timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


def port_open(port):
    with socket.socket() as sock:
        return sock.connect_ex(('127.0.0.1', port)) == 0


def group_members(pgid):
    return process._group_members(pgid)


def test_start_and_stop(proxies, conf):
    data, path = channel(conf, test_section='child = true')
    info = proxies.start(data, path, data['port'])
    assert basics.wait_until(lambda: answers(data['port']), 20)
    assert proxies.alive('c-1')
    assert proxies.running() == {'c-1': info}
    with open(os.path.join(launcher_base.channel_dir(conf, 'c-1'),
                           'proxy.pid')) as handle:
        assert json.load(handle) == info
    assert (info['channel_id'], info['config_path'], info['port']) == (
        'c-1', path, data['port'])
    assert os.getpgid(info['pid']) == info['pid']
    assert basics.wait_until(lambda: len(group_members(info['pid'])) == 2,
                              10)
    # Starting again leaves the running proxy alone.
    assert proxies.start(data, path, data['port'])['pid'] == info['pid']
    assert list(proxies._children) == [info['pid']]
    started = time.monotonic()
    assert proxies.stop('c-1') is True
    assert time.monotonic() - started < 4
    assert group_members(info['pid']) == []
    assert not port_open(data['port'])
    assert not proxies.alive('c-1')
    assert proxies.running() == {}
    assert proxies.stop('c-1') is False
    with open(os.path.join(launcher_base.channel_dir(conf, 'c-1'),
                           'proxy.log')) as handle:
        log = handle.read()
    assert 'starting the proxy of channel c-1' in log
    assert 'stand-in listening' in log


def test_the_command_runs_in_the_channel_dir(proxies, conf):
    data, path = channel(conf)
    info = proxies.start(data, path, data['port'])
    assert os.readlink(f'/proc/{info["pid"]}/cwd') == (
        launcher_base.channel_dir(conf, 'c-1'))
    cmdline = open(f'/proc/{info["pid"]}/cmdline').read().split('\0')
    assert cmdline[-3:-1] == ['--config-file', path]
    proxies.stop('c-1')


def test_a_proxy_is_known_as_such_as_soon_as_it_is_started(proxies, conf):
    """Right after exec a process's command line is empty for a moment:
    ``start`` returns once it names the proxy, so the proxy it started is
    never taken for a stranger (and started again)."""
    data, path = channel(conf)
    for _ in range(20):
        info = proxies.start(data, path, data['port'])
        assert proxies.alive('c-1')
        with open(f'/proc/{info["pid"]}/cmdline', 'rb') as handle:
            assert path.encode() in handle.read()
        assert proxies.stop('c-1')


def test_sigkill_after_the_stop_timeout(proxies, conf):
    conf.set_override('proxy_stop_timeout', 0.5, 'controller')
    stubborn = process.ProcessLauncher(conf, command=proxies.command)
    data, path = channel(conf, test_section='ignore_term = true\n'
                         'child = true')
    info = stubborn.start(data, path, data['port'])
    proxies._children.update(stubborn._children)
    assert basics.wait_until(lambda: answers(data['port']), 20)
    assert basics.wait_until(lambda: len(group_members(info['pid'])) == 2,
                              10)
    started = time.monotonic()
    assert stubborn.stop('c-1') is True
    assert 0.5 <= time.monotonic() - started < 5
    assert group_members(info['pid']) == []
    assert not port_open(data['port'])


def test_a_new_launcher_adopts_running_proxies(proxies, conf):
    first, first_path = channel(conf, 'c-1')
    second, second_path = channel(conf, 'c-2')
    one = proxies.start(first, first_path, first['port'])
    two = proxies.start(second, second_path, second['port'])
    assert basics.wait_until(lambda: answers(second['port']), 20)
    adopter = process.ProcessLauncher(conf, command=proxies.command)
    assert adopter.running() == {'c-1': one, 'c-2': two}
    assert adopter.start(first, first_path, first['port']) == one
    assert adopter.stop('c-2') is True
    assert not port_open(second['port'])
    assert adopter.running() == {'c-1': one}
    assert proxies.running() == {'c-1': one}


def test_a_killed_proxy_is_not_running(proxies, conf):
    data, path = channel(conf)
    info = proxies.start(data, path, data['port'])
    os.kill(info['pid'], signal.SIGKILL)
    # Not reaped yet by its parent (this process): a zombie, not a proxy.
    other = process.ProcessLauncher(conf, command=proxies.command)
    assert basics.wait_until(lambda: not other.alive('c-1'), 5)
    assert other.running() == {}
    assert not proxies.alive('c-1')
    restarted = proxies.start(data, path, data['port'])
    assert restarted['pid'] != info['pid']
    assert basics.wait_until(lambda: answers(data['port']), 20)
    proxies.stop('c-1')


def test_a_reused_pid_is_not_a_proxy(proxies, conf):
    """A pid file naming another program (the proxy's pid reused) is
    neither running nor stopped."""
    data, path = channel(conf)
    innocent = subprocess.Popen(['sleep', '60'], start_new_session=True)
    try:
        starttime = process._stat(innocent.pid)[2]
        pid_file = os.path.join(launcher_base.channel_dir(conf, 'c-1'),
                                'proxy.pid')
        for marker in (starttime, starttime + 1):
            with open(pid_file, 'w') as handle:
                json.dump({'pid': innocent.pid, 'channel_id': 'c-1',
                           'config_path': path, 'port': data['port'],
                           'starttime': marker}, handle)
            assert not proxies.alive('c-1')
            assert proxies.running() == {}
            assert proxies.stop('c-1') is False
            assert innocent.poll() is None
    finally:
        innocent.kill()
        innocent.wait()


def test_garbage_in_the_state_dir(proxies, conf):
    state = launcher_base.state_dir(conf)
    os.makedirs(os.path.join(state, 'broken'))
    with open(os.path.join(state, 'broken', 'proxy.pid'), 'w') as handle:
        handle.write('{not json')
    os.makedirs(os.path.join(state, 'other'))
    with open(os.path.join(state, 'other', 'proxy.pid'), 'w') as handle:
        json.dump({'pid': os.getpid(), 'channel_id': 'c-1'}, handle)
    with open(os.path.join(state, '.lock'), 'w'):
        pass
    assert proxies.running() == {}
    assert proxies.stop('broken') is False


def test_loaded_by_name(conf):
    loaded = launcher.get_launcher(conf)
    assert isinstance(loaded, process.ProcessLauncher)
    assert loaded.command == [sys.executable, '-m',
                              'calipso_proxy.cmd.proxy']
