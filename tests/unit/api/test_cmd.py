"""calipso-api's entry point (calipso_agent/cmd/api.py)."""

import pytest
import webob

from calipso_agent.cmd import api as cmd_api
from calipso_agent.wsgi import server
from tests.helpers import basics


@pytest.fixture
def served(monkeypatch):
    calls = []

    def serve(load_app, host, port, **options):
        calls.append(dict(load_app=load_app, host=host, port=port,
                          **options))

    monkeypatch.setattr(server, 'serve', serve)
    return calls


def write_conf(tmp_path, text):
    path = tmp_path / 'calipso.conf'
    path.write_text(f'[DEFAULT]\nuse_stderr = true\n{text}')
    return ['--config-file', str(path)]


def test_main_serves_the_configured_pipeline(tmp_path, served):
    cmd_api.main(write_conf(tmp_path, (
        f'[database]\nconnection = sqlite:///{tmp_path}/db.sqlite\n'
        '[api]\nhost = 127.0.0.1\nport = 9876\nworkers = 3\nthreads = 2\n'
        'auth_strategy = noauth\n')))
    (call,) = served
    assert (call['host'], call['port'], call['workers'],
            call['threads']) == ('127.0.0.1', 9876, 3, 2)
    assert call['proc_name'] == 'calipso-api'
    pipeline = call['load_app']()
    response = webob.Request.blank('/v2/meters').get_response(pipeline)
    assert (response.status_code, response.json) == (200, [])


def test_missing_paste_file_exits(tmp_path, served):
    with pytest.raises(SystemExit, match='paste_config'):
        cmd_api.main(write_conf(tmp_path, (
            f'[database]\nconnection = sqlite:///{tmp_path}/db.sqlite\n'
            '[api]\npaste_config = /nowhere/api-paste.ini\n')))
    assert served == []


def test_unknown_database_scheme_exits(tmp_path, served):
    with pytest.raises(SystemExit, match='connection'):
        cmd_api.main(write_conf(tmp_path, (
            '[database]\nconnection = nosql://x\n[api]\n'
            'auth_strategy = noauth\n')))
    assert served == []


def test_unreachable_database_still_serves(tmp_path, served):
    cmd_api.main(write_conf(tmp_path, (
        f'[database]\nconnection = postgresql://nobody@127.0.0.1:'
        f'{basics.free_port()}/none\n[api]\nauth_strategy = noauth\n')))
    assert len(served) == 1
