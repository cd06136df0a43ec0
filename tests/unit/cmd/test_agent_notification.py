"""calipso-agent-notification start-up checks."""

import os

import pytest

from calipso_agent import shipped
from calipso_agent.cmd import agent_notification


def test_missing_pipeline_file_stops_the_daemon_with_a_reason(tmp_path):
    conf = tmp_path / 'calipso.conf'
    conf.write_text(f'[notification]\npipeline_cfg_file = '
                    f'{tmp_path}/none.yaml\n')
    with pytest.raises(SystemExit) as exit_info:
        agent_notification.main(['--config-file', str(conf)])
    assert f'pipeline file {tmp_path}/none.yaml not found' in str(
        exit_info.value.code)


def test_executor_threads_default_is_small():
    from calipso_agent import service

    conf = service.prepare_service(
        ['--config-file', os.devnull], log_setup=False,
        before_parse=service.limit_executor_threads)
    assert conf.executor_thread_pool_size == service.EXECUTOR_THREADS == 4


def _agent_conf(tmp_path, meter_section=''):
    pipeline = tmp_path / 'pipeline.yaml'
    pipeline.write_text('sources: []\nsinks: []\n')
    conf = tmp_path / 'calipso.conf'
    conf.write_text(f'[notification]\npipeline_cfg_file = {pipeline}\n'
                    f'[meter]\n{meter_section}')
    return str(conf)


def test_no_meter_definition_stops_the_daemon_naming_where(tmp_path):
    missing = tmp_path / 'meters.d'
    conf = _agent_conf(tmp_path, f'meter_definitions_dirs = {missing}\n')
    with pytest.raises(SystemExit) as exit_info:
        agent_notification.main(['--config-file', conf])
    reason = str(exit_info.value.code)
    assert f'no meter definition loaded from {missing}' in reason
    assert shipped.meter_definitions_dir() in reason
    assert 'allow_no_definitions' in reason


def test_no_meter_definition_allowed_or_endpoint_off(tmp_path):
    from calipso_agent import service

    missing = tmp_path / 'meters.d'
    for extra in ('allow_no_definitions = true\n',
                  '[notification]\nendpoints = vsg\n'):
        conf = service.prepare_service(
            ['--config-file', _agent_conf(
                tmp_path, f'meter_definitions_dirs = {missing}\n{extra}')],
            log_setup=False)
        assert agent_notification.definitions_problem(conf) is None


def test_shipped_definitions_are_enough(tmp_path):
    from calipso_agent import service

    conf = service.prepare_service(
        ['--config-file', _agent_conf(
            tmp_path,
            f'meter_definitions_dirs = {shipped.meter_definitions_dir()}\n')],
        log_setup=False)
    assert agent_notification.definitions_problem(conf) is None


def test_missing_config_file_is_one_line(tmp_path, capsys):
    missing = tmp_path / 'nowhere.conf'
    with pytest.raises(SystemExit) as exit_info:
        agent_notification.main(['--config-file', str(missing)])
    reason = str(exit_info.value.code)
    assert reason.endswith(f'configuration file {missing} not found: create '
                           'it from etc/calipso/calipso.conf.sample, or let '
                           '"calipso run" write a working one (README, '
                           '"Install and run")')
    assert '\n' not in reason
