"""The daemons as processes of their own (agent, collector, API, proxy) with
the configuration the tests give them."""

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid

import requests
import yaml

from calipso_agent import storage
from calipso_proxy.controller import channels
from calipso_proxy.proxy import tenant_auth
from tests.helpers.basics import REPO, free_port, make_conf, wait_until
from tests.helpers.bus import RABBIT_URL, TELEMETRY_SECRET
from tests.helpers.fixtures import CEILOMETER_METERS

# A [keystone_authtoken] service user: enough for the middleware to load
# (it contacts Keystone only to validate a token).
KEYSTONE_SERVICE_USER = (
    'auth_type = password\nauth_url = http://127.0.0.1:5000/identity\n'
    'username = calipso\npassword = secret\nproject_name = service\n'
    'user_domain_name = Default\nproject_domain_name = Default\n')


def daemon_defaults(url):
    """The [DEFAULT] section every daemon run by the tests gets."""
    return (f'[DEFAULT]\n'
            f'transport_url = {url}\n'
            f'use_stderr = true\n'
            f'graceful_shutdown_timeout = 10\n')


class AgentProcess:
    """calipso-agent-notification run as ``python -m``, in its own session
    (process group), with a generated config file and pipeline.yaml in
    ``workdir``. Its log (oslo.log, on stderr) goes to ``stderr_path``;
    restarts append to it, ``log()`` reads the current run's part.
    """

    READY = 'listening on exchanges'
    MODULE = 'calipso_agent.cmd.agent_notification'

    def __init__(self, workdir, topic, pipeline, exchanges=('nova',
                 'neutron'), batch_size=100, batch_timeout=1,
                 backoff=(0.2, 2), url=RABBIT_URL, extra_config='',
                 batched_consumer=True, workers=1):
        self.workdir = str(workdir)
        self.topic = topic
        self.config_file = os.path.join(self.workdir, 'calipso.conf')
        self.pipeline_file = os.path.join(self.workdir, 'pipeline.yaml')
        self.meters_dir = os.path.join(self.workdir, 'meters.d')
        self.stderr_path = os.path.join(self.workdir, 'agent.stderr.log')
        self.stdout_path = os.path.join(self.workdir, 'agent.stdout.log')
        os.makedirs(self.meters_dir, exist_ok=True)
        with open(self.pipeline_file, 'w') as handle:
            yaml.safe_dump(pipeline, handle)
        with open(self.config_file, 'w') as handle:
            handle.write(
                daemon_defaults(url) +
                f'state_path = {self.workdir}\n'
                f'[notification]\n'
                f'workers = {workers}\n'
                f'batch_size = {batch_size}\n'
                f'batch_timeout = {batch_timeout}\n'
                f'exchanges = {",".join(exchanges)}\n'
                f'topics = {topic}\n'
                f'pipeline_cfg_file = {self.pipeline_file}\n'
                f'requeue_backoff_initial = {backoff[0]}\n'
                f'requeue_backoff_max = {backoff[1]}\n'
                f'batched_amqp_consumer = {batched_consumer}\n'
                f'dead_letter_queue = {topic}.dead\n'
                f'[meter]\n'
                f'meter_definitions_dirs = {self.meters_dir}\n'
                f'meter_definitions_paths = {CEILOMETER_METERS}\n'
                f'[publisher]\n'
                f'telemetry_secret = {TELEMETRY_SECRET}\n'
                f'{extra_config}')
        self.process = None
        self._log_offset = 0

    def start(self, wait_ready=True, timeout=30):
        assert self.process is None or self.process.poll() is not None
        self._log_offset = (os.path.getsize(self.stderr_path)
                            if os.path.exists(self.stderr_path) else 0)
        with open(self.stderr_path, 'ab') as err, \
                open(self.stdout_path, 'ab') as out:
            self.process = subprocess.Popen(
                [sys.executable, '-m', self.MODULE,
                 '--config-file', self.config_file],
                cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                start_new_session=True)
        if wait_ready:
            self.wait_ready(timeout)
        return self

    @property
    def pid(self):
        return self.process.pid

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def log(self, all_runs=False):
        try:
            with open(self.stderr_path, 'rb') as handle:
                if not all_runs:
                    handle.seek(self._log_offset)
                return handle.read().decode('utf-8', 'replace')
        except FileNotFoundError:
            return ''

    def wait_for_log(self, text, timeout):
        """Whether ``text`` appears in this run's log within ``timeout``
        seconds (False at once if the agent died)."""
        return wait_until(lambda: text in self.log() or not self.alive(),
                          timeout) and text in self.log()

    def wait_ready(self, timeout=30):
        if not self.wait_for_log(self.READY, timeout):
            log = self.log()
            self.stop()
            raise AssertionError(
                f'agent not listening after {timeout}s (exit code '
                f'{self.process.returncode}); log:\n{log[-4000:]}')

    def _signal_group(self, signum):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)

    def kill(self):
        """SIGKILL the whole process group (master and workers)."""
        if self.process is None:
            return None
        self._signal_group(signal.SIGKILL)
        return self.process.wait(10)

    def stop(self, timeout=15):
        """SIGTERM, then SIGKILL what is left of the group; the exit code
        of the master (None if never started)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # Workers outliving the master, or a master ignoring SIGTERM.
        self._signal_group(signal.SIGKILL)
        try:
            return self.process.wait(10)
        except subprocess.TimeoutExpired:
            return None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop()


class CollectorProcess(AgentProcess):
    """calipso-collector run as ``python -m`` in its own session, consuming
    ``topic`` (its [publisher_notifier] metering_topic) into ``database``;
    same life cycle and log handling as AgentProcess."""

    READY = 'listening on topic'
    MODULE = 'calipso_agent.cmd.collector'

    def __init__(self, workdir, topic, database, batch_size=50,
                 batch_timeout=1, backoff=(0.2, 1), url=RABBIT_URL,
                 secret=TELEMETRY_SECRET, workers=1, extra_config=''):
        self.workdir = str(workdir)
        self.topic = topic
        self.database = database
        os.makedirs(self.workdir, exist_ok=True)
        self.config_file = os.path.join(self.workdir, 'collector.conf')
        self.stderr_path = os.path.join(self.workdir,
                                        'collector.stderr.log')
        self.stdout_path = os.path.join(self.workdir,
                                        'collector.stdout.log')
        with open(self.config_file, 'w') as handle:
            handle.write(
                daemon_defaults(url) +
                f'[collector]\n'
                f'requeue_backoff_initial = {backoff[0]}\n'
                f'requeue_backoff_max = {backoff[1]}\n'
                f'workers = {workers}\n'
                f'batch_size = {batch_size}\n'
                f'batch_timeout = {batch_timeout}\n'
                f'dead_letter_queue = {topic}.dead\n'
                f'[publisher_notifier]\n'
                f'metering_topic = {topic}\n'
                f'[publisher]\n'
                f'telemetry_secret = {secret}\n'
                f'[database]\n'
                f'connection = {database}\n'
                f'retry_interval = 0.5\n'
                f'{extra_config}')
        self.process = None
        self._log_offset = 0


def api_command():
    """calipso-api of this environment: its console script, else the
    module."""
    script = os.path.join(os.path.dirname(sys.executable), 'calipso-api')
    if os.path.exists(script):
        return [script]
    return [sys.executable, '-m', 'calipso_agent.cmd.api']


def keystone_authtoken_config(keystone, user=None):
    """``[keystone_authtoken]`` of a service validating tokens with the
    test Keystone (tests/helpers) as ``user`` (default: its service
    user ``calipso``); no memcached (an in-process token cache)."""
    user = user or keystone.service_user
    return (f'[keystone_authtoken]\n'
            f'www_authenticate_uri = {keystone.url}\n'
            f'auth_url = {keystone.url}\n'
            f'auth_type = password\n'
            f'username = {user.name}\n'
            f'password = {user.password}\n'
            f'project_name = {user.project_name}\n'
            f'user_domain_name = Default\n'
            f'project_domain_name = Default\n'
            # The fixture's catalog has only a public identity endpoint.
            f'interface = public\n')


class APIServer:
    """calipso-api (gunicorn) in a session of its own on a free loopback
    port, with a generated calipso.conf in ``workdir``; ``url`` is its
    base URL once ``start()`` saw /healthcheck answer. ``extra_config``
    is appended to the file (e.g. ``keystone_authtoken_config``)."""

    def __init__(self, workdir, database, auth_strategy='noauth',
                 workers=1, threads=4, extra_config=''):
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.port = free_port()
        self.url = f'http://127.0.0.1:{self.port}'
        self.config_file = os.path.join(self.workdir, 'calipso-api.conf')
        self.log_path = os.path.join(self.workdir, 'calipso-api.log')
        with open(self.config_file, 'w') as handle:
            handle.write(
                f'[DEFAULT]\nuse_stderr = true\n'
                f'[database]\nconnection = {database}\n'
                f'[api]\nhost = 127.0.0.1\nport = {self.port}\n'
                f'workers = {workers}\nthreads = {threads}\n'
                f'auth_strategy = {auth_strategy}\n'
                f'{extra_config}')
        self.process = None

    def running(self):
        return self.process is not None and self.process.poll() is None

    def start(self, timeout=30):
        import requests

        # A second server on the port would leave the first one behind.
        assert not self.running(), 'calipso-api is already started'
        with open(self.log_path, 'ab') as log:
            self.process = subprocess.Popen(
                api_command() + ['--config-file', self.config_file],
                cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True)
        deadline = time.monotonic() + timeout
        with requests.Session() as session:
            session.trust_env = False  # loopback, never through a proxy
            while True:
                with contextlib.suppress(requests.ConnectionError):
                    if session.get(f'{self.url}/healthcheck',
                                   timeout=2).status_code == 200:
                        return self
                if self.process.poll() is not None or (
                        time.monotonic() > deadline):
                    self.stop()
                    raise AssertionError(
                        f'calipso-api did not answer on {self.url}:\n'
                        f'{self.log()[-4000:]}')
                time.sleep(0.1)

    def log(self):
        try:
            with open(self.log_path, errors='replace') as handle:
                return handle.read()
        except FileNotFoundError:
            return ''

    def stop(self, timeout=15):
        """SIGTERM the group, SIGKILL what is left; the master's exit
        code (None if never started)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait(10)

    def __enter__(self):
        return self if self.running() else self.start()

    def __exit__(self, *exc_info):
        self.stop()


@contextlib.contextmanager
def keystone_api(keystone, workdir, samples):
    """The base URL of a calipso-api authenticating with the test Keystone
    over an SQLite store in ``workdir`` holding ``samples``."""
    database = f'sqlite:///{workdir}/calipso.sqlite'
    store = storage.get_connection(make_conf(database__connection=database))
    try:
        assert not store.record_samples(samples).rejected
    finally:
        store.close()
    with APIServer(workdir, database, auth_strategy='keystone',
                   extra_config=keystone_authtoken_config(keystone)) as api:
        yield api.url


CHANNEL_TOKEN = 'channel-token-of-the-tenant'


class ProxyServer:
    """calipso-proxy in a session of its own on a free loopback port, with
    the config file the controller would write (``options``: more
    ``[proxy]`` options; no ``credentials``: no token sent to the
    backend)."""

    def __init__(self, workdir, projects, backend_url, credentials,
                 **options):
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.port = free_port()
        self.url = f'http://127.0.0.1:{self.port}'
        self.config_file = os.path.join(self.workdir, 'proxy.conf')
        self.log_path = os.path.join(self.workdir, 'proxy.log')
        self.channel_id = f'channel-{uuid.uuid4()}'
        lines = ['[DEFAULT]', 'use_stderr = true', '[proxy]',
                 f'channel_id = {self.channel_id}',
                 'liveness_socket = '
                 f'{channels.liveness_socket(self.channel_id)}',
                 f'authorized_projects = {",".join(projects)}',
                 f'backend_url = {backend_url}',
                 f'token_hash = {tenant_auth.token_hash(CHANNEL_TOKEN)}',
                 'keystone_token_cache_time = 0',
                 'host = 127.0.0.1', f'port = {self.port}']
        lines += [f'{k} = {v}' for k, v in options.items()]
        lines += ['[service_credentials]']
        lines += [f'{k} = {v}' for k, v in credentials.items()]
        with open(self.config_file, 'w') as handle:
            handle.write('\n'.join(lines) + '\n')
        self.process = None

    def start(self, timeout=30):
        with open(self.log_path, 'ab') as log:
            self.process = subprocess.Popen(
                [sys.executable, '-m', 'calipso_proxy.cmd.proxy',
                 '--config-file', self.config_file], cwd=REPO,
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f'{self.url}/healthcheck',
                                timeout=2).status_code == 200:
                    return self
            if self.process.poll() is not None or (
                    time.monotonic() > deadline):
                self.stop()
                with open(self.log_path) as handle:
                    raise AssertionError(handle.read()[-4000:])
            time.sleep(0.1)

    def stop(self):
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def get(self, path, token=CHANNEL_TOKEN, **kwargs):
        headers = {'X-Auth-Token': token} if token else {}
        headers.update(kwargs.pop('headers', {}))
        return requests.get(self.url + path, headers=headers, timeout=30,
                            **kwargs)
