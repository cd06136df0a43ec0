"""Senders of the subscription publisher, one per subscription. An
http(s) or amqp target has a bounded queue and a thread of its own, so
that a slow or dead target holds nothing but its own queue; a UDP
target is sent to at once on a non-blocking socket (it cannot be slow).

* ``udp://HOST:PORT``: one msgpack datagram per sample (utils.datagram,
  the udp:// publisher's encoding: CORD's wire);
* ``http(s)://...``: JSON POSTs of batches, retried with a doubling
  backoff, then dropped and counted;
* ``amqp://``: each sample (JSON) persistent on the subscription's
  durable queue on the service's broker, with publisher confirms.

What cannot be queued or sent is counted as dropped, with the last
error; messages name the target without its credentials.
"""

import abc
import collections
import logging
import socket
import threading
import time
import urllib.parse

import kombu
import requests

from calipso_agent import subscriptions
from calipso_agent.publisher import utils

LOG = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Seconds between two warnings of one sender's drops.
LOG_INTERVAL = 60


class Delivery:
    """A sample on its way to the subscriptions it matched: each encoding
    is made once, by the first sender that needs it, and shared."""

    __slots__ = ('sample', 'secret', 'metadata', '_datagram', '_json')

    def __init__(self, sample, secret, metadata=None):
        self.sample = sample
        self.secret = secret
        # utils.SignedMetadata, shared with the samples of its notification.
        self.metadata = metadata
        self._datagram = None
        self._json = None

    def datagram(self):
        if self._datagram is None:
            self._datagram = utils.datagram(self.sample, self.secret,
                                            self.metadata)
        return self._datagram

    def json(self):
        if self._json is None:
            self._json = self.sample.to_json()
        return self._json


class Counted(metaclass=abc.ABCMeta):
    """A subscription's sender: what it delivered and dropped, and the
    last error, since the counts were last taken."""

    def __init__(self, sub_id, target, options, networks=()):
        self.sub_id = sub_id
        self.target = target
        self.options = options
        self.networks = networks
        self.delivered = 0
        self.dropped = 0
        self.last_error = None
        self._logged_at = -LOG_INTERVAL
        self._lock = threading.Lock()

    @abc.abstractmethod
    def offer(self, delivery):
        """Take a Delivery, never waiting."""

    def stop(self, wait=0):
        """No more deliveries (a sender without a thread has nothing to
        stop)."""
        return None

    def removed(self):
        """The subscription is gone: release what it holds outside (by
        default nothing)."""
        return None

    def _check_address(self):
        try:
            return subscriptions.check_target_address(self.target,
                                                      self.networks)
        except subscriptions.SubscriptionError as exc:
            raise ConnectionRefusedError(exc.args[0] if exc.args else
                                         str(exc))

    def take_counts(self):
        """The counts since the last call, reset."""
        with self._lock:
            counts = {'delivered': self.delivered, 'dropped': self.dropped,
                      'last_error': self.last_error}
            self.delivered = self.dropped = 0
            self.last_error = None
        return counts

    def give_back(self, counts):
        """Counts taken that could not be written: kept for next time."""
        with self._lock:
            self.delivered += counts['delivered']
            self.dropped += counts['dropped']
            self.last_error = self.last_error or counts['last_error']

    def _failed(self, count, error):
        now = time.monotonic()
        if now - self._logged_at >= LOG_INTERVAL:
            self._logged_at = now
            LOG.warning('Subscription %s: %d samples to %s dropped: %s '
                        '(logged at most every %ds)', self.sub_id, count,
                        self.target.redacted, error, LOG_INTERVAL)
        with self._lock:
            self.dropped += count
            self.last_error = error



class QueuedSender(Counted):
    """A bounded queue of deliveries and the thread emptying it: the
    target may be as slow as it likes, the pipeline never waits."""

    batch_size = 1

    def __init__(self, sub_id, target, options, networks=()):
        super().__init__(sub_id, target, options, networks)
        # A deque (append and popleft need no lock) and an Event: cheaper
        # than queue.Queue on the pipeline's side, which runs per sample.
        self.capacity = options.queue_size
        self._items = collections.deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f'subscription-{sub_id[:8]}', daemon=True)
        self._thread.start()

    def offer(self, delivery):
        """Queue a Delivery without ever waiting; dropped when full."""
        if len(self._items) >= self.capacity:
            with self._lock:
                self.dropped += 1
            return
        self._items.append(delivery)
        if not self._wake.is_set():
            self._wake.set()

    def _run(self):
        try:
            self.open()
        except Exception as exc:
            error = f'{type(exc).__name__}: {exc}'
            self._failed(0, error)
            # Nothing can be sent: empty the queue as it fills.
            while not self._stop.is_set():
                batch = self._next_batch()
                if batch:
                    self._failed(len(batch), error)
            return
        while not self._stop.is_set():
            batch = self._next_batch()
            if not batch:
                continue
            try:
                self.send(batch)
            except Exception as exc:
                self._failed(len(batch), f'{type(exc).__name__}: {exc}')
            else:
                with self._lock:
                    self.delivered += len(batch)
        self.close()

    def _next_batch(self):
        if not self._items:
            self._wake.wait(0.2)
            self._wake.clear()
        batch = []
        while len(batch) < self.batch_size:
            try:
                batch.append(self._items.popleft())
            except IndexError:
                break
        return batch

    def stop(self, wait=0):
        self._stop.set()
        if wait:
            self._thread.join(wait)

    def open(self):
        """Prepare (resolve, connect) in the sender's thread."""

    @abc.abstractmethod
    def send(self, batch):
        """Send a batch of Deliveries to the target; raise on failure
        (the batch is then counted as dropped with the reason)."""

    def close(self):
        """Release the connection or socket."""


class UDPSender(Counted):
    """udp:// deliveries made at once by the delivering thread: a
    non-blocking send never waits (a full socket buffer drops the
    datagram, counted), and a thread per UDP target would hand the GIL
    back and forth once a datagram. The host is resolved (and checked
    against the allowed networks) when the subscription is read, in the
    publisher's refresher thread. The socket is connected to the target:
    the kernel reports a closed port (an ICMP port unreachable) at the
    next send, which counts as dropped with its error (an application
    that is down shows in the counters, not as delivered), and a send
    spares the address lookup."""

    def __init__(self, sub_id, target, options, networks=()):
        super().__init__(sub_id, target, options, networks)
        self.address = None
        self._socket = None
        sock = None
        try:
            addresses = self._check_address()
            address = (addresses[0], target.port)
            sock = socket.socket(
                socket.AF_INET6 if ':' in address[0] else socket.AF_INET,
                socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.connect(address)
        except Exception as exc:
            if sock is not None:
                sock.close()
            self._failed(0, f'{type(exc).__name__}: {exc}')
            return
        self.address, self._socket = address, sock

    def offer(self, delivery):
        if self.address is None:
            with self._lock:
                self.dropped += 1
            return
        try:
            self._socket.send(delivery.datagram())
        except OSError as exc:
            self._failed(1, f'{type(exc).__name__}: {exc}')
            return
        with self._lock:
            self.delivered += 1

    def stop(self, wait=0):
        if self._socket is not None:
            self._socket.close()


class HTTPSender(QueuedSender):
    def __init__(self, sub_id, target, options, networks=()):
        self.batch_size = options.http_batch_size
        parsed = urllib.parse.urlsplit(target.url)
        netloc = parsed.netloc.rpartition('@')[2]
        # Credentials go as basic auth, never inside the URL requests
        # may quote in an error.
        self.url = urllib.parse.urlunsplit(
            (parsed.scheme, netloc, parsed.path or '/', parsed.query, ''))
        self.auth = ((urllib.parse.unquote(parsed.username),
                      urllib.parse.unquote(parsed.password or ''))
                     if parsed.username else None)
        self.session = requests.Session()
        self.session.trust_env = False
        super().__init__(sub_id, target, options, networks)

    def open(self):
        self._check_address()

    def send(self, batch):
        body = b'[' + b','.join(d.json() for d in batch) + b']'
        delay = self.options.http_retry_backoff
        attempts = self.options.http_max_retries + 1
        for attempt in range(attempts):
            try:
                response = self.session.post(
                    self.url, data=body, auth=self.auth,
                    headers={'Content-Type': 'application/json'},
                    timeout=self.options.http_timeout,
                    allow_redirects=False)
                response.close()
                if 200 <= response.status_code < 300:
                    return
                error = f'{self.target.redacted} answered ' \
                        f'{response.status_code}'
                if response.status_code not in RETRY_STATUSES:
                    raise ConnectionError(error)
            except requests.RequestException as exc:
                error = f'POST to {self.target.redacted} failed: ' \
                        f'{type(exc).__name__}'
            if attempt + 1 < attempts and self._stop.wait(delay):
                break
            delay *= 2
        raise ConnectionError(error)

    def close(self):
        self.session.close()


class AMQPSender(QueuedSender):
    """Samples on the subscription's durable queue: an application that
    is away finds them there when it comes back."""

    def __init__(self, sub_id, target, options, networks=(),
                 broker_urls=()):
        self.broker_urls = list(broker_urls)
        self.queue_name = subscriptions.amqp_queue(sub_id)
        self._connection = None
        self.batch_size = 100
        super().__init__(sub_id, target, options, networks)

    def _connect(self):
        if not self.broker_urls:
            raise ConnectionError('no broker for amqp:// targets '
                                  '([subscription] amqp_url)')
        connection = kombu.Connection(
            ';'.join(self.broker_urls),
            transport_options={'confirm_publish': True},
            connect_timeout=5)
        connection.ensure_connection(max_retries=1)
        self._declared = kombu.Queue(self.queue_name, durable=True,
                                     auto_delete=False)
        self._declared(connection.default_channel).declare()
        self._producer = kombu.Producer(connection.default_channel)
        self._connection = connection

    def open(self):
        # A broker away now may be back for the first sample: send()
        # connects again.
        try:
            self._connect()
        except Exception as exc:
            with self._lock:
                self.last_error = f'{type(exc).__name__}: {exc}'

    def send(self, batch):
        if self._connection is None:
            self._connect()
        try:
            for delivery in batch:
                self._producer.publish(
                    delivery.json(), routing_key=self.queue_name,
                    exchange='', delivery_mode=2,
                    content_type='application/json',
                    content_encoding='utf-8')
        except Exception:
            self.close()
            raise

    def close(self):
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.release()
            except Exception:  # noqa: S110 - already broken
                pass

    def removed(self):
        """Delete the subscription's queue (nobody reads it any more)."""
        try:
            with kombu.Connection(';'.join(self.broker_urls),
                                  connect_timeout=5) as connection:
                connection.default_channel.queue_delete(self.queue_name)
        except Exception as exc:
            LOG.warning('Subscription %s: cannot delete queue %s: %s',
                        self.sub_id, self.queue_name, exc)


SENDERS = {'udp': UDPSender, 'http': HTTPSender, 'https': HTTPSender,
           'amqp': AMQPSender}
