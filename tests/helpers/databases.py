"""Databases of a test of its own: a private PostgreSQL server, a database on
the shared one."""

import contextlib
import os
import signal
import subprocess
import uuid

from tests.helpers.basics import free_port


class PrivatePostgres:
    """A PostgreSQL server of the test's own (never the shared one): a
    fresh cluster in a temporary directory, on a spare loopback port,
    run as the ``postgres`` user when the tests run as root (initdb
    refuses root). Superuser ``calipso``, trust authentication, database
    ``postgres``. ``cleanup()`` stops it and deletes the directory."""

    USER = 'calipso'

    def __init__(self):
        import pwd
        import tempfile

        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix='calipso-pg-')
        self.data = os.path.join(self.dir, 'data')
        self.logfile = os.path.join(self.dir, 'postgres.log')
        self.prefix = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam('postgres')
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
            self.prefix = ['runuser', '-u', 'postgres', '--']
        self.url = (f'postgresql+psycopg://{self.USER}@127.0.0.1:'
                    f'{self.port}/postgres')
        self._run('initdb', '-D', self.data, '-U', self.USER, '-A', 'trust',
                  '-E', 'UTF8', '--no-sync', '--no-instructions')

    def _run(self, *args, check=True):
        return subprocess.run(self.prefix + list(args), capture_output=True,
                              text=True, timeout=60, check=check,
                              stdin=subprocess.DEVNULL)

    def start(self):
        options = (f'-p {self.port} -c listen_addresses=127.0.0.1 '
                   f'-c unix_socket_directories={self.dir} -c fsync=off '
                   f'-c max_connections=50')
        result = self._run('pg_ctl', '-D', self.data, '-l', self.logfile,
                           '-o', options, '-w', '-t', '30', 'start',
                           check=False)
        if result.returncode != 0:
            raise AssertionError(f'private PostgreSQL did not start:\n'
                                 f'{result.stdout}{result.stderr}'
                                 f'{self.log()[-2000:]}')
        return self

    def stop(self, mode='immediate'):
        """pg_ctl stop; ``immediate`` is a crash: no checkpoint, clients
        cut off, recovery from the WAL at the next start."""
        return self._run('pg_ctl', '-D', self.data, '-m', mode, '-w',
                         '-t', '30', 'stop', check=False).returncode == 0

    def running(self):
        return self._run('pg_ctl', '-D', self.data, 'status',
                         check=False).returncode == 0

    def log(self):
        try:
            with open(self.logfile, errors='replace') as handle:
                return handle.read()
        except FileNotFoundError:
            return ''

    def _postmaster_pid(self):
        try:
            with open(os.path.join(self.data, 'postmaster.pid')) as handle:
                return int(handle.readline())
        except (FileNotFoundError, ValueError):
            return None

    def cleanup(self):
        import shutil

        if os.path.isdir(self.data) and self.running() and not self.stop():
            pid = self._postmaster_pid()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.cleanup()


SHARED_POSTGRESQL_URL = os.environ.get(
    'CALIPSO_TEST_SHARED_POSTGRESQL_URL',
    'postgresql://root@127.0.0.1:5432/postgres')


@contextlib.contextmanager
def shared_postgresql_database():
    """The SQLAlchemy URL of a database of the caller's own on the shared
    PostgreSQL server, created empty and dropped (WITH (FORCE)) at the
    end; ``None`` when the server does not answer."""
    import psycopg
    import sqlalchemy as sa

    server = sa.engine.make_url(SHARED_POSTGRESQL_URL)
    admin_url = server.set(drivername='postgresql').render_as_string(
        hide_password=False)
    name = f'calipso_test_{uuid.uuid4().hex}'
    try:
        with psycopg.connect(admin_url, autocommit=True,
                             connect_timeout=3) as admin:
            admin.execute(f'CREATE DATABASE {name}')
    except psycopg.OperationalError:
        yield None
        return
    try:
        yield server.set(drivername='postgresql+psycopg',
                         database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_url, autocommit=True,
                             connect_timeout=10) as admin:
            admin.execute(f'DROP DATABASE {name} WITH (FORCE)')
