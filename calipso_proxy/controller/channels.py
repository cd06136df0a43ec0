"""Monitoring channels: what a channel is, how it is checked, stored and
shown, and the config file of its proxy.

A channel (DESIGN.md section 4) is stored with ``id``, ``name``,
``tenant_list`` (authorized project IDs), ``creator``, ``created_at``,
``state`` (``starting`` until its proxy answered its healthcheck, then
``running``), ``port``, ``proxy_url`` and ``token_hash``: the token
itself is given once, in the answer to the creation.

``ChannelService`` holds every change of channels and proxies, for the
API (create, update, delete) and the reconciler (start, restart, mark
running, stop orphans), each under ``ControllerLock``.
"""

import contextlib
import datetime
import fcntl
import logging
import os
import re
import secrets
import shutil
import socket
import threading
import uuid

from keystoneauth1 import loading as ks_loading

from calipso_agent import project_scope
from calipso_agent.wsgi import errors
from calipso_proxy import opts
from calipso_proxy.launcher import base as launcher_base
from calipso_proxy.proxy import tenant_auth

LOG = logging.getLogger(__name__)

STARTING = 'starting'
RUNNING = 'running'
MAX_NAME_LENGTH = 255
TOKEN_BYTES = 32
LOCK_FILE = '.lock'
_BAD_PROJECT_CHARS = re.compile(r'[\s,]')


class NoFreePort(errors.APIError):
    code = 503


# --- validation --------------------------------------------------------------


def _project_list(value, field):
    if not isinstance(value, list) or not value:
        raise errors.InvalidParameterError(
            field, 'a non-empty list of project IDs is required')
    projects = []
    for item in value:
        if not isinstance(item, str) or not item:
            raise errors.InvalidParameterError(
                field, f'{item!r} is not a project ID')
        if _BAD_PROJECT_CHARS.search(item):
            raise errors.InvalidParameterError(
                field, f'project ID {item!r} contains a comma or a space')
        if item not in projects:
            projects.append(item)
    return projects


def parse_tenant_list(body):
    """The project IDs of ``tenant_list`` (a list) or ``tenant_list_str``
    (comma-separated) of a request body; None when it has neither."""
    found = []
    if 'tenant_list' in body:
        found.append(_project_list(body['tenant_list'], 'tenant_list'))
    if 'tenant_list_str' in body:
        value = body['tenant_list_str']
        if not isinstance(value, str):
            raise errors.InvalidParameterError(
                'tenant_list_str', 'a comma-separated string is required')
        found.append(_project_list(
            [item.strip() for item in value.split(',')] if value.strip()
            else [], 'tenant_list_str'))
    if not found:
        return None
    if len(found) == 2 and found[0] != found[1]:
        raise errors.InvalidParameterError(
            'tenant_list_str', 'differs from tenant_list')
    return found[0]


def parse_name(value):
    if not isinstance(value, str) or not value.strip():
        raise errors.InvalidParameterError('name',
                                           'a non-empty string is required')
    if len(value) > MAX_NAME_LENGTH:
        raise errors.InvalidParameterError(
            'name', f'longer than {MAX_NAME_LENGTH} characters')
    return value


def _name_of(body):
    # CORD's clients may send the name as humanReadableName.
    if 'name' in body:
        return parse_name(body['name'])
    if 'humanReadableName' in body:
        return parse_name(body['humanReadableName'])
    return None


def parse_creation(body):
    """(name, tenant_list) of a creation request body (a dict)."""
    name = _name_of(body)
    if name is None:
        raise errors.InvalidParameterError('name', 'is required')
    tenants = parse_tenant_list(body)
    if tenants is None:
        raise errors.InvalidParameterError(
            'tenant_list', 'tenant_list or tenant_list_str is required')
    return name, tenants


def parse_changes(body):
    """The changes (``name``, ``tenant_list``) of an update body."""
    changes = {}
    name = _name_of(body)
    if name is not None:
        changes['name'] = name
    tenants = parse_tenant_list(body)
    if tenants is not None:
        changes['tenant_list'] = tenants
    if not changes:
        raise errors.ClientError('Nothing to change: give name, '
                                 'tenant_list or tenant_list_str')
    return changes


# --- URLs and representation -------------------------------------------------


def _url_host(host):
    if ':' in host and not host.startswith('['):
        return f'[{host}]'
    return host


def proxy_url(conf, port):
    """The URL tenants use: ``http://<public host>:<port>/``."""
    host = (conf.controller.proxy_public_host or
            conf.controller.proxy_host)
    return f'http://{_url_host(host)}:{port}/'


def healthcheck_url(conf, port):
    """Where the controller checks a proxy (a wildcard proxy_host is
    checked on loopback)."""
    host = {'0.0.0.0': '127.0.0.1', '::': '::1', '[::]': '::1'}.get(
        conf.controller.proxy_host, conf.controller.proxy_host)
    return f'http://{_url_host(host)}:{port}/healthcheck'


def liveness_socket(channel_id):
    """The abstract socket a channel's proxy answers liveness on."""
    return f'calipso-proxy-{channel_id}'


def to_resource(channel, token=None):
    """A channel as the CORD/XOS monitoring channel resource: what every
    answer of the API shows. ``ceilometer_url`` stays empty until the
    proxy answered (CORD's tenant apps poll until it is set)."""
    tenants = list(channel.get('tenant_list') or [])
    running = channel.get('state') == RUNNING
    resource = {
        'id': channel['id'],
        'humanReadableName': channel.get('name'),
        'name': channel.get('name'),
        'ceilometer_url': (channel.get('proxy_url') or '') if running
        else '',
        'tenant_list_str': ','.join(tenants),
        'tenant_list': tenants,
        'creator': channel.get('creator'),
        'state': channel.get('state'),
        'created_at': channel.get('created_at'),
    }
    if token is not None:
        resource['token'] = token
    return resource


# --- the proxy's config file -------------------------------------------------


def _ini_value(value):
    if isinstance(value, bool):
        text = 'true' if value else 'false'
    elif isinstance(value, (list, tuple)):
        text = ','.join(str(v) for v in value)
    else:
        text = str(value)
    if '\n' in text or '\r' in text:
        raise ValueError('a configuration value contains a line break')
    # oslo.config substitutes $name: a literal $ is $$.
    return text.replace('$', '$$')


def _set_values(conf, group, options):
    section = conf[group]
    values = {}
    for opt in options:
        value = getattr(section, opt.dest, None)
        if value is not None and value != opt.default:
            values[opt.dest] = value
    return values


def service_credentials(conf):
    """The ``[service_credentials]`` options set in the controller's
    configuration ({name: value}), auth plugin options included."""
    group = opts.SERVICE_CREDENTIALS
    source = conf[group].auth_section or group
    if source != group:
        ks_loading.register_auth_conf_options(conf, source)
    values = _set_values(conf, group, ks_loading.get_session_conf_options())
    auth_type = conf[source].auth_type
    if auth_type:
        plugin_options = ks_loading.get_auth_plugin_conf_options(auth_type)
        conf.register_opts(plugin_options, group=source)
        values['auth_type'] = auth_type
        values.update(_set_values(conf, source, plugin_options))
    return values


def render_config(conf, channel):
    """The text of the config file of ``channel``'s proxy."""
    controller = conf.controller
    proxy = {
        'channel_id': channel['id'],
        'authorized_projects': channel['tenant_list'],
        'backend_url': controller.backend_url,
        'token_hash': channel['token_hash'],
        'host': controller.proxy_host,
        'port': channel['port'],
        'public_url': proxy_url(conf, channel['port']),
        'liveness_socket': liveness_socket(channel['id']),
    }
    if conf.api.scope_signing_key:
        proxy['scope_signature'] = project_scope.sign(
            conf.api.scope_signing_key, channel['tenant_list'])
    lines = [f'# Written by calipso-proxy-controller for channel '
             f'{channel["id"]}; rewritten at every change.', '[proxy]']
    lines += [f'{name} = {_ini_value(value)}'
              for name, value in proxy.items()]
    lines += ['', f'[{opts.SERVICE_CREDENTIALS}]']
    lines += [f'{name} = {_ini_value(value)}' for name, value in
              sorted(service_credentials(conf).items())]
    return '\n'.join(lines) + '\n'


def read_config(conf, channel_id):
    try:
        with open(launcher_base.config_path(conf, channel_id)) as handle:
            return handle.read()
    except OSError:
        return None


def write_config(conf, channel):
    """Write the proxy's config file (mode 0600: it holds the service
    credentials) when it differs; return its path."""
    path = launcher_base.config_path(conf, channel['id'])
    text = render_config(conf, channel)
    if read_config(conf, channel['id']) == text:
        return path
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    temporary = path + '.tmp'
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'w') as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(text)
    os.replace(temporary, path)
    return path


# --- ports and the lock ------------------------------------------------------


def port_is_free(host, port):
    """Whether ``port`` can be bound on ``host`` now (as gunicorn binds:
    with SO_REUSEADDR, so a closed socket in TIME_WAIT does not count)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host.strip('[]'), port, type=socket.SOCK_STREAM,
            flags=socket.AI_PASSIVE)[0]
    except socket.gaierror:
        return False
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError:
            return False
    return True


def allocate_port(conf, used):
    """The lowest port of [proxy_port_min, proxy_port_max] neither in
    ``used`` nor bound on proxy_host."""
    controller = conf.controller
    for port in range(controller.proxy_port_min,
                      controller.proxy_port_max + 1):
        if port not in used and port_is_free(controller.proxy_host, port):
            return port
    raise NoFreePort(f'No free proxy port in [{controller.proxy_port_min}, '
                     f'{controller.proxy_port_max}]')


class ControllerLock:
    """Serializes channel and proxy changes between the API workers and
    the reconciler. A POSIX lock (lockf) on a file of proxy_state_dir,
    because gunicorn forks workers at any time and a forked child would
    keep holding a flock; plus a thread lock, as POSIX locks do not
    exclude the threads of one process. One controller per store."""

    def __init__(self, conf):
        self.path = os.path.join(launcher_base.state_dir(conf), LOCK_FILE)
        self._thread_lock = threading.Lock()

    @contextlib.contextmanager
    def __call__(self):
        with self._thread_lock:
            os.makedirs(os.path.dirname(self.path), mode=0o700,
                        exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                         0o600)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)


# --- the service -------------------------------------------------------------


class ChannelService:
    """Channels in the store and their proxies through ``launcher``;
    ``storage`` is a callable returning the store."""

    def __init__(self, conf, launcher, storage, lock=None):
        self.conf = conf
        self.launcher = launcher
        self.storage = storage
        self.lock = lock or ControllerLock(conf)

    def list(self):
        return self.storage().get_channels()

    def find(self, channel_id):
        found = self.storage().get_channels([channel_id])
        return found[0] if found else None

    def get(self, channel_id):
        channel = self.find(channel_id)
        if channel is None:
            raise errors.NotFoundError(f'Channel {channel_id} not found')
        return channel

    def create(self, name, tenant_list, creator=None):
        """Store a new channel; (channel, token). Its proxy is started by
        the reconciler."""
        # Hex, not URL-safe base64: a token that began with '-' would be
        # taken for an option by command-line clients (ceilometer --os-token).
        token = secrets.token_hex(TOKEN_BYTES)
        channel_id = str(uuid.uuid4())
        with self.lock():
            store = self.storage()
            used = {c.get('port') for c in store.get_channels()}
            channel = {
                'id': channel_id,
                'name': name,
                'tenant_list': list(tenant_list),
                'creator': creator,
                'created_at': datetime.datetime.now(
                    datetime.UTC).isoformat(),
                'state': STARTING,
                'port': allocate_port(self.conf, used),
                'proxy_url': '',
                'token_hash': tenant_auth.token_hash(token),
            }
            store.create_channel(channel)
        LOG.info('Channel %s created (%r, projects %s, port %s, by %s)',
                 channel_id, name, ','.join(tenant_list), channel['port'],
                 creator)
        return self.get(channel_id), token

    def update(self, channel_id, changes):
        """Apply ``changes`` (from parse_changes). A new tenant list
        rewrites the config and stops the proxy at once (no tenant keeps
        a project it lost); the reconciler starts it again."""
        with self.lock():
            current = self.get(channel_id)
            restart = ('tenant_list' in changes and
                       changes['tenant_list'] != current['tenant_list'])
            if restart:
                changes = dict(changes, state=STARTING, proxy_url='')
            channel = self.storage().update_channel(channel_id, changes)
            if channel is None:
                raise errors.NotFoundError(f'Channel {channel_id} not '
                                           'found')
            if restart:
                write_config(self.conf, channel)
                self.launcher.stop(channel_id)
                LOG.info('Channel %s: projects now %s, proxy stopped to '
                         'be restarted with them', channel_id,
                         ','.join(channel['tenant_list']))
        return channel

    def delete(self, channel_id):
        """Stop the proxy (its token is refused from then on), then
        forget the channel."""
        with self.lock():
            self.get(channel_id)
            stopped = self.launcher.stop(channel_id)
            self.storage().delete_channel(channel_id)
            self._remove_files(channel_id)
        LOG.info('Channel %s deleted (proxy %s)', channel_id,
                 'stopped' if stopped else 'was not running')

    def _remove_files(self, channel_id):
        shutil.rmtree(launcher_base.channel_dir(self.conf, channel_id),
                      ignore_errors=True)

    # --- for the reconciler -----------------------------------------------

    def _launch(self, channel, action, reason):
        channel = self._bindable(channel)
        if channel.get('state') != STARTING or channel.get('proxy_url'):
            self.storage().update_channel(
                channel['id'], {'state': STARTING, 'proxy_url': ''})
        path = write_config(self.conf, channel)
        info = self.launcher.start(channel, path, channel['port'])
        LOG.info('%s the proxy of channel %s on port %s (pid %s): %s',
                 action, channel['id'], channel['port'], info.get('pid'),
                 reason)
        return info

    def _bindable(self, channel):
        """``channel`` with a port its proxy can bind: when another
        program holds its port while no proxy of it runs, it moves to a
        free one of the range (its URL changes: logged). Without a free
        port it stays where it is (the start fails and is retried)."""
        host = self.conf.controller.proxy_host
        if port_is_free(host, channel['port']):
            return channel
        store = self.storage()
        used = {c.get('port') for c in store.get_channels()}
        try:
            port = allocate_port(self.conf, used)
        except NoFreePort as exc:
            LOG.error('Channel %s: port %s is taken by another program '
                      'and no other is free (%s); its proxy cannot start',
                      channel['id'], channel['port'], exc)
            return channel
        LOG.warning('Channel %s: port %s is taken by another program; '
                    'its proxy moves to port %s (the channel\'s URL '
                    'changes)', channel['id'], channel['port'], port)
        return store.update_channel(channel['id'], {
            'port': port, 'state': STARTING, 'proxy_url': ''})

    def start_proxy(self, channel_id, reason):
        """Start the proxy of a stored channel; its info, or None when
        the channel is gone."""
        with self.lock():
            channel = self.find(channel_id)
            if channel is None:
                return None
            return self._launch(channel, 'Started', reason)

    def restart_proxy(self, channel_id, reason):
        with self.lock():
            channel = self.find(channel_id)
            if channel is None:
                return None
            self.launcher.stop(channel_id)
            return self._launch(channel, 'Restarted', reason)

    def mark_running(self, channel_id):
        """Record that the proxy answered: state running, proxy_url set
        (unless it was stopped or the channel deleted meanwhile)."""
        with self.lock():
            channel = self.find(channel_id)
            if channel is None or not self.launcher.alive(channel_id):
                return None
            url = proxy_url(self.conf, channel['port'])
            if (channel.get('state') == RUNNING and
                    channel.get('proxy_url') == url):
                return channel
            channel = self.storage().update_channel(
                channel_id, {'state': RUNNING, 'proxy_url': url})
        LOG.info('Proxy of channel %s answers at %s', channel_id, url)
        return channel

    def stop_orphan(self, channel_id):
        """Stop the proxy of a channel that is no longer stored."""
        with self.lock():
            if self.find(channel_id) is not None:
                return False
            self.launcher.stop(channel_id)
            self._remove_files(channel_id)
        LOG.info('Stopped the proxy of channel %s: the channel is no '
                 'longer stored', channel_id)
        return True
