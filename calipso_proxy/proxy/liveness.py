"""Liveness of a proxy, answered by its gunicorn arbiter.

The proxy's /healthcheck is answered by a worker thread, behind every
request already queued: a proxy flooded with requests is slow to answer
it although it works. The controller asks this instead: the arbiter (the
master process, which serves no request) listens on an abstract Unix
socket (Linux; ``[proxy] liveness_socket`` names it) and answers 200 as
long as one of its workers has shown a sign of life (gunicorn's
heartbeat) within the worker timeout, after which gunicorn itself
replaces a stuck worker. A dead proxy has no such socket.
"""

import logging
import socket
import threading
import time

LOG = logging.getLogger(__name__)

REQUEST = b'GET /healthcheck HTTP/1.0\r\n\r\n'
ALIVE = b'HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nOK'
NOT_ALIVE = b'HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n'


def address(name):
    """The abstract socket address of ``name``."""
    return '\0' + name


class LivenessListener:
    """A daemon thread of the arbiter answering on ``name``."""

    def __init__(self, name, arbiter):
        self.name = name
        self.arbiter = arbiter
        self.sock = None

    def alive(self):
        timeout = self.arbiter.timeout
        for worker in list(self.arbiter.WORKERS.values()):
            try:
                if (not timeout or time.monotonic()
                        - worker.tmp.last_update() <= timeout):
                    return True
            except (OSError, ValueError):
                continue
        return False

    def start(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(address(self.name))
        self.sock.listen(16)
        threading.Thread(target=self._serve, daemon=True,
                         name='calipso-liveness').start()
        LOG.info('Liveness answered on @%s', self.name)

    def _serve(self):
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            with connection:
                try:
                    connection.settimeout(1)
                    connection.recv(1024)
                    connection.sendall(ALIVE if self.alive() else NOT_ALIVE)
                except OSError:
                    pass

    def close(self):
        """Close the socket (in a forked worker: only the arbiter keeps
        it)."""
        if self.sock is not None:
            self.sock.close()


def check(name, timeout):
    """Whether the proxy listening on ``name`` says it is alive."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(address(name))
            sock.sendall(REQUEST)
            return sock.recv(64).startswith(b'HTTP/1.0 200')
    except OSError:
        return False
