"""calipso run's state directory and working configuration."""

import os
import socket
import stat

import pytest
from oslo_config import cfg

from calipso_agent import opts, shipped
from calipso_agent.allinone import workspace as workspace_mod
from calipso_agent.notification import meters
from calipso_agent.pollsters import sources
from calipso_proxy import opts as proxy_opts
from tests.helpers import basics


def make(tmp_path, **settings):
    settings.setdefault('api_port', basics.free_port())
    settings.setdefault('controller_port', basics.free_port())
    return workspace_mod.Workspace(workspace_mod.Settings(
        state_dir=str(tmp_path / 'state'), **settings))


def parse(workspace):
    conf = cfg.ConfigOpts()
    opts.register_opts(conf)
    proxy_opts.register_opts(conf)
    args = []
    for path in workspace.config_files:
        args += ['--config-file', path]
    conf(args, project='calipso', default_config_files=[])
    return conf


def test_prepared_configuration_runs_the_product(tmp_path):
    workspace = make(tmp_path)
    written = workspace.prepare()
    assert sorted(written) == sorted([workspace.config_file,
                                      workspace.path('pipeline.yaml'),
                                      workspace.path('polling.yaml')])
    conf = parse(workspace)
    assert conf.database.connection == (
        f'sqlite:///{workspace.root}/calipso.sqlite')
    assert conf.api.auth_strategy == conf.controller.auth_strategy == \
        'noauth'
    assert conf.api.host == conf.controller.host == '127.0.0.1'
    assert conf.controller.backend_url == workspace.api_url
    assert os.path.isdir(conf.controller.proxy_state_dir)
    # The shipped meter definitions load, and the pipeline stores.
    definitions = meters.MeterDefinitions.from_conf(conf)
    assert definitions.definitions and not definitions.report.errors
    assert conf.meter.meter_definitions_dirs == [
        shipped.meter_definitions_dir()]
    with open(conf.notification.pipeline_cfg_file) as handle:
        assert 'database://' in handle.read()
    # The polling agent polls this host's meters.
    polled = sources.load_file(conf.polling.cfg_file)
    assert not polled.errors
    assert [s.discovery for s in polled] == [['local_host']]
    assert all(s.selects('load.1') for s in polled)
    for path in written:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_operator_changes_are_kept_unless_reset(tmp_path):
    workspace = make(tmp_path)
    workspace.prepare()
    with open(workspace.config_file, 'a') as handle:
        handle.write('[api]\nworkers = 3\n')
    assert workspace.prepare() == []
    assert parse(workspace).api.workers == 3
    assert workspace.config_file in workspace.prepare(reset=True)
    assert parse(workspace).api.workers == 1


def test_postgresql_and_keystone(tmp_path):
    keystone = tmp_path / 'keystone.conf'
    keystone.write_text('[keystone_authtoken]\nwww_authenticate_uri = '
                        'http://127.0.0.1:5000\n')
    workspace = make(tmp_path, database='postgresql://u@127.0.0.1/db',
                     transport_url='fake:/',
                     keystone_config=str(keystone))
    workspace.check()
    workspace.prepare()
    conf = parse(workspace)
    assert conf.database.connection == 'postgresql://u@127.0.0.1/db'
    assert conf.api.auth_strategy == conf.controller.auth_strategy == \
        'keystone'
    assert workspace.config_files[-1] == str(keystone)


@pytest.mark.parametrize('settings, reason', [
    (dict(host='0.0.0.0'), 'listen on loopback only, not on 0.0.0.0'),
    (dict(keystone_config='/nonexistent.conf'), 'no such file'),
    (dict(proxy_ports=(9200, 9100)), 'is not a port range'),
])
def test_unusable_settings(tmp_path, settings, reason):
    with pytest.raises(workspace_mod.WorkspaceError, match=reason):
        make(tmp_path, **settings).check()


def test_port_in_use(tmp_path):
    with socket.socket() as listening:
        listening.bind(('127.0.0.1', 0))
        listening.listen()
        port = listening.getsockname()[1]
        with pytest.raises(workspace_mod.WorkspaceError,
                           match=f'api port 127.0.0.1:{port} is in use'):
            make(tmp_path, api_port=port).check()


def test_broker_that_does_not_answer(tmp_path):
    port = basics.free_port()
    with pytest.raises(workspace_mod.WorkspaceError,
                       match=f'notification bus 127.0.0.1:{port} does not '
                             f'answer'):
        make(tmp_path, transport_url=f'rabbit://guest:guest@127.0.0.1:'
                                     f'{port}/').check()


@pytest.mark.parametrize('url', ['kafka://127.0.0.1:1/', 'fake:/'])
def test_other_transports_are_not_probed(url):
    assert workspace_mod.broker_problem(url) is None


def test_scope_signing_key_is_shared_by_api_and_controller(tmp_path):
    workspace = make(tmp_path)
    workspace.prepare()
    conf = parse(workspace)
    # One [api] option, read by the API and by the controller alike.
    assert len(conf.api.scope_signing_key) == 64
    assert make(tmp_path / 'other').config_text() != workspace.config_text()
