"""calipso-api's /metrics: the real gunicorn server with two workers; the
page is the sum over both, whichever answers it."""

import contextlib
import glob
import os
import signal
import subprocess
import time

import pytest
import requests

from tests.helpers import basics, daemons

pytestmark = pytest.mark.functional


@pytest.fixture
def api_server(tmp_path):
    database = f'sqlite:///{tmp_path}/calipso.sqlite'
    port = basics.free_port()
    config = tmp_path / 'calipso.conf'
    config.write_text(
        '[DEFAULT]\nuse_stderr = true\n'
        f'[database]\nconnection = {database}\n'
        f'[api]\nhost = 127.0.0.1\nport = {port}\nworkers = 2\n'
        'threads = 2\nauth_strategy = noauth\n')
    metrics_tmp = tmp_path / 'tmp'
    metrics_tmp.mkdir()
    log_path = tmp_path / 'api.log'
    with open(log_path, 'wb') as log:
        process = subprocess.Popen(
            daemons.api_command() + ['--config-file', str(config)],
            cwd=basics.REPO, stdin=subprocess.DEVNULL, stdout=log,
            stderr=log, start_new_session=True,
            env=dict(os.environ, TMPDIR=str(metrics_tmp)))
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
        yield base, process, metrics_tmp
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


def writers(metrics_tmp):
    """Pids of the processes that wrote counters."""
    return {os.path.basename(p)[len('counter_'):-len('.db')]
            for p in glob.glob(str(metrics_tmp / 'calipso-metrics.*'
                                   / 'counter_*.db'))}


def requests_total(base, status):
    return basics.metric(basics.read_metrics(f'{base}/metrics'),
                          'calipso_http_requests_total', method='GET',
                          status=status)


def test_metrics_are_the_sum_over_the_workers(api_server):
    base, process, metrics_tmp = api_server
    before = requests_total(base, '200')
    sent = 0
    # New connections until both workers have answered some.
    while len(writers(metrics_tmp)) < 2 and sent < 400:
        assert requests.get(f'{base}/v2/meters', timeout=5).status_code == 200
        sent += 1
    assert len(writers(metrics_tmp)) == 2, 'one worker answered everything'
    bad = 3
    for _ in range(bad):
        assert requests.get(f'{base}/v2/meters', params={'limit': 0},
                            timeout=5).status_code == 400
    # Several reads, answered by either worker: the same totals.
    for _ in range(10):
        assert requests_total(base, '200') == before + sent
        assert requests_total(base, '400') == bad
    # /metrics needs no token, and answers HEAD without a body.
    head = requests.head(f'{base}/metrics', timeout=5)
    assert (head.status_code, head.content) == (200, b'')
    assert requests.post(f'{base}/metrics', timeout=5).status_code == 405


def test_the_metrics_directory_is_removed_at_exit(api_server):
    base, process, metrics_tmp = api_server
    (directory,) = glob.glob(str(metrics_tmp / 'calipso-metrics.*'))
    assert directory.endswith(f'calipso-metrics.calipso-api.{process.pid}')
    os.killpg(process.pid, signal.SIGTERM)
    # Past gunicorn's graceful timeout (30 s): a worker still booting when
    # the signal came may make the master wait that long.
    assert process.wait(60) == 0
    assert not os.path.exists(directory)
