"""calipso-api as a process: the real gunicorn server, the noauth
pipeline, an SQLite store, on a free loopback port."""

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from calipso_agent import storage
from tests.helpers import basics
from tests.helpers.basics import make_sample

pytestmark = pytest.mark.functional


def command():
    """The calipso-api console script of this environment, or the module
    when the package is not installed as scripts."""
    script = os.path.join(os.path.dirname(sys.executable), 'calipso-api')
    if os.path.exists(script):
        return [script]
    return [sys.executable, '-m', 'calipso_agent.cmd.api']


@pytest.fixture(scope='module')
def api_server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp('calipso-api')
    database = f'sqlite:///{workdir}/calipso.sqlite'
    conf = basics.make_conf(database__connection=database)
    store = storage.get_connection(conf)
    store.record_samples([make_sample(1), make_sample(2, name='memory',
                                                      resource_id='a/b')])
    store.close()
    port = basics.free_port()
    config = workdir / 'calipso.conf'
    config.write_text(
        '[DEFAULT]\nuse_stderr = true\n'
        f'[database]\nconnection = {database}\n'
        f'[api]\nhost = 127.0.0.1\nport = {port}\nworkers = 2\n'
        'threads = 2\nauth_strategy = noauth\n')
    log_path = workdir / 'api.log'
    with open(log_path, 'wb') as log:
        process = subprocess.Popen(
            command() + ['--config-file', str(config)], cwd=basics.REPO,
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True)
    base = f'http://127.0.0.1:{port}'
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f'{base}/healthcheck',
                                timeout=2).status_code == 200:
                    break
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        yield base, process, log_path
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


def test_healthcheck(api_server):
    base, _, _ = api_server
    response = requests.get(f'{base}/healthcheck', timeout=5)
    assert (response.status_code, response.text) == (200, 'OK')


def test_meters(api_server):
    base, _, _ = api_server
    response = requests.get(f'{base}/v2/meters', timeout=5)
    assert response.status_code == 200
    assert response.headers['Content-Type'] == 'application/json'
    assert sorted(m['name'] for m in response.json()) == ['cpu', 'memory']


def test_encoded_slash_stays_in_the_id(api_server):
    base, _, _ = api_server
    response = requests.get(f'{base}/v2/resources/a%2Fb', timeout=5)
    assert response.status_code == 200, response.text
    assert response.json()['resource_id'] == 'a/b'


def test_errors_are_json(api_server):
    base, _, _ = api_server
    response = requests.get(f'{base}/v2/meters', params={'limit': 0},
                            timeout=5)
    assert response.status_code == 400
    assert response.json()['error_message']['faultstring'] == (
        'Limit must be positive')


def test_workers_serve_in_parallel(api_server):
    base, process, _ = api_server
    with requests.Session() as session:
        answers = [session.get(f'{base}/v2/samples', timeout=5).status_code
                   for _ in range(20)]
    assert answers == [200] * 20
    assert process.poll() is None


def test_sigterm_stops_the_server(api_server):
    _, process, log_path = api_server
    os.killpg(process.pid, signal.SIGTERM)
    assert process.wait(30) == 0, log_path.read_text()
