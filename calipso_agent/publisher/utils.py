"""Ceilometer's metering message format and its HMAC signature.

Receivers written for Ceilometer verify ``message_signature`` by hashing
the other fields in a fixed way, so the rendering below must stay
byte-for-byte what Ceilometer's ``compute_signature`` produces.
"""

import hashlib
import hmac

import msgpack


def _swap_text(value):
    """Render values inside lists the way Ceilometer signs them.

    Ceilometer turns str into bytes (and bytes into str), sorts dict items
    and makes tuples lists before calling ``str()`` on a list, so that a
    message signs the same before and after a JSON round trip.
    """
    if isinstance(value, dict):
        return {_swap_text(k): _swap_text(v)
                for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_swap_text(item) for item in value]
    if isinstance(value, str):
        return value.encode('utf-8')
    if isinstance(value, bytes):
        return value.decode('utf-8')
    return value


def _signed_parts(message, prefix, parts):
    """Append the name and rendered value of each field, by sorted key
    (nested dicts give 'a:b' names), except the signature's."""
    for key in sorted(message, key=str):
        value = message[key]
        name = f'{prefix}{key}'
        if name != 'message_signature' or isinstance(value, dict):
            _signed_value(name, value, parts)


def _signed_value(name, value, parts):
    """Append a field's name and rendered value. Plain text values, the
    most common, skip the generic rendering: ``str()`` of a str is
    itself."""
    if type(value) is str:
        parts.append(name)
        parts.append(value)
    elif isinstance(value, dict):
        _signed_parts(value, f'{name}:', parts)
    else:
        parts.append(name)
        parts.append(str(_swap_text(value))
                     if isinstance(value, (list, tuple)) else str(value))


class Signer:
    """HMAC-SHA256 (RFC 2104) with one secret, its keyed inner and outer
    hashes made once: a signature is then two copies and two updates,
    less than half the CPU of ``hmac.digest``, which keys both again for
    every message."""

    __slots__ = ('_inner', '_outer')

    def __init__(self, secret):
        if isinstance(secret, str):
            secret = secret.encode('utf-8')
        if len(secret) > _BLOCK:
            secret = hashlib.sha256(secret).digest()
        key = secret.ljust(_BLOCK, b'\0')
        self._inner = hashlib.sha256(key.translate(_INNER_PAD))
        self._outer = hashlib.sha256(key.translate(_OUTER_PAD))

    def hexdigest(self, data):
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


_BLOCK = hashlib.sha256().block_size
_INNER_PAD = bytes(b ^ 0x36 for b in range(256))
_OUTER_PAD = bytes(b ^ 0x5C for b in range(256))
_signers = {}


def signer(secret):
    """The Signer of ``secret`` (made once per secret)."""
    try:
        return _signers[secret]
    except KeyError:
        if len(_signers) >= 16:
            _signers.clear()
        made = _signers[secret] = Signer(secret)
        return made


def compute_signature(message, secret):
    """Hex HMAC-SHA256 of ``message`` without its signature; '' unsigned.

    The HMAC of the names and values one after the other, hashed in one
    call: the same bytes as Ceilometer's update per field."""
    if not secret:
        return ''
    parts = []
    _signed_parts(message, '', parts)
    return signer(secret).hexdigest(''.join(parts).encode('utf-8'))


def verify_signature(message, secret):
    """Whether ``message_signature`` matches the rest of ``message``.

    With no secret configured nothing is signed, so everything verifies.
    """
    if not secret:
        return True
    claimed = message.get('message_signature', '')
    if isinstance(claimed, str):
        try:
            claimed = claimed.encode('ascii')
        except UnicodeEncodeError:
            return False
    if not isinstance(claimed, bytes):
        return False
    expected = compute_signature(message, secret).encode('ascii')
    return hmac.compare_digest(expected, claimed)


# The fields of a meter message in the order its signature renders them
# (sorted), around resource_metadata: a meter message has these keys only.
_SIGNED_BEFORE_METADATA = (
    'counter_name', 'counter_type', 'counter_unit', 'counter_volume',
    'message_id', 'monotonic_time', 'project_id', 'publisher_id',
    'recorded_at', 'resource_id')
_SIGNED_AFTER_METADATA = ('source', 'timestamp', 'user_id')
_ABSENT = object()
_PLAIN = frozenset({str, int, float, bool, type(None)})


class SignedMetadata:
    """A resource_metadata mapping whose signature rendering is made once
    for all the samples sharing it (the samples of one notification)."""

    __slots__ = ('metadata', '_rendered')

    def __init__(self, metadata):
        self.metadata = metadata
        self._rendered = None

    def rendered(self):
        """What the mapping adds to a meter message's signed text."""
        if self._rendered is None:
            parts = []
            _signed_value('resource_metadata', self.metadata, parts)
            self._rendered = ''.join(parts)
        return self._rendered


def shared_metadata(samples):
    """[SignedMetadata] parallel to ``samples``: consecutive samples with
    equal metadata share one."""
    shared, last = [], None
    for sample in samples:
        metadata = sample.resource_metadata
        if last is None or not (metadata is last.metadata
                                or metadata == last.metadata):
            last = SignedMetadata(metadata)
        shared.append(last)
    return shared


def _meter_text(msg, metadata):
    """compute_signature's text of a meter message, in the message's
    known key order, its metadata rendered once (``metadata``: a
    SignedMetadata). Values of the plain types (most often all of them)
    are formatted in one expression: ``format()`` of these is ``str()``.
    """
    publisher = msg.get('publisher_id', _ABSENT)
    values = (msg['counter_name'], msg['counter_type'], msg['counter_unit'],
              msg['counter_volume'], msg['message_id'],
              msg['monotonic_time'], msg['project_id'], msg['recorded_at'],
              msg['resource_id'], msg['source'], msg['timestamp'],
              msg['user_id'])
    if publisher is _ABSENT and _PLAIN.issuperset(map(type, values)):
        (name, kind, unit, volume, message_id, monotonic, project, recorded,
         resource, source, timestamp, user) = values
        return (f'counter_name{name}counter_type{kind}counter_unit{unit}'
                f'counter_volume{volume}message_id{message_id}'
                f'monotonic_time{monotonic}project_id{project}'
                f'recorded_at{recorded}resource_id{resource}'
                f'{metadata.rendered()}source{source}timestamp{timestamp}'
                f'user_id{user}')
    parts = []
    for key in _SIGNED_BEFORE_METADATA:
        value = msg.get(key, _ABSENT)
        if value is not _ABSENT:
            _signed_value(key, value, parts)
    parts.append(metadata.rendered())
    for key in _SIGNED_AFTER_METADATA:
        _signed_value(key, msg[key], parts)
    return ''.join(parts)


def meter_message(sample, secret, publisher_id=None, metadata=None):
    """The signed Ceilometer wire dict of a Sample (``metadata``: the
    SignedMetadata of its resource_metadata, when shared)."""
    if metadata is None:
        metadata = SignedMetadata(sample.resource_metadata)
    msg = {
        'source': sample.source,
        'counter_name': sample.name,
        'counter_type': sample.type,
        'counter_unit': sample.unit,
        'counter_volume': sample.volume,
        'user_id': sample.user_id,
        'project_id': sample.project_id,
        'resource_id': sample.resource_id,
        'timestamp': sample.timestamp,
        'resource_metadata': metadata.metadata,
        'message_id': sample.id,
        'recorded_at': sample.recorded_at,
        'monotonic_time': None,
    }
    if publisher_id is not None:
        msg['publisher_id'] = publisher_id
    msg['message_signature'] = (
        signer(secret).hexdigest(_meter_text(msg, metadata).encode('utf-8'))
        if secret else '')
    return msg


def datagram(sample, secret, metadata=None):
    """The msgpack datagram of a Sample: what udp:// and the udp://
    targets of subscriptions send (CORD's and Ceilometer's wire)."""
    return msgpack.packb(meter_message(sample, secret, metadata=metadata),
                         use_bin_type=True, default=str)
