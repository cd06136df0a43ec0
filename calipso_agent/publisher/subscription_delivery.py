"""The delivery process of the subscription publisher.

Signing and encoding samples for CORD's wire, and talking to the
targets, costs more CPU than the pipeline itself; in the agent's process
it would take the GIL from the pipeline. So the agent only matches
samples and hands them, with their subscription ids, to this process
(``python -m calipso_agent.publisher.subscription_delivery``), one per
publishing agent process, over its stdin; the senders of
publisher/subscription_targets.py deliver from here, and the counts go
back on stdout as JSON lines.

Frames on stdin: a 4-byte big-endian length, then msgpack of

* ``["config", {...}]`` first: the options, the telemetry secret, the
  allowed networks, the brokers (never on the command line: ``ps`` shows
  it);
* ``["subscriptions", [stored subscription, ...]]``: the ones in effect;
* ``["samples", [[metadata, ...], [entry, ...]]]`` (``samples_frame``):
  each entry is the subscription ids then the Sample's constructor
  arguments, its resource_metadata an index into the frame's list of
  distinct metadata. The samples of one notification share theirs: it
  crosses the pipe, is decoded and has its signature rendered once.

End of stdin (the agent is gone) stops the process.
"""

import ipaddress
import logging
import os
import struct
import sys
import threading
import types

import msgpack
import orjson

from calipso_agent import sample as sample_mod
from calipso_agent import subscriptions
from calipso_agent.publisher import subscription_targets, utils

LOG = logging.getLogger('calipso_agent.publisher.subscription_delivery')

HEADER = struct.Struct('>I')


def frame(kind, body):
    # default=str: metadata values msgpack has no type for (a datetime)
    # go as text, as in a sample's JSON.
    data = msgpack.packb([kind, body], use_bin_type=True, default=str)
    return HEADER.pack(len(data)) + data


def samples_frame(matched):
    """The frame of ``[(subscription ids, Sample), ...]``."""
    metadata, entries, last = [], [], None
    for ids, sample in matched:
        meta = sample.resource_metadata
        if last is None or not (meta is last or meta == last):
            metadata.append(meta)
            last = meta
        entries.append((ids, sample.name, sample.type, sample.unit,
                        sample.volume, sample.user_id, sample.project_id,
                        sample.resource_id, sample.timestamp,
                        len(metadata) - 1, sample.source, sample.message_id,
                        sample.id, sample.recorded_at))
    return frame('samples', (metadata, entries))


def frame_samples(body):
    """``[(subscription ids, Sample, SignedMetadata)]`` of a samples
    frame's body."""
    metadata, entries = body
    shared = [utils.SignedMetadata(m) for m in metadata]
    new_sample = sample_mod.Sample
    out = []
    for entry in entries:
        signed = shared[entry[9]]
        out.append((entry[0], new_sample(*entry[1:9], signed.metadata,
                                         *entry[10:]), signed))
    return out


def read_frame(stream):
    """The next (kind, body) of ``stream``; None at its end."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (length,) = HEADER.unpack(header)
    data = stream.read(length)
    if len(data) < length:
        return None
    kind, body = msgpack.unpackb(data, raw=False, strict_map_key=False)
    return kind, body


class Deliverer:
    """The senders of the subscriptions in effect."""

    def __init__(self, config):
        self.options = types.SimpleNamespace(**config['options'])
        secret = config['secret']
        self.secret = (secret.encode('utf-8') if isinstance(secret, str)
                       else secret)
        self.networks = [ipaddress.ip_network(n)
                         for n in config['networks']]
        self.broker_urls = config['broker_urls']
        self.senders = {}
        self.gone = {}
        self.lock = threading.Lock()

    def apply(self, stored):
        senders = {}
        for record in stored:
            try:
                target = subscriptions.parse_target(record['target'])
            except (KeyError, TypeError, subscriptions.SubscriptionError):
                continue
            old = self.senders.get(record['id'])
            if old is not None and old.target.url == target.url:
                senders[record['id']] = old
                continue
            cls = subscription_targets.SENDERS[target.scheme]
            extra = ({'broker_urls': self.broker_urls}
                     if target.scheme == 'amqp' else {})
            senders[record['id']] = cls(record['id'], target, self.options,
                                        self.networks, **extra)
        with self.lock:
            for sub_id, sender in self.senders.items():
                if senders.get(sub_id) is not sender:
                    sender.stop()
                    # Its last counts are still reported.
                    self.gone[sub_id] = sender
                    if sub_id not in senders:
                        sender.removed()
            self.senders = senders

    def deliver(self, body):
        """Offer the samples of a samples frame's body to their senders."""
        senders, secret = self.senders, self.secret
        new_delivery = subscription_targets.Delivery
        for ids, sample, metadata in frame_samples(body):
            delivery = new_delivery(sample, secret, metadata)
            for sub_id in ids:
                sender = senders.get(sub_id)
                if sender is not None:
                    sender.offer(delivery)

    def counts(self):
        """{subscription id: counts} since the last call (non-zero
        ones)."""
        with self.lock:
            taken = list(self.senders.items()) + list(self.gone.items())
            self.gone = {}
        out = {}
        for sub_id, sender in taken:
            counts = sender.take_counts()
            if counts['delivered'] or counts['dropped'] or (
                    counts['last_error']):
                previous = out.get(sub_id)
                if previous:
                    counts['delivered'] += previous['delivered']
                    counts['dropped'] += previous['dropped']
                out[sub_id] = counts
        return out

    def stop(self):
        for sender in list(self.senders.values()):
            sender.stop(wait=2)


def report_counts(deliverer, interval, stop, out):
    while not stop.wait(interval):
        counts = deliverer.counts()
        if counts:
            out.write(orjson.dumps(counts) + b'\n')
            out.flush()


def main():
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO,
        format='%(asctime)s %(process)d %(levelname)s %(name)s %(message)s')
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    first = read_frame(stdin)
    if first is None or first[0] != 'config':
        sys.exit('subscription delivery: no configuration on stdin')
    deliverer = Deliverer(first[1])
    niceness = getattr(deliverer.options, 'delivery_niceness', 0)
    if niceness:
        os.nice(niceness)
    stop = threading.Event()
    reporter = threading.Thread(
        target=report_counts, daemon=True,
        args=(deliverer, deliverer.options.counter_interval, stop, stdout))
    reporter.start()
    try:
        while True:
            item = read_frame(stdin)
            if item is None:
                break
            kind, body = item
            if kind == 'samples':
                deliverer.deliver(body)
            elif kind == 'subscriptions':
                deliverer.apply(body)
    finally:
        stop.set()
        deliverer.stop()
        counts = deliverer.counts()
        if counts:
            stdout.write(orjson.dumps(counts) + b'\n')
            stdout.flush()


if __name__ == '__main__':
    main()
