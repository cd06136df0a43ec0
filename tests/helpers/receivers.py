"""What publishers send to: a UDP socket and an HTTP server that collect
samples."""

import http.server
import json
import socket
import threading
import time

import msgpack


class UDPCollector:
    """A UDP socket on 127.0.0.1 collecting msgpack datagrams (what the
    udp:// publisher sends), in a background thread."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.sock.bind(('127.0.0.1', 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.url = f'udp://127.0.0.1:{self.port}'
        self.messages = []
        self.errors = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                self.messages.append(msgpack.unpackb(data, raw=False))
            except Exception as exc:
                self.errors.append(f'{type(exc).__name__}: {exc}')

    def close(self):
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


class SampleHTTPServer:
    """An HTTP server on 127.0.0.1:``port`` recording the JSON bodies
    POSTed to it (what the http:// publisher sends), answering 200 after
    ``delay`` seconds."""

    def __init__(self, port=0, delay=0):
        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                time.sleep(delay)
                length = int(self.headers.get('Content-Length') or 0)
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.send_header('Content-Length', '0')
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', port),
                                                      Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        daemon=True)
        self._thread.start()

    def samples(self):
        out = []
        for body in list(self.received):
            out.extend(body if isinstance(body, list) else [body])
        return out

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class HangingHTTPServer:
    """An HTTP server on 127.0.0.1 that accepts every POST and never
    answers (until closed): a dead target."""

    def __init__(self):
        stop = self.stop = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                stop.wait(600)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0),
                                                      Handler)
        self.server.daemon_threads = True
        self.url = f'http://127.0.0.1:{self.server.server_address[1]}/'
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        daemon=True)
        self._thread.start()

    def close(self):
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()
