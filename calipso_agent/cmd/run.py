"""calipso run: the whole product on one machine, under one supervisor.

    calipso run [--state-dir DIR] [--database URL] [--transport-url URL]
                [--keystone-config FILE] [--api-port N]
                [--controller-port N] [--proxy-ports LOW-HIGH]
                [--reset-config]

Writes a working configuration into the state directory (once; see
``calipso_agent.allinone.workspace``), creates or upgrades the store,
starts the notification agent and the polling agent (which store their
samples with the ``database://`` publisher; the polling agent polls this
host's meters of the state directory's polling.yaml), the query API and
the channel controller,
prints their URLs and example queries, and runs until Ctrl-C or SIGTERM.
Then it stops the notification agent, the polling agent, the controller,
the channel proxies and the API, in that order: a notification the agent
had not yet stored stays on the broker for the next start.
"""

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading

from oslo_config import cfg

from calipso_agent import opts, storage
from calipso_agent.allinone import supervisor as supervisor_mod
from calipso_agent.allinone import workspace as workspace_mod
from calipso_proxy import launcher
from calipso_proxy import opts as proxy_opts

LOG = logging.getLogger('calipso.run')
DEFAULT_TRANSPORT = workspace_mod.Settings.transport_url

BANNER = """
calipso is running ({auth}).
  query API            {api}/v2/  (OpenAPI: {api}/v2/openapi.json)
  topology page        {api}/ui/
  channel controller   {controller}/api/tenant/monitoring/monitoringchannel/
  store                {database}
  state and logs       {state}
  configuration        {config}
{credentials}
Publish the shared fixtures' notifications (or your own) on the bus:
  calipso-replay {transport}../shared/fixtures/notifications

Three queries:
  curl -s {headers}{api}/v2/meters
  curl -s {headers}'{api}/v2/meters/volume.size/statistics?period=3600'
  curl -s {headers}-H 'Content-Type: application/json' \\
       -d '{{"name": "demo", "tenant_list": ["<a project id>"]}}' \\
       {controller}/api/tenant/monitoring/monitoringchannel/
(the last answer holds the channel's proxy URL and its token, given once:
 curl -H 'X-Auth-Token: <token>' <proxy URL>/v2/meters)

Ctrl-C stops everything.
"""

DEVELOPMENT_WARNING = """
*****************************************************************
* DEVELOPMENT MODE: no Keystone (--keystone-config not given).  *
* The API and the controller trust every caller as an admin;    *
* they listen on {host} only. Do not expose these ports.
*****************************************************************"""


def parse_ports(text):
    try:
        low, high = (int(part) for part in text.split('-', 1))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'{text!r} is not a port range LOW-HIGH') from None
    return low, high


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog='calipso', description='calipso-telemetry on one machine.')
    commands = parser.add_subparsers(dest='command', required=True)
    run = commands.add_parser(
        'run', help='run the whole product until Ctrl-C',
        description='Write a working configuration into the state '
                    'directory and run the notification agent, the query '
                    'API and the channel controller until Ctrl-C.')
    run.add_argument('--state-dir', default='.calipso',
                     help='configuration, store, logs and proxies '
                          '(default: %(default)s)')
    run.add_argument('--database', default='',
                     help='store URL (default: an SQLite file in the '
                          'state directory), e.g. '
                          'postgresql://user@127.0.0.1/calipso')
    run.add_argument('--transport-url',
                     default=DEFAULT_TRANSPORT,
                     help='the notification bus (default: %(default)s)')
    run.add_argument('--keystone-config', default='',
                     help='a configuration file with [keystone_authtoken] '
                          '(and [service_credentials] for the proxies): '
                          'Keystone authentication instead of the '
                          'development mode')
    run.add_argument('--host', default='127.0.0.1',
                     help='address of the API, the controller and the '
                          'proxies (default: %(default)s; loopback only '
                          'without --keystone-config)')
    run.add_argument('--api-port', type=int, default=8777)
    run.add_argument('--controller-port', type=int, default=8779)
    run.add_argument('--proxy-ports', type=parse_ports,
                     default=(9100, 9199), metavar='LOW-HIGH')
    run.add_argument('--reset-config', action='store_true',
                     help='write the configuration anew (it is otherwise '
                          'kept as the operator left it)')
    return parser.parse_args(argv)


def settings_of(args):
    return workspace_mod.Settings(
        state_dir=args.state_dir, transport_url=args.transport_url,
        database=args.database, host=args.host, api_port=args.api_port,
        controller_port=args.controller_port,
        proxy_ports=tuple(args.proxy_ports),
        keystone_config=args.keystone_config)


def _script(name):
    """The console script ``name`` next to this Python."""
    path = os.path.join(os.path.dirname(sys.executable), name)
    return path if os.path.exists(path) else name


def daemons(workspace):
    """In the order they start; they stop in the reverse one, so the
    agent stops taking notifications first."""
    config = []
    for path in workspace.config_files:
        config += ['--config-file', path]
    log_dir = workspace.path(workspace_mod.LOG_DIR)
    return [
        supervisor_mod.Daemon(
            'api', [_script('calipso-api')] + config, log_dir,
            ready_url=f'{workspace.api_url}/healthcheck'),
        supervisor_mod.Daemon(
            'controller', [_script('calipso-proxy-controller')] + config,
            log_dir, ready_url=f'{workspace.controller_url}/healthcheck',
            after_stop=lambda: stop_proxies(workspace)),
        supervisor_mod.Daemon(
            'polling', [_script('calipso-agent-polling')] + config,
            log_dir, ready_log='Polling agent', stop_timeout=30),
        supervisor_mod.Daemon(
            'agent', [_script('calipso-agent-notification')] + config,
            log_dir, ready_log='listening on exchanges', stop_timeout=40),
    ]


def sync_store(workspace):
    """calipso-dbsync once; SystemExit with its reason when it fails."""
    config = []
    for path in workspace.config_files:
        config += ['--config-file', path]
    result = subprocess.run([_script('calipso-dbsync')] + config,
                            capture_output=True, text=True)
    if result.returncode:
        sys.exit(result.stderr.strip().splitlines()[-1]
                 if result.stderr.strip() else
                 f'calipso-dbsync exited with {result.returncode}')
    LOG.info('%s', result.stdout.strip())


def stop_proxies(workspace):
    """Stop the channel proxies the controller left running (a
    controller stops only itself, so a restarted one adopts them)."""
    conf = cfg.ConfigOpts()
    opts.register_opts(conf)
    proxy_opts.register_opts(conf)
    conf(['--config-file', workspace.config_file], project='calipso',
         default_config_files=[])
    proxies = launcher.get_launcher(conf)
    for channel_id in sorted(proxies.running()):
        proxies.stop(channel_id)
        LOG.info('proxy of channel %s stopped', channel_id)


def banner(workspace):
    settings = workspace.settings
    if settings.development_auth:
        auth = 'development mode, no authentication'
        credentials = ('No credentials needed (development mode): every '
                       'caller is an admin.\n')
        headers = ''
    else:
        auth = f'Keystone, {settings.keystone_config}'
        credentials = ('Authenticate with a Keystone token: '
                       'export TOKEN=$(openstack token issue -f value -c '
                       'id)\n')
        headers = '-H "X-Auth-Token: $TOKEN" '
    return BANNER.format(
        auth=auth, api=workspace.api_url,
        controller=workspace.controller_url,
        database=_safe(workspace.database_url), state=workspace.root,
        config=workspace.config_file, credentials=credentials,
        transport=('' if settings.transport_url == DEFAULT_TRANSPORT
                   else '--url <transport URL> '),
        headers=headers)


def _safe(url):
    return storage.safe_url(url)


def run(args):
    logging.basicConfig(level=logging.INFO,
                        format='%(asctime)s calipso run: %(message)s')
    workspace = workspace_mod.Workspace(settings_of(args))
    try:
        workspace.check()
    except workspace_mod.WorkspaceError as exc:
        sys.exit(f'calipso run: {exc}')
    for path in workspace.prepare(reset=args.reset_config):
        LOG.info('wrote %s', path)
    if workspace.settings.development_auth:
        LOG.warning(DEVELOPMENT_WARNING.format(host=args.host))
    sync_store(workspace)

    stopping = threading.Event()

    def request_stop(signum, frame):
        if not stopping.is_set():
            LOG.info('%s: stopping', signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    supervisor = supervisor_mod.Supervisor(daemons(workspace))
    try:
        supervisor.start()
    except supervisor_mod.StartError as exc:
        sys.exit(f'calipso run: {exc}')
    print(banner(workspace), flush=True)
    try:
        supervisor.watch(stopping.is_set)
    finally:
        statuses = supervisor.stop()
    LOG.info('stopped: %s', ', '.join(f'{name} {status}'
                                      for name, status in statuses.items()))
    return 0


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return run(args)


if __name__ == '__main__':
    sys.exit(main())
