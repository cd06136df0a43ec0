"""The state directory and working configuration of ``calipso run``.

Everything the product needs on one machine is made from the package's
own defaults (``etc/calipso``): a ``calipso.conf`` for every daemon, a
pipeline that stores samples (``database://``), the polling sources (the
package's polling.yaml: this host's meters), and the directories for
the store, the logs and the channel proxies. A file the operator changed
is never overwritten: the configuration is written only when it is not
there, and ``--reset-config`` makes it anew.
"""

import dataclasses
import ipaddress
import os
import secrets
import socket
import urllib.parse

from calipso_agent import shipped

CONFIG_FILE = 'calipso.conf'
PIPELINE_FILE = 'pipeline.yaml'
POLLING_FILE = 'polling.yaml'
LOG_DIR = 'log'
PROXY_DIR = 'proxies'

PIPELINE = """\
---
# Written by calipso run: every sample of every meter to the store and
# to the tenant subscriptions it matches (doc/pubsub.md).
sources:
  - name: meter_source
    meters:
      - "*"
    sinks:
      - meter_sink
sinks:
  - name: meter_sink
    publishers:
      - database://
      - subscription://
"""


def shipped_polling():
    """The package's polling.yaml (the host source), to start from."""
    with open(os.path.join(shipped.etc_dir(), POLLING_FILE)) as handle:
        return handle.read()


class WorkspaceError(Exception):
    """The state directory or the configuration cannot be used."""


@dataclasses.dataclass
class Settings:
    """What ``calipso run`` was asked for."""

    state_dir: str
    transport_url: str = 'rabbit://guest:guest@127.0.0.1:5672/'
    database: str = ''
    host: str = '127.0.0.1'
    api_port: int = 8777
    controller_port: int = 8779
    proxy_ports: tuple = (9100, 9199)
    keystone_config: str = ''

    @property
    def development_auth(self):
        """No Keystone: the noauth pipelines, on loopback only."""
        return not self.keystone_config


def is_loopback(host):
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == 'localhost'


def broker_problem(transport_url, timeout=3.0):
    """Why the first broker of a ``rabbit://`` transport URL cannot be
    reached (None when it answers, or for other transports)."""
    parsed = urllib.parse.urlsplit(transport_url)
    if parsed.scheme != 'rabbit':
        return None
    first = parsed.netloc.split(',')[0].rsplit('@', 1)[-1]
    host, _, port = first.rpartition(':') if ':' in first else (first, '',
                                                                 '')
    host = host.strip('[]') or '127.0.0.1'
    try:
        with socket.create_connection((host, int(port or 5672)),
                                      timeout=timeout):
            return None
    except (OSError, ValueError) as exc:
        return (f'the notification bus {host}:{port or 5672} does not '
                f'answer ({exc}): start RabbitMQ (rabbitmq-server -detached) '
                f'or give --transport-url')


def port_in_use(host, port):
    with socket.socket(socket.AF_INET6 if ':' in host
                       else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


class Workspace:
    """The files of one ``calipso run`` under ``settings.state_dir``."""

    def __init__(self, settings):
        self.settings = settings
        self.root = os.path.abspath(settings.state_dir)

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    @property
    def config_file(self):
        return self.path(CONFIG_FILE)

    @property
    def config_files(self):
        """The --config-file arguments every daemon is started with."""
        files = [self.config_file]
        if self.settings.keystone_config:
            files.append(os.path.abspath(self.settings.keystone_config))
        return files

    @property
    def database_url(self):
        return (self.settings.database
                or f'sqlite:///{self.path("calipso.sqlite")}')

    @property
    def api_url(self):
        return f'http://{self.settings.host}:{self.settings.api_port}'

    @property
    def controller_url(self):
        return (f'http://{self.settings.host}:'
                f'{self.settings.controller_port}')

    def check(self):
        """WorkspaceError when the settings cannot give a working run."""
        settings = self.settings
        if settings.development_auth and not is_loopback(settings.host):
            raise WorkspaceError(
                f'without Keystone (--keystone-config) the API and the '
                f'controller accept anyone: they listen on loopback only, '
                f'not on {settings.host}')
        if settings.keystone_config and not os.path.isfile(
                settings.keystone_config):
            raise WorkspaceError(f'--keystone-config '
                                 f'{settings.keystone_config}: no such file')
        problem = broker_problem(settings.transport_url)
        if problem:
            raise WorkspaceError(problem)
        low, high = settings.proxy_ports
        if not 0 < low <= high < 65536:
            raise WorkspaceError(f'--proxy-ports {low}-{high} is not a '
                                 f'port range')
        for name, port in (('api', settings.api_port),
                           ('controller', settings.controller_port)):
            if port_in_use(settings.host, port):
                raise WorkspaceError(
                    f'the {name} port {settings.host}:{port} is in use '
                    f'(another calipso run? choose another with '
                    f'--{name}-port)')

    def prepare(self, reset=False):
        """Create the directories and, unless there, the configuration;
        the list of files written."""
        for directory in (self.root, self.path(LOG_DIR),
                          self.path(PROXY_DIR)):
            os.makedirs(directory, mode=0o700, exist_ok=True)
        written = []
        for name, text in ((CONFIG_FILE, self.config_text()),
                           (PIPELINE_FILE, PIPELINE),
                           (POLLING_FILE, shipped_polling())):
            target = self.path(name)
            if reset or not os.path.exists(target):
                descriptor = os.open(target,
                                     os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                                     0o600)
                with os.fdopen(descriptor, 'w') as handle:
                    handle.write(text)
                written.append(target)
        return written

    def config_text(self):
        settings = self.settings
        etc = shipped.etc_dir()
        auth = 'noauth' if settings.development_auth else 'keystone'
        problem = broker_problem(settings.transport_url)
        if problem:
            raise WorkspaceError(problem)
        low, high = settings.proxy_ports
        return (
            '# Written by calipso run from the package defaults; edit it '
            'freely,\n# it is not overwritten (calipso run --reset-config '
            'writes it anew).\n'
            '[DEFAULT]\n'
            f'state_path = {self.root}\n'
            f'transport_url = {settings.transport_url}\n'
            '[database]\n'
            f'connection = {self.database_url}\n'
            '[meter]\n'
            f'meter_definitions_dirs = {os.path.join(etc, "meters.d")}\n'
            '[notification]\n'
            f'pipeline_cfg_file = {self.path(PIPELINE_FILE)}\n'
            '[polling]\n'
            f'cfg_file = {self.path(POLLING_FILE)}\n'
            '[api]\n'
            f'host = {settings.host}\n'
            f'port = {settings.api_port}\n'
            f'auth_strategy = {auth}\n'
            f'scope_signing_key = {secrets.token_hex(32)}\n'
            '[controller]\n'
            f'host = {settings.host}\n'
            f'port = {settings.controller_port}\n'
            f'auth_strategy = {auth}\n'
            f'backend_url = {self.api_url}\n'
            f'proxy_host = {settings.host}\n'
            f'proxy_port_min = {low}\n'
            f'proxy_port_max = {high}\n'
            f'proxy_state_dir = {self.path(PROXY_DIR)}\n')
