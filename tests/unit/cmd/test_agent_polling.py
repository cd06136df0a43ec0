"""calipso-agent-polling start-up checks."""

import pytest

from calipso_agent.cmd import agent_polling
from tests.helpers.basics import ETC


@pytest.mark.parametrize('missing, option', [
    ('polling', '[polling] cfg_file'),
    ('pipeline', '[notification] pipeline_cfg_file'),
])
def test_missing_file_stops_the_daemon_with_a_reason(tmp_path, missing,
                                                     option):
    files = {'polling': f'{ETC}/polling.yaml',
             'pipeline': f'{ETC}/pipeline.yaml'}
    files[missing] = f'{tmp_path}/none.yaml'
    conf = tmp_path / 'calipso.conf'
    conf.write_text(f'[notification]\npipeline_cfg_file = '
                    f'{files["pipeline"]}\n[polling]\ncfg_file = '
                    f'{files["polling"]}\n')
    with pytest.raises(SystemExit) as exit_info:
        agent_polling.main(['--config-file', str(conf)])
    assert str(exit_info.value.code) == (
        f'calipso-agent-polling: {tmp_path}/none.yaml not found ({option})')
