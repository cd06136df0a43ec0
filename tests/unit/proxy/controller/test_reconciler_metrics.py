"""``calipso_proxy_restarts_total``: the reason of each proxy the
reconciler starts again (the fixtures of controller/test_app)."""

import prometheus_client

from calipso_proxy.launcher import base as launcher_base
from tests.unit.proxy.controller import test_app as support

app = support.app
reconciler = support.reconciler


def restarts(channel_id, reason):
    return prometheus_client.REGISTRY.get_sample_value(
        'calipso_proxy_restarts_total',
        {'channel': channel_id, 'reason': reason}) or 0


def test_a_first_start_is_no_restart_an_exit_is(app, reconciler, launcher,
                                                store):
    channel_id = support.create(app)['id']
    port = support.stored(store, channel_id)['port']
    reconciler.answering.add(port)
    reconciler.run_once()
    reconciler.run_once()
    assert [restarts(channel_id, r) for r in (
        'exited', 'not_running', 'unresponsive', 'config_changed')] == [
            0, 0, 0, 0]
    launcher.processes.pop(channel_id)
    reconciler.run_once()
    assert restarts(channel_id, 'exited') == 1


def test_a_silent_proxy_is_restarted_as_unresponsive(app, reconciler,
                                                     conf):
    channel_id = support.create(app)['id']
    reconciler.run_once()
    reconciler.clock_value.now += conf.controller.proxy_start_timeout + 1
    reconciler.run_once()
    assert restarts(channel_id, 'unresponsive') == 1
    assert restarts(channel_id, 'exited') == 0


def test_an_edited_configuration_is_restarted_as_changed(app, reconciler,
                                                        conf):
    channel_id = support.create(app)['id']
    reconciler.run_once()
    with open(launcher_base.config_path(conf, channel_id), 'a') as handle:
        handle.write('# edited\n')
    reconciler.run_once()
    assert restarts(channel_id, 'config_changed') == 1


def test_an_update_stopping_the_proxy_is_not_an_exit(app, reconciler,
                                                    launcher):
    channel_id = support.create(app)['id']
    reconciler.run_once()
    support.call(app, 'PATCH', f'{support.COLLECTION}/{channel_id}/',
                 {'tenant_list': ['p9']})
    reconciler.run_once()
    assert launcher.actions()[-1] == ('start', channel_id)
    assert restarts(channel_id, 'not_running') == 1
    assert restarts(channel_id, 'exited') == 0
