"""Sample: the unit of telemetry, and the helpers every producer shares."""

import datetime
import hashlib
import uuid

import orjson

TYPE_GAUGE = 'gauge'
TYPE_DELTA = 'delta'
TYPE_CUMULATIVE = 'cumulative'
TYPES = (TYPE_GAUGE, TYPE_DELTA, TYPE_CUMULATIVE)

# Namespace of the deterministic sample ids: a redelivered notification
# yields the same ids, so stores can upsert instead of duplicating.
SAMPLE_ID_NAMESPACE = uuid.UUID('6b1e5f7c-3c4f-5d0a-9a55-2f0a0c1a1e42')
_NAMESPACE_BYTES = SAMPLE_ID_NAMESPACE.bytes
_VARIANT = '89ab89ab89ab89ab'

_UTC = datetime.UTC
_new_object = object.__new__


def sample_id(message_id, name, resource_id, index=0):
    """uuid5 of message id, meter name, resource id (and a repeat index)."""
    key = f'{message_id}/{name}/{resource_id}'
    if index:
        key = f'{key}/{index}'
    # uuid.uuid5 spelled out: this runs for every sample.
    h = hashlib.sha1(_NAMESPACE_BYTES + key.encode()).hexdigest()
    return (f'{h[:8]}-{h[8:12]}-5{h[13:16]}-'
            f'{_VARIANT[int(h[16], 16)]}{h[17:20]}-{h[20:32]}')


def utcnow_iso():
    return datetime.datetime.now(_UTC).isoformat()


def normalize_timestamp(value):
    """An ISO 8601 instant in UTC (naive input is UTC), or ValueError."""
    if isinstance(value, datetime.datetime):
        ts = value
    else:
        if not isinstance(value, str):
            raise ValueError(f'timestamp {value!r} is not a string')
        text = value.strip()
        if text.endswith(('Z', 'z')):
            text = text[:-1] + '+00:00'
        ts = datetime.datetime.fromisoformat(text)
    if ts.tzinfo is None:
        return ts.isoformat() + '+00:00'
    try:
        return ts.astimezone(_UTC).isoformat()
    except OverflowError:
        # 0001-01-01T00:00:00+14:00 is before the first UTC datetime.
        raise ValueError(f'timestamp {value!r} is out of range')


class Sample:
    """One measurement of one meter for one resource at one instant."""

    __slots__ = ('id', 'name', 'type', 'unit', 'volume', 'user_id',
                 'project_id', 'resource_id', 'timestamp', 'recorded_at',
                 'resource_metadata', 'source', 'message_id')

    FIELDS = __slots__

    def __init__(self, name, type, unit, volume, user_id, project_id,
                 resource_id, timestamp, resource_metadata=None,
                 source='openstack', message_id=None, id=None,
                 recorded_at=None):
        self.name = name
        self.type = type
        self.unit = unit
        self.volume = volume
        self.user_id = user_id
        self.project_id = project_id
        self.resource_id = resource_id
        self.timestamp = timestamp
        self.resource_metadata = (resource_metadata
                                  if resource_metadata is not None else {})
        self.source = source
        self.message_id = message_id
        self.id = id or sample_id(message_id, name, resource_id)
        self.recorded_at = recorded_at

    @classmethod
    def made(cls, name, type, unit, volume, resource_id, timestamp,
             resource_metadata, source, id):
        """A sample of a producer that made its id and metadata itself
        (a pollster, at every cycle): no user, project or message, none
        of the constructor's defaults to work out. Calling the class
        costs twice as much (its arguments go through a tuple to
        ``__init__``)."""
        made = _new_object(cls)
        made.name = name
        made.type = type
        made.unit = unit
        made.volume = volume
        made.user_id = made.project_id = made.message_id = None
        made.resource_id = resource_id
        made.timestamp = timestamp
        made.resource_metadata = resource_metadata
        made.source = source
        made.id = id
        made.recorded_at = None
        return made

    def as_dict(self):
        return {f: getattr(self, f) for f in self.FIELDS}

    @classmethod
    def from_dict(cls, data):
        return cls(**{f: data.get(f) for f in cls.FIELDS})

    def to_json(self):
        """Compact JSON bytes; non-JSON values in metadata become strings."""
        return orjson.dumps(self.as_dict(), default=str,
                            option=orjson.OPT_NON_STR_KEYS)

    def __eq__(self, other):
        return (isinstance(other, Sample)
                and self.as_dict() == other.as_dict())

    def __repr__(self):
        return (f'<Sample {self.name} {self.resource_id} {self.volume} '
                f'{self.timestamp}>')
