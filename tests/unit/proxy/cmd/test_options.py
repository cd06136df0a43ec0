"""The proxy and controller processes register their own options only:
a proxy never holds database credentials, the controller none of the
agent's but its store and the scope signing key."""

import subprocess
import sys

from calipso_agent import opts as agent_opts
from calipso_proxy.cmd import controller as controller_cmd
from calipso_proxy.cmd import proxy as proxy_cmd

AGENT_ONLY_GROUPS = [group for group, _ in agent_opts.list_opts()
                     if group not in ('DEFAULT', 'database', 'api',
                                      'service_credentials')]


def write_config(tmp_path):
    path = tmp_path / 'proxy.conf'
    path.write_text('[proxy]\nchannel_id = c1\n'
                    '[database]\nconnection = sqlite://\n')
    return str(path)


def test_proxy_process_has_no_database_nor_agent_options(tmp_path):
    conf = proxy_cmd.prepare(['--config-file', write_config(tmp_path)],
                             log_setup=False)
    assert conf.proxy.channel_id == 'c1'
    assert 'service_credentials' in conf
    for group in ['database', 'api', 'controller'] + AGENT_ONLY_GROUPS:
        assert group not in conf, group
    assert 'state_path' not in conf


def test_controller_process_has_its_store_and_no_agent_only_options(
        tmp_path):
    conf = controller_cmd.prepare(['--config-file', write_config(tmp_path)],
                                  log_setup=False)
    assert conf.database.connection == 'sqlite://'
    assert conf.api.scope_signing_key is None
    assert set(conf.api) == {'scope_signing_key'}
    assert 'controller' in conf and 'proxy' in conf
    for group in AGENT_ONLY_GROUPS:
        assert group not in conf, group


def test_proxy_process_imports_neither_the_api_nor_the_store(tmp_path):
    """The proxy's command and paste pipeline, loaded in a fresh
    interpreter, leave no module of calipso_agent.api or
    calipso_agent.storage in sys.modules."""
    script = (
        'import sys\n'
        'from calipso_proxy.cmd import proxy\n'
        'from calipso_proxy import opts\n'
        'from oslo_config import cfg\n'
        'conf = cfg.ConfigOpts()\n'
        'opts.register_proxy_opts(conf)\n'
        'conf([], default_config_files=[])\n'
        "conf.set_override('channel_id', 'c1', 'proxy')\n"
        "conf.set_override('authorized_projects', ['p1'], 'proxy')\n"
        "conf.set_override('token_hash', 'x', 'proxy')\n"
        'proxy.app.load_app(conf)\n'
        "print(' '.join(m for m in sys.modules if m.startswith(\n"
        "    ('calipso_agent.api', 'calipso_agent.storage'))))\n")
    result = subprocess.run([sys.executable, '-c', script], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ''
