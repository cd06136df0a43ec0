"""A real OpenStack Keystone for the tests, on a loopback port.

Keystone comes from PyPI into a virtualenv of its own
(``tools/install-keystone.sh``, run here when the venv is missing) and runs
under gunicorn on SQLite with fernet tokens, in a temporary directory that
holds its configuration, database, key repositories and log
(``keystone.log``). Once it answers, the admin creates over the REST API a
``service`` project with the ``calipso`` service user (``admin`` there),
the channel proxies' user ``calipso-proxy`` (roles ``service``, to
validate tenant tokens, and ``calipso_reader``, the API's read-only
``[api] multi_project_role``; no admin) and two tenants, ``project-a`` and
``project-b``, each with one ``member`` user. ``register_services`` adds
services and endpoints to its catalog (a fake cloud's, see
``openstack_cloud``).
"""

import dataclasses
import grp
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import requests
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
INSTALL_SCRIPT = os.path.join(REPO, 'tools', 'install-keystone.sh')
HOST = '127.0.0.1'
REGION = 'RegionOne'
READER_ROLE = 'calipso_reader'
DOMAIN = 'default'

# Run by the venv's python: every keystone-manage step in one process,
# which pays keystone's slow imports once instead of five times.
SETUP_SCRIPT = '''\
import sys

from keystone.cmd import cli

config, public_url, password, user, group = sys.argv[1:]
owner = ['--keystone-user', user, '--keystone-group', group]
steps = [
    ['db_sync'],
    ['fernet_setup', *owner],
    ['receipt_setup', *owner],
    ['credential_setup', *owner],
    ['bootstrap', '--bootstrap-password', password,
     '--bootstrap-username', 'admin', '--bootstrap-project-name', 'admin',
     '--bootstrap-role-name', 'admin', '--bootstrap-region-id', 'RegionOne',
     '--bootstrap-public-url', public_url],
]
for step in steps:
    cli.CONF.clear()
    cli.main(argv=['keystone-manage', '--config-file', config, *step])
open('setup-done', 'w').close()
'''

KEYSTONE_CONF = '''\
[DEFAULT]
log_file = {dir}/keystone.log

[database]
connection = sqlite:///{dir}/keystone.db
sqlite_synchronous = false

[identity]
password_hash_rounds = 4
max_password_length = 72

[token]
provider = fernet
expiration = {expiration}

[fernet_tokens]
key_repository = {dir}/fernet-keys

[fernet_receipts]
key_repository = {dir}/fernet-receipts

[credential]
key_repository = {dir}/credential-keys
'''

# The server's application: it imports keystone while SETUP_SCRIPT runs,
# and builds the application (keystone.wsgi.api) once that is done.
APP_MODULE = '''\
import os
import time

import keystone.server.backends
import keystone.server.flask.core

while not os.path.exists('setup-done'):
    time.sleep(0.05)

from keystone.wsgi.api import application
'''

# gunicorn reads ./gunicorn.conf.py: no command-line arguments, which
# keystone's oslo.config would otherwise try to parse as its own.
GUNICORN_CONF = '''\
bind = ['fd://{fd}']
wsgi_app = 'calipso_keystone_app:application'
workers = 1
threads = 8
timeout = 300
graceful_timeout = 2
control_socket_disable = True
accesslog = 'access.log'
'''

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class KeystoneError(RuntimeError):
    """Keystone could not be installed, started or provisioned."""


@dataclasses.dataclass(frozen=True)
class User:
    """A Keystone user and the project its tokens are scoped to."""

    name: str
    password: str
    project_name: str
    id: str = ''
    project_id: str = ''
    domain_id: str = DOMAIN


def venv_path():
    """The virtualenv Keystone runs from."""
    return os.environ.get('CALIPSO_TEST_KEYSTONE_VENV') or os.path.join(
        os.path.expanduser('~'), '.cache', 'calipso-test', 'keystone-venv')


def ensure_venv(venv=None):
    """Build the Keystone venv with tools/install-keystone.sh if missing."""
    venv = venv or venv_path()
    needed = [os.path.join(venv, 'bin', name)
              for name in ('python', 'keystone-manage', 'gunicorn')]
    needed.append(os.path.join(venv, '.calipso-keystone-stamp'))
    if all(os.path.exists(path) for path in needed):
        return venv
    env = dict(os.environ, CALIPSO_TEST_KEYSTONE_VENV=venv)
    result = subprocess.run(['bash', INSTALL_SCRIPT], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    if result.returncode:
        raise KeystoneError(
            f'{INSTALL_SCRIPT} failed ({result.returncode}):\n'
            + result.stdout[-4000:])
    return venv


class Keystone:
    """A Keystone server of its own: ``with Keystone() as keystone:``."""

    def __init__(self, token_expiration=3600, venv=None, start_timeout=120):
        self.token_expiration = token_expiration
        self.venv = venv
        self.start_timeout = start_timeout
        self.dir = None
        self.port = None
        self.url = None
        self.log_path = None
        self.admin = None
        self.service_user = None
        self.user_a = None
        self.user_b = None
        self.users = {}
        self.projects = {}
        self.roles = {}
        self.startup_seconds = None
        self._server = None
        self._setup = None
        self._admin_session = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def start(self):
        """Install if need be, configure, start and provision Keystone."""
        begin = time.monotonic()
        self.venv = ensure_venv(self.venv)
        self.dir = tempfile.mkdtemp(prefix='calipso-keystone-')
        self.log_path = os.path.join(self.dir, 'keystone.log')
        try:
            self._start(time.monotonic() + self.start_timeout)
            self._provision()
        except Exception as exc:
            tail = self.log_tail()
            self.stop()
            raise KeystoneError(
                f'Keystone did not start: {exc}\n'
                f'--- last lines of keystone.log ---\n{tail}') from exc
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - begin
        return self

    def _start(self, deadline):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.bind((HOST, 0))
            listener.listen(128)
            self.port = listener.getsockname()[1]
            self.url = f'http://{HOST}:{self.port}/v3'
            self._write_config(listener.fileno())
            self.admin = User('admin', secrets.token_hex(12), 'admin')
            env = self._child_env()
            with open(self.log_path, 'ab') as log:
                # The server imports keystone while the database is made.
                self._server = subprocess.Popen(
                    [self._bin('gunicorn')], cwd=self.dir, env=env,
                    stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, pass_fds=(listener.fileno(),),
                    start_new_session=True)
                self._setup = subprocess.Popen(
                    [self._bin('python'), 'setup_keystone.py',
                     os.path.join(self.dir, 'keystone.conf'), self.url,
                     self.admin.password,
                     pwd.getpwuid(os.getuid()).pw_name,
                     grp.getgrgid(os.getgid()).gr_name],
                    cwd=self.dir, env=env, stdin=subprocess.DEVNULL,
                    stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True)
        finally:
            listener.close()
        try:
            code = self._setup.wait(max(deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            raise KeystoneError('keystone-manage steps timed out')
        if code:
            raise KeystoneError(f'keystone-manage steps exited {code}')
        self._wait_for_api(deadline)

    def _write_config(self, fd):
        files = {
            'keystone.conf': KEYSTONE_CONF.format(
                dir=self.dir, expiration=int(self.token_expiration)),
            'gunicorn.conf.py': GUNICORN_CONF.format(fd=fd),
            'setup_keystone.py': SETUP_SCRIPT,
            'calipso_keystone_app.py': APP_MODULE,
        }
        for name, text in files.items():
            with open(os.path.join(self.dir, name), 'w') as f:
                f.write(text)

    def _child_env(self):
        env = {key: value for key, value in os.environ.items()
               if key not in ('PYTHONPATH', 'PYTHONHOME', 'VIRTUAL_ENV')
               and not key.startswith('OS_')}
        env['OS_KEYSTONE_CONFIG_DIR'] = self.dir
        env['PYTHONWARNINGS'] = 'ignore'
        return env

    def _bin(self, name):
        return os.path.join(self.venv, 'bin', name)

    def _wait_for_api(self, deadline):
        while True:
            if self._server.poll() is not None:
                raise KeystoneError(
                    f'gunicorn exited {self._server.returncode}')
            try:
                with _NO_PROXY.open(self.url, timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise KeystoneError(f'{self.url} did not answer in time')
            time.sleep(0.1)

    def _provision(self):
        self._admin_session = self.session(self.admin)
        self.roles = {role['name']: role['id']
                      for role in self._get('/roles')['roles']}
        for name in ('admin', 'member', 'reader', 'service', READER_ROLE):
            if name not in self.roles:
                self.roles[name] = self._post(
                    '/roles', {'role': {'name': name}})['role']['id']
        self.projects = {project['name']: project['id']
                         for project in self._get('/projects')['projects']}
        self.admin = self._make_user(self.admin, create=False)
        self.service_user = self._make_user(
            User('calipso', secrets.token_hex(12), 'service'), role='admin')
        self.proxy_user = self._make_user(
            User('calipso-proxy', secrets.token_hex(12), 'service'),
            role=('service', READER_ROLE))
        self.user_a = self._make_user(
            User('user-a', secrets.token_hex(12), 'project-a'))
        self.user_b = self._make_user(
            User('user-b', secrets.token_hex(12), 'project-b'))

    def _make_user(self, user, role='member', create=True):
        """``role``: a role name or a tuple of them."""
        if user.project_name not in self.projects:
            self.projects[user.project_name] = self._post('/projects', {
                'project': {'name': user.project_name, 'domain_id': DOMAIN},
            })['project']['id']
        project_id = self.projects[user.project_name]
        if create:
            user_id = self._post('/users', {'user': {
                'name': user.name, 'password': user.password,
                'domain_id': DOMAIN, 'default_project_id': project_id,
            }})['user']['id']
            for name in (role,) if isinstance(role, str) else role:
                self._admin_session.put(
                    f'{self.url}/projects/{project_id}/users/{user_id}/'
                    f'roles/{self.roles[name]}')
        else:
            users = self._get(f'/users?name={user.name}')['users']
            user_id = users[0]['id']
        user = dataclasses.replace(user, id=user_id, project_id=project_id)
        self.users[user.name] = user
        return user

    def revoke_tokens(self, user):
        """Invalidate every token ``user`` holds (Keystone revokes them
        when the user is disabled; the user is enabled again at once)."""
        user = self._user(user)
        for enabled in (False, True):
            self._admin_session.patch(f'{self.url}/users/{user.id}',
                                      json={'user': {'enabled': enabled}})

    def register_services(self, region, services,
                          interfaces=('public', 'internal')):
        """Put services in the catalog, in ``region`` (created when
        missing): ``services`` maps a service type to (name, URL); each
        gets an endpoint of that URL per interface. A name None adds the
        endpoints to the existing service of that type (``identity``:
        Keystone's own, with ``self.url``). Returns a
        ``Registration`` (``remove()`` deletes them, and the region if it
        was made here)."""
        existing = {r['id'] for r in self._get('/regions')['regions']}
        made_region = region not in existing
        if made_region:
            self._post('/regions', {'region': {'id': region}})
        registration = Registration(self, region if made_region else None)
        for service_type, (name, url) in services.items():
            known = self._get(f'/services?type={service_type}')['services']
            if name is None and known:
                # An endpoint of the existing service (Keystone's own).
                service_id = known[0]['id']
            else:
                service_id = self._post('/services', {'service': {
                    'type': service_type, 'name': name,
                    'enabled': True}})['service']['id']
                registration.service_ids.append(service_id)
            for interface in interfaces:
                endpoint = self._post('/endpoints', {'endpoint': {
                    'service_id': service_id, 'interface': interface,
                    'region_id': region, 'url': url, 'enabled': True}})
                registration.endpoint_ids.append(
                    endpoint['endpoint']['id'])
        return registration

    def _delete(self, path):
        self._admin_session.delete(self.url + path, raise_exc=False)

    def _get(self, path):
        return self._admin_session.get(self.url + path).json()

    def _post(self, path, body):
        return self._admin_session.post(self.url + path, json=body).json()

    def stop(self):
        """Kill the server's process group and remove the directory."""
        # SIGINT is gunicorn's quick shutdown; SIGTERM waits for clients.
        for process, signum in ((self._setup, signal.SIGTERM),
                                (self._server, signal.SIGINT)):
            if process is not None:
                _kill_group(process, signum)
        self._setup = self._server = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def token_validations(self):
        """How many token validations (GET /v3/auth/tokens) Keystone
        answered so far, from its server's access log."""
        try:
            with open(os.path.join(self.dir, 'access.log'),
                      errors='replace') as f:
                return sum('"GET /v3/auth/tokens ' in line for line in f)
        except (OSError, TypeError):
            return 0

    def log_tail(self, lines=40):
        """The last lines of keystone.log."""
        try:
            with open(self.log_path, errors='replace') as f:
                return ''.join(f.readlines()[-lines:])
        except (OSError, TypeError):
            return ''

    def _user(self, user):
        return self.users[user] if isinstance(user, str) else user

    def auth(self, user):
        """A keystoneauth1 v3 Password plugin, scoped to user's project."""
        user = self._user(user)
        return v3.Password(
            auth_url=self.url, username=user.name, password=user.password,
            user_domain_id=user.domain_id, project_name=user.project_name,
            project_domain_id=DOMAIN)

    def session(self, user):
        """A keystoneauth1 Session authenticating as user (or a name)."""
        direct = requests.Session()
        direct.trust_env = False  # never through an HTTP proxy
        return ks_session.Session(auth=self.auth(user), session=direct)

    def token(self, user):
        """A new project-scoped token of user (a User or a user name)."""
        return self.session(user).get_token()

    def validate(self, token):
        """The token's body as the admin sees it; None if Keystone says 404.

        Uses a fresh admin token every time, so it works across the
        expiry of short-lived tokens.
        """
        resp = self.session(self.admin).get(
            f'{self.url}/auth/tokens', headers={'X-Subject-Token': token},
            raise_exc=False)
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        return resp.json()['token']


@dataclasses.dataclass
class Registration:
    """Services and endpoints a test put in the catalog."""

    keystone: Keystone
    region: str = None
    service_ids: list = dataclasses.field(default_factory=list)
    endpoint_ids: list = dataclasses.field(default_factory=list)

    def remove(self):
        for endpoint_id in self.endpoint_ids:
            self.keystone._delete(f'/endpoints/{endpoint_id}')
        for service_id in self.service_ids:
            self.keystone._delete(f'/services/{service_id}')
        if self.region:
            self.keystone._delete(f'/regions/{self.region}')
        self.endpoint_ids, self.service_ids = [], []


def _kill_group(process, signum, timeout=10):
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
