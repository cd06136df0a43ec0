"""Values as the SQL store keeps them: timestamps as microseconds since
the epoch (BIGINT, so period buckets are exact integer arithmetic on
every engine) and JSON text."""

import datetime
import json

import orjson

from calipso_agent.storage import base

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_MICROSECOND = datetime.timedelta(microseconds=1)
# orjson reads an integer outside [-2**63, 2**64 - 1] as a float: such
# an integer has at least 19 digits. A run of 19 digits is found by
# mapping every digit to b'0' (bytes.translate, a table lookup per byte;
# UTF-8 has no ASCII bytes inside multi-byte characters) and looking for
# 19 zeros: a fifth of the cost of a regular expression's search.
_DIGITS_AS_ZERO = bytes.maketrans(b'123456789', b'000000000')
_LONG_DIGIT_RUN = b'0' * 19


def to_us(value):
    """Microseconds since the epoch of a timestamp (string or datetime)."""
    try:
        # What base.parse_timestamp reads, without its normalizing round
        # trip (this runs for every sample).
        ts = (datetime.datetime.fromisoformat(value)
              if isinstance(value, str) else value)
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=datetime.UTC)
        return (ts - EPOCH) // _MICROSECOND
    except (AttributeError, TypeError, ValueError):
        return (base.parse_timestamp(value) - EPOCH) // _MICROSECOND


def now_us():
    return (datetime.datetime.now(datetime.UTC) - EPOCH) // _MICROSECOND


def from_us(us):
    return EPOCH + datetime.timedelta(microseconds=us)


def iso(us):
    return from_us(us).isoformat()


def _json_default(value):
    return str(value)


def dumps(value):
    """JSON text of ``value`` (non-JSON values as their str); ValueError
    when there is none (a cycle, text that is not Unicode)."""
    # Keys are nearly always strings: orjson is a third slower when told
    # they may not be, so it is told only after refusing one.
    for option in (None, orjson.OPT_NON_STR_KEYS):
        try:
            return orjson.dumps(value, default=_json_default,
                                option=option).decode()
        except orjson.JSONEncodeError:
            pass
    # orjson refuses integers beyond 64 bits; json does not. Both refuse
    # nesting deeper than the interpreter's stack: a ValueError too.
    try:
        text = json.dumps(value, default=_json_default, allow_nan=False,
                          ensure_ascii=False)
    except RecursionError:
        raise ValueError('nested too deeply to encode')
    text.encode()
    return text


def loads(text):
    """The value of JSON text (str or UTF-8 bytes); integers beyond 64
    bits stay exact (orjson would make them floats: such text goes to
    json, which reads it alike otherwise)."""
    data = (text.encode('utf-8', 'surrogatepass')
            if isinstance(text, str) else bytes(text))
    if _LONG_DIGIT_RUN in data.translate(_DIGITS_AS_ZERO):
        return json.loads(data)
    return orjson.loads(data)

