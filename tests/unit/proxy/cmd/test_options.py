"""The proxy and controller processes register their own options only:
a proxy never holds database credentials, the controller none of the
agent's but its store and the scope signing key."""

from calipso_agent import opts as agent_opts
from calipso_proxy.cmd import controller as controller_cmd
from calipso_proxy.cmd import proxy as proxy_cmd

AGENT_ONLY_GROUPS = [group for group, _ in agent_opts.list_opts()
                     if group not in ('DEFAULT', 'database', 'api')]


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
