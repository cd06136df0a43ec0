import base64
import http.server
import json
import socket
import threading
import time
import urllib.parse

import pytest

from calipso_agent import sample as sample_mod
from calipso_agent.publisher import base
from calipso_agent.publisher import http as http_pub
from tests.helpers import basics
from tests.helpers.basics import make_sample

GAUGE = dict(name='memory.usage', type=sample_mod.TYPE_GAUGE, unit='MB')


@pytest.fixture(autouse=True)
def no_proxy_no_backoff(monkeypatch):
    for name in ('http_proxy', 'https_proxy', 'all_proxy', 'HTTP_PROXY',
                 'HTTPS_PROXY', 'ALL_PROXY'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(http_pub, 'BACKOFF_FACTOR', 0)


@pytest.fixture
def conf():
    return basics.make_conf()


class Receiver(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(('127.0.0.1', 0), Handler)
        self.statuses = []
        self.delay = 0
        self.received = []
        self.lock = threading.Lock()

    @property
    def url(self):
        return f'http://127.0.0.1:{self.server_address[1]}'


class Handler(http.server.BaseHTTPRequestHandler):

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers['Content-Length']))
        with self.server.lock:
            self.server.received.append((self.path, self.headers, body))
            status = (self.server.statuses.pop(0) if self.server.statuses
                      else 200)
        time.sleep(self.server.delay)
        self.send_response(status)
        if status in (301, 302, 307):
            self.send_header('Location', '/elsewhere')
        self.send_header('Content-Length', '0')
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = Receiver()
    thread = threading.Thread(target=srv.serve_forever, args=(0.01,),
                              daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def make(conf, url):
    return http_pub.HttpPublisher(conf, urllib.parse.urlparse(url))


@pytest.mark.parametrize('scheme', ['http', 'https'])
def test_entry_point(conf, scheme):
    pub = basics.load_publisher(conf, f'{scheme}://127.0.0.1:9/')
    assert isinstance(pub, http_pub.HttpPublisher)
    assert pub.target == f'{scheme}://127.0.0.1:9/'


def test_batch_is_one_post(conf, server):
    pub = make(conf, f'{server.url}/samples')
    samples = [make_sample(i, volume=512 + i, **GAUGE) for i in range(3)]
    pub.publish_samples(samples)
    pub.close()
    assert len(server.received) == 1
    path, headers, body = server.received[0]
    assert path == '/samples'
    assert headers['Content-Type'] == 'application/json'
    assert json.loads(body) == [s.as_dict() for s in samples]


def test_no_batch_is_one_post_per_sample(conf, server):
    pub = make(conf, f'{server.url}/samples?batch=false')
    samples = [make_sample(i, volume=512 + i, **GAUGE) for i in range(3)]
    pub.publish_samples(samples)
    pub.close()
    assert [json.loads(body) for _, _, body in server.received] == [
        s.as_dict() for s in samples]


def test_empty_batch_posts_nothing(conf, server):
    pub = make(conf, server.url)
    pub.publish_samples([])
    assert server.received == []


def test_options_are_stripped_other_query_kept(conf, server):
    pub = make(conf, f'{server.url}/p?timeout=2.5&max_retries=0&q=foo'
                     f'&verify_ssl=false&batch=true&q=bar&empty=')
    assert pub.target == f'{server.url}/p?q=foo&q=bar&empty='
    assert (pub.timeout, pub.max_retries, pub.verify_ssl, pub.batch) == (
        2.5, 0, False, True)
    pub.publish_samples([make_sample()])
    assert server.received[0][0] == '/p?q=foo&q=bar&empty='


def test_defaults(conf):
    pub = make(conf, 'https://127.0.0.1:9/')
    assert (pub.timeout, pub.max_retries, pub.verify_ssl, pub.batch) == (
        5.0, 2, True, True)


def test_ca_bundle_path(conf, tmp_path):
    ca = tmp_path / 'ca.pem'
    ca.write_text('not used')
    pub = make(conf, f'https://127.0.0.1:9/?verify_ssl={ca}')
    assert pub.verify_ssl == str(ca)


def test_basic_auth_from_url(conf, server):
    port = server.server_address[1]
    pub = make(conf, f'http://user:p%40ss@127.0.0.1:{port}/x')
    assert pub.target == f'http://127.0.0.1:{port}/x'
    pub.publish_samples([make_sample()])
    auth = server.received[0][1]['Authorization']
    assert base64.b64decode(auth.split()[1]) == b'user:p@ss'


@pytest.mark.parametrize('status', [200, 201, 202, 204])
def test_2xx_is_success(conf, server, status):
    server.statuses = [status]
    make(conf, server.url).publish_samples([make_sample()])
    assert len(server.received) == 1


@pytest.mark.parametrize('status', [400, 401, 404, 413])
def test_client_error_is_not_retried(conf, server, status):
    server.statuses = [status]
    pub = make(conf, server.url)
    with pytest.raises(base.PublisherError, match=str(status)):
        pub.publish_samples([make_sample()])
    assert len(server.received) == 1


def test_redirect_is_not_followed(conf, server):
    server.statuses = [302]
    with pytest.raises(base.PublisherError, match='302'):
        make(conf, server.url).publish_samples([make_sample()])
    assert [path for path, _, _ in server.received] == ['/']


def test_server_errors_are_retried_then_succeed(conf, server):
    server.statuses = [503, 500]
    make(conf, server.url).publish_samples([make_sample()])
    assert len(server.received) == 3
    assert len({body for _, _, body in server.received}) == 1


@pytest.mark.parametrize('max_retries', [0, 1, 3])
def test_retries_exhausted(conf, server, max_retries):
    server.statuses = [503] * 10
    pub = make(conf, f'{server.url}?max_retries={max_retries}')
    with pytest.raises(base.PublisherError, match='503'):
        pub.publish_samples([make_sample()])
    assert len(server.received) == max_retries + 1


def test_no_batch_stops_at_first_failure(conf, server):
    server.statuses = [200, 400]
    pub = make(conf, f'{server.url}?batch=false')
    with pytest.raises(base.PublisherError):
        pub.publish_samples([make_sample(i) for i in range(3)])
    assert len(server.received) == 2


def test_timeout_is_retried_then_fails(conf, server):
    server.delay = 0.5
    pub = make(conf, f'{server.url}?timeout=0.1&max_retries=1')
    with pytest.raises(base.PublisherError, match='timed out'):
        pub.publish_samples([make_sample()])
    assert len(server.received) == 2


def test_connection_refused(conf):
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    pub = make(conf, f'http://user:hunter2@127.0.0.1:{port}/?max_retries=1')
    with pytest.raises(base.PublisherError) as info:
        pub.publish_samples([make_sample()])
    assert 'hunter2' not in str(info.value)


@pytest.mark.parametrize('url,message', [
    ('http:///path', 'has no host'),
    ('http://user:secret@:80/', 'has no host'),
    ('http://127.0.0.1:port/', 'invalid port'),
    ('http://127.0.0.1:99999/', 'invalid port'),
    ('http://127.0.0.1:0/', 'invalid port'),
    ('http://h/?timeout=soon', "timeout='soon' is not a valid float"),
    ('http://h/?timeout=0', 'timeout must be positive'),
    ('http://h/?timeout=-1', 'timeout must be positive'),
    ('http://h/?max_retries=many', "max_retries='many'"),
    ('http://h/?max_retries=-1', 'must not be negative'),
    ('http://h/?batch=sometimes', "batch='sometimes' is not a valid bool"),
    ('https://h/?verify_ssl=/no/such/ca.pem',
     'neither a boolean nor an existing CA bundle'),
    ('https://h/?clientkey=/etc/hostname', 'clientkey needs clientcert'),
    ('https://h/?clientcert=/no/such/cert.pem', 'does not exist'),
])
def test_bad_url(conf, url, message):
    with pytest.raises(base.PublisherConfigError, match=message) as info:
        make(conf, url)
    assert 'secret' not in str(info.value)
