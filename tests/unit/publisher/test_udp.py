import errno
import socket
import urllib.parse

import msgpack
import pytest

from calipso_agent.publisher import base, udp, utils
from tests.helpers import basics
from tests.helpers.basics import make_sample

SECRET = 'udp-secret'
PORT_METADATA = {'mac': 'fa:16:3e:00:00:01', 'fixed_ips': ['10.0.0.5']}


@pytest.fixture
def conf():
    return basics.make_conf(publisher__telemetry_secret=SECRET)


def make(conf, url):
    return udp.UDPPublisher(conf, urllib.parse.urlparse(url))


@pytest.fixture
def receiver():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(('127.0.0.1', 0))
    sock.settimeout(2)
    yield sock
    sock.close()


def receive(sock, count):
    return [msgpack.unpackb(sock.recv(65535)) for _ in range(count)]


def test_entry_point(conf, receiver):
    port = receiver.getsockname()[1]
    pub = basics.load_publisher(conf, f'udp://127.0.0.1:{port}')
    assert isinstance(pub, udp.UDPPublisher)
    pub.close()


def test_one_signed_datagram_per_sample(conf, receiver):
    port = receiver.getsockname()[1]
    pub = make(conf, f'udp://127.0.0.1:{port}')
    samples = [make_sample(i, name='network.incoming.bytes', unit='B',
                           volume=1000 + i, resource_id=f'port-{i}',
                           resource_metadata=PORT_METADATA)
               for i in range(3)]
    pub.publish_samples(samples)
    pub.close()
    messages = receive(receiver, 3)
    assert messages == [utils.meter_message(s, SECRET) for s in samples]
    for msg in messages:
        assert utils.verify_signature(msg, SECRET)
        assert not utils.verify_signature(msg, 'other secret')
    assert [m['message_id'] for m in messages] == [s.id for s in samples]


def test_non_msgpack_metadata_is_stringified(conf, receiver):
    port = receiver.getsockname()[1]
    pub = make(conf, f'udp://127.0.0.1:{port}')
    pub.publish_samples([make_sample(resource_metadata={'ids': {1}})])
    pub.close()
    (msg,) = receive(receiver, 1)
    assert msg['resource_metadata'] == {'ids': '{1}'}


@pytest.mark.skipif(not socket.has_ipv6, reason='no IPv6')
def test_ipv6(conf):
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.bind(('::1', 0))
    except OSError:
        pytest.skip('no IPv6 loopback')
    sock.settimeout(2)
    with sock:
        pub = make(conf, f'udp://[::1]:{sock.getsockname()[1]}')
        assert pub.host == '::1'
        pub.publish_samples([make_sample(resource_id='port-0')])
        pub.close()
        assert receive(sock, 1)[0]['resource_id'] == 'port-0'


@pytest.mark.parametrize('netloc,host,port', [
    ('127.0.0.1', '127.0.0.1', 4952),
    ('127.0.0.1:4953', '127.0.0.1', 4953),
    ('127.0.0.1:', '127.0.0.1', 4952),
    ('127.0.0.1:abc', '127.0.0.1', 4952),
    ('127.0.0.1:70000', '127.0.0.1', 4952),
    ('127.0.0.1:0', '127.0.0.1', 4952),
    ('[::1]', '::1', 4952),
    ('[::1]:x', '::1', 4952),
    ('localhost:5000', 'localhost', 5000),
])
def test_host_and_port(conf, netloc, host, port):
    pub = make(conf, f'udp://{netloc}')
    assert (pub.host, pub.port) == (host, port)
    assert pub.address[1] == port
    pub.close()


@pytest.mark.parametrize('url,message', [
    ('udp://', 'has no host'),
    ('udp://:4952', 'has no host'),
    ('udp://127.0.0.1:4952?compress=yes', 'takes no options.*compress'),
])
def test_bad_url(conf, url, message):
    with pytest.raises(base.PublisherConfigError, match=message):
        make(conf, url)


def test_unresolvable_host(conf, monkeypatch):
    def no_dns(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, 'Name or service not known')

    # No resolver traffic leaves the test.
    monkeypatch.setattr(socket, 'getaddrinfo', no_dns)
    with pytest.raises(base.PublisherConfigError,
                       match="cannot resolve .*'collector.invalid'"):
        make(conf, 'udp://collector.invalid:4952')


def test_socket_error_is_publisher_error(conf, receiver, monkeypatch):
    pub = make(conf, f'udp://127.0.0.1:{receiver.getsockname()[1]}')

    class Broken:
        def sendto(self, data, address):
            raise OSError(errno.ENETUNREACH, 'Network is unreachable')

    monkeypatch.setattr(pub, '_socket', Broken())
    with pytest.raises(base.PublisherError, match='unreachable'):
        pub.publish_samples([make_sample()])


def test_oversized_sample_is_dropped_not_retried(conf, receiver):
    port = receiver.getsockname()[1]
    pub = make(conf, f'udp://127.0.0.1:{port}')
    huge = make_sample(0, resource_metadata={'blob': 'x' * 70000})
    pub.publish_samples([huge, make_sample(1, resource_id='port-1')])
    pub.close()
    assert receive(receiver, 1)[0]['resource_id'] == 'port-1'
