"""udp://HOST[:PORT]: one msgpack datagram per sample, as Ceilometer sends.

A missing or unusable port falls back to Ceilometer's 4952.
"""

import errno
import logging
import socket

from oslo_utils import netutils

from calipso_agent.publisher import base, utils

LOG = logging.getLogger(__name__)

DEFAULT_PORT = 4952


def _host_port(netloc):
    netloc = netloc.rpartition('@')[2]
    try:
        host, port = netutils.parse_host_port(netloc,
                                              default_port=DEFAULT_PORT)
    except ValueError:
        host, port = netloc.rpartition(':')[0], None
    host = (host or '').strip('[]')
    if port is None or not 0 < port < 65536:
        LOG.warning('udp://%s: invalid port, using %d', netloc,
                    DEFAULT_PORT)
        port = DEFAULT_PORT
    return host, port


class UDPPublisher(base.Publisher):

    def __init__(self, conf, parsed_url):
        super().__init__(conf, parsed_url)
        if self.options:
            raise base.PublisherConfigError(
                f'udp publisher takes no options, got '
                f'{", ".join(sorted(self.options))}')
        self.host, self.port = _host_port(parsed_url.netloc)
        if not self.host:
            raise base.PublisherConfigError(
                f'udp publisher URL {parsed_url.geturl()!r} has no host')
        try:
            infos = socket.getaddrinfo(self.host, self.port,
                                       socket.AF_UNSPEC, socket.SOCK_DGRAM)
        except (OSError, UnicodeError) as exc:
            raise base.PublisherConfigError(
                f'cannot resolve udp publisher host {self.host!r}: {exc}')
        family, _, _, _, self.address = infos[0]
        self.secret = conf.publisher.telemetry_secret
        self._socket = socket.socket(family, socket.SOCK_DGRAM)

    def publish_samples(self, samples):
        for sample, metadata in zip(samples, utils.shared_metadata(samples),
                                    strict=True):
            data = utils.datagram(sample, self.secret, metadata)
            try:
                self._socket.sendto(data, self.address)
            except OSError as exc:
                if exc.errno == errno.EMSGSIZE:
                    # Resending can never succeed; requeueing would wedge
                    # every later batch behind this sample.
                    LOG.error('dropping sample %s: %d bytes do not fit in '
                              'a datagram', sample.id, len(data))
                    continue
                raise base.PublisherError(
                    f'cannot send sample to udp://{self.host}:{self.port}: '
                    f'{exc}')

    def close(self):
        self._socket.close()
