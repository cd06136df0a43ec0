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
    (nested dicts give 'a:b' names), except the signature's. Plain text
    values, the most common, skip the generic rendering: ``str()`` of a
    str is itself."""
    append = parts.append
    for key in sorted(message, key=str):
        value = message[key]
        name = f'{prefix}{key}'
        kind = type(value)
        if kind is str:
            if name != 'message_signature':
                append(name)
                append(value)
        elif isinstance(value, dict):
            _signed_parts(value, f'{name}:', parts)
        elif name != 'message_signature':
            append(name)
            append(str(_swap_text(value))
                   if isinstance(value, (list, tuple)) else str(value))


def compute_signature(message, secret):
    """Hex HMAC-SHA256 of ``message`` without its signature; '' unsigned.

    The HMAC of the names and values one after the other, hashed in one
    call: the same bytes as Ceilometer's update per field."""
    if not secret:
        return ''
    if isinstance(secret, str):
        secret = secret.encode('utf-8')
    parts = []
    _signed_parts(message, '', parts)
    return hmac.new(secret, ''.join(parts).encode('utf-8'),
                    hashlib.sha256).hexdigest()


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


def meter_message(sample, secret, publisher_id=None):
    """The signed Ceilometer wire dict of a Sample."""
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
        'resource_metadata': sample.resource_metadata,
        'message_id': sample.id,
        'recorded_at': sample.recorded_at,
        'monotonic_time': None,
    }
    if publisher_id is not None:
        msg['publisher_id'] = publisher_id
    msg['message_signature'] = compute_signature(msg, secret)
    return msg


def datagram(sample, secret):
    """The msgpack datagram of a Sample: what udp:// and the udp://
    targets of subscriptions send (CORD's and Ceilometer's wire)."""
    return msgpack.packb(meter_message(sample, secret), use_bin_type=True,
                         default=str)
