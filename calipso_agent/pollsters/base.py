"""The contracts of pollster and discovery plugins.

A **pollster** is a stevedore plugin in the ``calipso.poll`` namespace
or a ``calipso.poll.<family>`` one (``compute``, ``vsg``, a plugin
package's own: one namespace cannot hold two plugins of one name),
registered under the name of the meter it makes (Ceilometer's names:
``cpu``, ``memory.usage``, ``disk.read.bytes``...). The polling agent
makes one instance of each plugin when it starts (``Pollster(conf)``) and, at
every cycle of every source selecting the meter, calls::

    pollster.get_samples(context, cache, resources)

* ``context`` is a ``PollingContext``: the configuration, the host name,
  the source name, the instant of the cycle (``timestamp``, ISO 8601
  UTC, the same for every sample of that cycle of that source: cycles are
  aligned on multiples of the interval, so every agent polling a source
  stamps a cycle alike) and the ``sample_source`` samples carry.
* ``cache`` is a dict that lives for one cycle of one source and is
  shared by all its pollsters: pollsters reading the same system call (the
  host pollsters' psutil snapshot, one libvirt connection) keep its result
  there under a key of their own, so it is made once per cycle.
  A pollster names the shared readings it uses in ``reads`` (names of its
  family's choosing, e.g. ``host.cpu_times``): before the first pollster
  of a cycle runs, the cache holds under ``CYCLE_READINGS`` the set of
  the ``reads`` of every pollster of the cycle, so a family can make all
  the calls the cycle needs back to back, the first time one is asked
  for (system calls run faster together than interleaved with building
  samples), and none that no pollster of the cycle needs.
* ``resources`` is the list of resources this agent polls in this cycle,
  after the partitioning between agents kept this agent's share: those
  the source lists (``resources``); else those its ``discovery`` plugins
  found, handed only to the pollsters whose ``default_discovery`` is one
  of them (or None); else those the pollster's ``default_discovery``
  found. So several plugins may make one meter name (``cpu`` of the host
  and of instances), told apart by their discovery. What a resource is
  (a name, a dict) is up to the discovery and pollsters that agree on
  it; ``resource_key`` says how it is hashed to an agent.

``get_samples`` yields (or returns an iterable of) ``sample.Sample``. A
pollster builds their ids with ``polled_sample_id`` (or the ``make_sample``
helper), so a sample polled again by a retried cycle, or published again
after a failure, has the same id and the store keeps it once. A pollster
that raises is logged and skipped for this cycle; one that runs longer
than ``[polling] pollster_timeout`` is abandoned for this cycle (its
thread cannot be killed: it must not hold state that a later call needs
consistent). Neither stops the other pollsters.

Each pollster runs as a step of its own, watched for the timeout, unless
it names a ``step_group``: the pollsters of a group selected in a cycle
and handed the same resources then run in one step, one after the other.
It suits pollsters that only format readings shared through the cache
(the host pollsters: the psutil calls are made once for all of them, so
they would hang together anyway), which then do not each pay for a
watchdog. One of them raising is still logged and skipped alone; a
group running past the timeout is abandoned as a whole (its pollsters
left are skipped that cycle, and while it hangs). A group may also make
its pollsters' samples in one call (``get_group_samples``), sparing a
call per pollster: the host pollsters do.

A **discovery** is a stevedore plugin in ``calipso.discover``: made once
(``Discovery(conf)``), called each cycle as ``discover(context, param)``
where ``param`` is the text after ``://`` of the source's discovery entry
(``local_host``, ``endpoint://compute``: ``param`` None or
``compute``), and returns the list of resources. It raises to say the
resources cannot be known now: the pollsters depending on it are skipped
this cycle. A discovery whose resources are this machine's own
(``local_host``) says ``partitioned = False``: every agent polls them,
while the resources of other discoveries, and those a source lists, are
split between the agents sharing a coordination backend.

Plugins never import each other: they meet here.
"""

import abc
import datetime
import hashlib
import socket
import time
import uuid

from calipso_agent import sample as sample_mod

POLL_NAMESPACE = 'calipso.poll'
DISCOVER_NAMESPACE = 'calipso.discover'
# Key of the cycle's cache holding the ``reads`` of its pollsters.
CYCLE_READINGS = 'cycle.readings'

# Namespace hashed with the meter and resource of a polled sample's id.
POLLED_ID_NAMESPACE = uuid.UUID('0c7b4d2e-91f3-5a38-b6e1-4a7f2d93c5e8')

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_MICROSECOND = datetime.timedelta(microseconds=1)
_INSTANT_BITS = 56
_KEY_BITS = 66
# Bounds of the caches of id halves (cleared when full).
_MAX_INSTANTS = 1024
_MAX_KEYS = 32768
_instant_halves = {}
_key_halves = {}
# datetime's isoformat of a whole second in UTC, up to the year 9999.
_WHOLE_SECOND_FORMAT = '%Y-%m-%dT%H:%M:%S+00:00'
_LAST_WHOLE_SECOND = 253402300800


def _instant_half(timestamp):
    """'tttttttt-tttt-8tt': the microseconds since the epoch of
    ``timestamp`` (ISO 8601; naive is UTC), 56 bits, and the version."""
    instant = datetime.datetime.fromisoformat(timestamp)
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=datetime.UTC)
    return _remembered_instant(timestamp, (instant - _EPOCH) // _MICROSECOND)


def _remembered_instant(timestamp, micros):
    """The instant half of ``micros`` (since the epoch), kept as that of
    ``timestamp``."""
    h = f'{micros % (1 << _INSTANT_BITS):014x}'
    if len(_instant_halves) >= _MAX_INSTANTS:
        _instant_halves.clear()
    half = _instant_halves[timestamp] = f'{h[:8]}-{h[8:12]}-8{h[12:]}'
    return half


def _key_half(meter, resource_id):
    """'k-vkkk-kkkkkkkkkkkk': 66 bits of the SHA-1 of the namespace and
    ``meter/resource_id``, and the variant."""
    digest = hashlib.sha1(POLLED_ID_NAMESPACE.bytes
                          + f'{meter}/{resource_id}'.encode()).digest()
    bits = int.from_bytes(digest, 'big') >> (160 - _KEY_BITS)
    tail = f'{bits & ((1 << 60) - 1):015x}'
    if len(_key_halves) >= _MAX_KEYS:
        _key_halves.clear()
    half = _key_halves[meter, resource_id] = (
        f'{bits >> 62:x}-{8 | (bits >> 60) & 3:x}{tail[:3]}-{tail[3:]}')
    return half


def polled_sample_id(meter, resource_id, timestamp):
    """The id of the sample of ``meter`` for ``resource_id`` polled at
    ``timestamp``: the same inputs always give the same id.

    A version 8 (custom) uuid: its first 56 bits are the instant in
    microseconds since the epoch (so two instants never share an id, and
    ids sort by instant), the last 66 bits those of a SHA-1 of the
    namespace, meter and resource. Each half is computed once (per cycle,
    per meter and resource) and the id is their concatenation: this runs
    for every polled sample. It never equals a notification sample's id
    (a uuid5)."""
    try:
        first = _instant_halves[timestamp]
    except KeyError:
        first = _instant_half(timestamp)
    try:
        return first + _key_halves[meter, resource_id]
    except KeyError:
        return first + _key_half(meter, resource_id)


def polled_id_instant(timestamp):
    """The first half of the ids of the samples polled at ``timestamp``
    (cached): ``polled_sample_id`` is ``polled_id_instant(timestamp) +
    polled_id_key(meter, resource_id)``."""
    try:
        return _instant_halves[timestamp]
    except KeyError:
        return _instant_half(timestamp)


def cycle_stamp(epoch):
    """(timestamp, id instant) of a cycle at ``epoch`` (seconds since the
    epoch): the ISO 8601 UTC text its samples carry and
    ``polled_id_instant`` of that text. A cycle's tick is most often a
    whole second: its text and instant are then made without a datetime
    (a cycle's fixed cost)."""
    whole = int(epoch)
    if whole == epoch and 0 <= whole < _LAST_WHOLE_SECOND:
        timestamp = time.strftime(_WHOLE_SECOND_FORMAT, time.gmtime(whole))
        micros = whole * 1_000_000
    else:
        instant = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
        timestamp = instant.isoformat()
        micros = (instant - _EPOCH) // _MICROSECOND
    try:
        return timestamp, _instant_halves[timestamp]
    except KeyError:
        return timestamp, _remembered_instant(timestamp, micros)


def polled_id_key(meter, resource_id):
    """The second half of the ids of ``meter``'s samples of
    ``resource_id``, whatever the instant: a pollster making the samples
    of many resources at every cycle may keep it and concatenate it to
    the cycle's ``polled_id_instant`` itself."""
    try:
        return _key_halves[meter, resource_id]
    except KeyError:
        return _key_half(meter, resource_id)


def host_name(conf):
    """The ``host`` option, or this machine's name."""
    return getattr(conf, 'host', None) or socket.gethostname()


class PollingContext:
    """What a pollster or discovery knows of the cycle it runs in."""

    __slots__ = ('conf', 'host', 'source', 'timestamp', 'sample_source',
                 'id_instant')

    def __init__(self, conf, host, source, timestamp,
                 sample_source='openstack', id_instant=None):
        self.conf = conf
        self.host = host
        self.source = source
        self.timestamp = timestamp
        self.sample_source = sample_source
        #: ``polled_id_instant(timestamp)``, the first half of the ids of
        #: the cycle's samples.
        self.id_instant = (polled_id_instant(timestamp) if id_instant is None
                           else id_instant)


class PollsterError(Exception):
    """A pollster could not read its values this cycle (logged, skipped)."""


class Pollster(metaclass=abc.ABCMeta):
    """Makes the samples of one meter (see the module docstring).

    ``default_discovery``: the discovery used when the source names
    neither resources nor a discovery (None: the pollster needs them from
    the source).
    """

    default_discovery = None

    #: The shared readings this pollster uses (see the module docstring).
    reads = ()

    #: Pollsters of one ``step_group`` (a name; None: a step of its own)
    #: handed the same resources run one after the other in one step of
    #: the cycle, under one timeout (see the module docstring).
    step_group = None

    #: Optional, for the pollsters of a step group: a classmethod
    #: ``get_group_samples(pollsters, context, cache, resources, failed)``
    #: making the samples of the group's pollsters selected in a cycle
    #: (``pollsters``, in order) in one pass, as a list; for each one that
    #: cannot make its samples, it appends (pollster, exception) to
    #: ``failed`` and returns none of them. Only pollsters sharing it
    #: (the same function) are grouped together. None: each one's
    #: ``get_samples`` in turn.
    get_group_samples = None

    #: The meter's type and unit (``sample.TYPE_*``), for ``make_sample``.
    meter_type = sample_mod.TYPE_GAUGE
    unit = None

    def __init__(self, conf):
        self.conf = conf
        # Set by the agent to the name it loaded the plugin under.
        self.meter = None

    @abc.abstractmethod
    def get_samples(self, context, cache, resources):
        """The samples of this meter for ``resources`` in this cycle."""

    def make_sample(self, context, resource_id, volume, user_id=None,
                    project_id=None, metadata=None, name=None, unit=None,
                    meter_type=None):
        """A Sample of this meter with its deterministic id."""
        name = name or self.meter
        timestamp = context.timestamp
        # Positional: this runs for every polled sample.
        return sample_mod.Sample(
            name, meter_type or self.meter_type, unit or self.unit, volume,
            user_id, project_id, resource_id, timestamp, metadata,
            context.sample_source, None,
            polled_sample_id(name, resource_id, timestamp))


class Discovery(metaclass=abc.ABCMeta):
    """Finds the resources a source polls (see the module docstring)."""

    #: False: the resources are this machine's, polled by every agent.
    partitioned = True

    def __init__(self, conf):
        self.conf = conf

    @abc.abstractmethod
    def discover(self, context, param=None):
        """The list of resources now, or raise."""


def resource_key(resource):
    """The text a resource is hashed on to choose its agent: its ``id``
    (a dict's, or an object's attribute), else its string form."""
    if isinstance(resource, dict):
        for key in ('id', 'resource_id', 'name'):
            if key in resource:
                return str(resource[key])
    rid = getattr(resource, 'id', None)
    if rid is not None:
        return str(rid)
    return str(resource)
