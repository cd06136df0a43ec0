"""/metrics of calipso-proxy (requests by channel and status) and of
calipso-proxy-controller (proxy restarts by its reconciler, which runs in
the gunicorn master: its counts reach the page the workers answer)."""

import os
import signal

import pytest

from tests.functional.proxy.controller import test_app as test_controller
from tests.helpers import basics

pytestmark = pytest.mark.functional


@pytest.fixture
def controller(tmp_path):
    started = test_controller.Controller(str(tmp_path))
    try:
        yield started.start()
    finally:
        started.cleanup()


def restarts(controller, channel_id, reason):
    return basics.metric(
        basics.read_metrics(f'{controller.base}/metrics'),
        'calipso_proxy_restarts_total', channel=channel_id, reason=reason)


def test_proxy_requests_and_restarts_are_counted(controller):
    created = controller.create('analytics', ['p1'])
    channel_id, token = created['id'], created['token']
    url = controller.wait_url(channel_id)
    # The backend is a closed port: 502 with the token, 401 without.
    for _ in range(3):
        assert test_controller.tenant_get(url, token) == 502
    for _ in range(2):
        assert test_controller.tenant_get(url, 'not-the-token') == 401
    values = basics.read_metrics(f'{url}metrics')
    assert basics.metric(values, 'calipso_proxy_requests_total',
                          channel=channel_id, status='502') == 3
    assert basics.metric(values, 'calipso_proxy_requests_total',
                          channel=channel_id, status='401') == 2
    # The reconciler's /healthcheck probes are not tenants' requests.
    assert basics.metric(values, 'calipso_proxy_requests_total',
                          channel=channel_id, status='200') == 0
    assert restarts(controller, channel_id, 'exited') == 0

    info = controller.pid_info(channel_id)
    os.kill(info['pid'], signal.SIGKILL)
    assert basics.wait_until(
        lambda: test_controller.restarted(controller, channel_id,
                                          info['pid']), 60,
        interval=0.2), controller.log()
    # Every read (either worker answers) sees the master's count.
    for _ in range(5):
        assert restarts(controller, channel_id, 'exited') == 1

    info = controller.pid_info(channel_id)
    response = controller.api('PUT', f'{channel_id}/',
                              json={'tenant_list_str': 'p3'})
    assert response.status_code == 200, response.text
    assert basics.wait_until(
        lambda: test_controller.restarted(controller, channel_id,
                                          info['pid']), 30,
        interval=0.2), controller.log()
    # The update stopped the proxy (state starting): not an exit.
    assert restarts(controller, channel_id, 'not_running') == 1
    assert restarts(controller, channel_id, 'exited') == 1
    # A new proxy process: its counts start afresh.
    url = controller.wait_url(channel_id)
    assert test_controller.tenant_get(url, token) == 502
    values = basics.read_metrics(f'{url}metrics')
    assert basics.metric(values, 'calipso_proxy_requests_total',
                          channel=channel_id, status='502') == 1
    controller_page = basics.read_metrics(f'{controller.base}/metrics')
    assert basics.metric(controller_page, 'calipso_http_requests_total',
                          method='POST', status='201') == 1
