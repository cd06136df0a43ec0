"""calipso-agent-notification start-up checks."""

import os

import pytest

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
