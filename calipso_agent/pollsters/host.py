"""Pollsters of this machine (psutil), with Ceilometer's meter names.

Meters of the host itself have the host name (``[DEFAULT] host``) as
resource id; per-device and per-interface meters ``<host>-<device>`` and
``<host>-<interface>``, except the devices and interfaces whose names
``[host_pollsters] disk_exclude`` and ``interface_exclude`` match. Types
and units:

============================  ==========  ========  =======================
meter                         type        unit      what
============================  ==========  ========  =======================
cpu                           cumulative  ns        CPU time busy, all CPUs
cpu_util                      gauge       %         busy since last cycle
memory.usage                  gauge       MB        total minus available
memory.total                  gauge       MB        physical memory
disk.usage                    gauge       B         used on ``/``
disk.read.bytes               cumulative  B         per block device
disk.write.bytes              cumulative  B         per block device
network.incoming.bytes        cumulative  B         per interface
network.outgoing.bytes        cumulative  B         per interface
network.incoming.packets      cumulative  packet    per interface
network.outgoing.packets      cumulative  packet    per interface
load.1, load.5, load.15       gauge       process   load average
============================  ==========  ========  =======================

The pollsters of one cycle share one ``HostSnapshot`` kept in the cycle's
cache: each psutil call is made at most once per cycle, whichever
pollsters need it, and the calls the cycle's pollsters declare in their
``reads`` are made together when the first of them asks.
"""

import abc
import os
import re

import psutil

from calipso_agent import sample
from calipso_agent.pollsters import base

SNAPSHOT_KEY = 'host.snapshot'
DISCOVERY = 'local_host'
MB = 1024 * 1024
NS = 1_000_000_000
# Filesystem whose use disk.usage reports.
ROOT = os.path.abspath(os.sep)
_made = sample.Sample.made


class HostSnapshot:
    """The psutil readings of one cycle, each read on first use."""

    __slots__ = ('_cpu_times', '_busy', '_memory', '_disk_usage', '_disk_io',
                 '_net_io', '_load', '_rows')

    def __init__(self):
        self._cpu_times = self._busy = self._memory = None
        self._disk_usage = self._disk_io = self._net_io = self._load = None
        self._rows = {}

    # Spelled out, not through a helper: each runs for every meter.
    def cpu_times(self):
        value = self._cpu_times
        if value is None:
            value = self._cpu_times = psutil.cpu_times()
        return value

    def cpu_busy_and_total(self):
        value = self._busy
        if value is None:
            value = self._busy = busy_and_total(self.cpu_times())
        return value

    def virtual_memory(self):
        value = self._memory
        if value is None:
            value = self._memory = psutil.virtual_memory()
        return value

    def disk_usage(self):
        value = self._disk_usage
        if value is None:
            value = self._disk_usage = psutil.disk_usage(ROOT)
        return value

    def disk_io(self):
        value = self._disk_io
        if value is None:
            value = self._disk_io = (psutil.disk_io_counters(perdisk=True)
                                     or {})
        return value

    def net_io(self):
        value = self._net_io
        if value is None:
            value = self._net_io = psutil.net_io_counters(pernic=True) or {}
        return value

    def load(self):
        value = self._load
        if value is None:
            value = self._load = psutil.getloadavg()
        return value

    def take(self, wanted):
        """Make the readings named in ``wanted`` now, back to back."""
        for name, read in READERS:
            if name in wanted:
                read(self)

    def rows(self, kind, read, exclude=None):
        """[(name, counters)] of the devices or interfaces
        (``read(snapshot)``: the psutil reading by name) that ``exclude``
        (a NameFilter) does not leave out, sorted by name; made once per
        cycle for every pollster of that kind."""
        made = self._rows.get(kind)
        if made is None:
            found = read(self)
            names = (sorted(found) if exclude is None
                     else exclude.kept(found))
            made = self._rows[kind] = [(name, found[name])
                                       for name in names]
        return made


# The readings of a cycle, by the name pollsters give in ``reads``, in
# the order they are taken.
READERS = (('host.cpu_times', HostSnapshot.cpu_times),
           ('host.virtual_memory', HostSnapshot.virtual_memory),
           ('host.disk_usage', HostSnapshot.disk_usage),
           ('host.disk_io', HostSnapshot.disk_io),
           ('host.net_io', HostSnapshot.net_io),
           ('host.load', HostSnapshot.load))


def snapshot(cache):
    """The cycle's HostSnapshot, made by the first pollster asking with
    the readings of the cycle's pollsters taken."""
    try:
        return cache[SNAPSHOT_KEY]
    except KeyError:
        made = cache[SNAPSHOT_KEY] = HostSnapshot()
        made.take(cache.get(base.CYCLE_READINGS, ()))
        return made


def busy_and_total(times):
    """(busy, total) seconds of a psutil cpu_times."""
    # guest time is already counted in user time (Linux).
    total = (sum(times) - getattr(times, 'guest', 0.0)
             - getattr(times, 'guest_nice', 0.0))
    idle = getattr(times, 'idle', 0.0) + getattr(times, 'iowait', 0.0)
    return total - idle, total


class LocalHostDiscovery(base.Discovery):
    """This machine: its host name (every agent polls its own)."""

    partitioned = False

    def discover(self, context, param=None):
        return [context.host]


class HostFamilyPollster(base.Pollster):
    """A pollster of this machine. The host pollsters form one step
    group, whose samples a cycle makes in one pass
    (``get_group_samples``)."""

    default_discovery = DISCOVERY
    step_group = 'host'

    @abc.abstractmethod
    def add_samples(self, samples, readings, context, hosts):
        """Append to ``samples`` this meter's samples of ``hosts`` (the
        resources, as text) from the cycle's HostSnapshot ``readings``."""

    def get_samples(self, context, cache, resources):
        samples = []
        self.add_samples(samples, snapshot(cache), context,
                         [str(resource) for resource in resources])
        return samples

    @classmethod
    def get_group_samples(cls, pollsters, context, cache, resources,
                          failed):
        samples = []
        hosts = [str(resource) for resource in resources]
        try:
            readings = snapshot(cache)
        except Exception:
            # One of the readings failed: each pollster then reads its
            # own again (HostSnapshot reads on first use) and fails alone.
            readings = cache[SNAPSHOT_KEY]
        for pollster in pollsters:
            before = len(samples)
            try:
                pollster.add_samples(samples, readings, context, hosts)
            except Exception as exc:
                del samples[before:]
                failed.append((pollster, exc))
        return samples


class HostPollster(HostFamilyPollster):
    """A meter of the host itself: one sample per resource (the host)."""

    #: Bound of the resources whose id key half is kept (cleared when
    #: full).
    max_known = 4096

    def __init__(self, conf):
        super().__init__(conf)
        # {resource id: id key half}, kept across cycles.
        self._keys = {}

    @abc.abstractmethod
    def value(self, readings):
        """The volume from this cycle's HostSnapshot."""

    def _learn(self, resource_id):
        keys = self._keys
        if len(keys) >= self.max_known:
            keys.clear()
        made = keys[resource_id] = base.polled_id_key(self.meter,
                                                      resource_id)
        return made

    def add_samples(self, samples, readings, context, hosts):
        keys, host = self._keys, context.host
        instant = context.id_instant
        # make_sample and polled_sample_id spelled out: this runs for
        # every meter every cycle.
        for resource_id in hosts:
            try:
                key = keys[resource_id]
            except KeyError:
                key = self._learn(resource_id)
            samples.append(_made(
                self.meter, self.meter_type, self.unit, self.value(readings),
                resource_id, context.timestamp, {'host': host},
                context.sample_source, instant + key))


class CPUPollster(HostPollster):
    """CPU time spent working, summed over the CPUs, in nanoseconds.

    The kernel may report a busy time a little lower than the previous
    one (idle and iowait accounting): the counter then stays where it
    was, so it never goes backwards."""

    meter_type = sample.TYPE_CUMULATIVE
    unit = 'ns'
    reads = ('host.cpu_times',)

    def __init__(self, conf):
        super().__init__(conf)
        self.highest = 0

    def value(self, readings):
        busy, _ = readings.cpu_busy_and_total()
        self.highest = max(self.highest, int(busy * NS))
        return self.highest


class CPUUtilPollster(HostPollster):
    """Share of CPU time busy since the previous cycle (since boot at the
    first), in percent."""

    unit = '%'
    reads = ('host.cpu_times',)

    def __init__(self, conf):
        super().__init__(conf)
        self.previous = (0.0, 0.0)

    def value(self, readings):
        busy, total = readings.cpu_busy_and_total()
        busy_delta = busy - self.previous[0]
        total_delta = total - self.previous[1]
        self.previous = (busy, total)
        if total_delta <= 0:
            return 0.0
        return round(min(100.0, max(0.0, 100.0 * busy_delta / total_delta)),
                     2)


class MemoryUsagePollster(HostPollster):
    unit = 'MB'
    reads = ('host.virtual_memory',)

    def value(self, readings):
        memory = readings.virtual_memory()
        return round((memory.total - memory.available) / MB, 2)


class MemoryTotalPollster(HostPollster):
    unit = 'MB'
    reads = ('host.virtual_memory',)

    def value(self, readings):
        return round(readings.virtual_memory().total / MB, 2)


class DiskUsagePollster(HostPollster):
    unit = 'B'
    reads = ('host.disk_usage',)

    def value(self, readings):
        return readings.disk_usage().used


class LoadPollster(HostPollster):
    unit = 'process'
    reads = ('host.load',)
    index = 0

    def value(self, readings):
        return round(readings.load()[self.index], 2)


class Load1Pollster(LoadPollster):
    index = 0


class Load5Pollster(LoadPollster):
    index = 1


class Load15Pollster(LoadPollster):
    index = 2


class NameFilter:
    """The device or interface names a regular expression leaves out
    (``search`` finds it in the name). The same names come back at every
    cycle: each is searched once, until more than ``max_known`` were
    seen (containers' interfaces come and go)."""

    max_known = 4096

    def __init__(self, pattern):
        self.pattern = pattern
        self._decided = {}
        # (the names last seen in their order, those of them kept): one
        # object, replaced whole, as sources' threads may share a filter.
        self._last = ((), [])

    def kept(self, names):
        """The ``names`` (an iterable: a psutil reading by name) not left
        out, sorted; worked out again only when they are not the names
        of the last call."""
        seen = tuple(names)
        last = self._last
        if seen == last[0]:
            return last[1]
        left_out = self.left_out
        kept = sorted(name for name in seen if not left_out(name))
        self._last = (seen, kept)
        return kept

    def left_out(self, name):
        decided = self._decided.get(name)
        if decided is None:
            if len(self._decided) >= self.max_known:
                self._decided.clear()
            decided = self._decided[name] = bool(self.pattern.search(name))
        return decided


def excluded(conf, option):
    """The NameFilter of the [host_pollsters] ``option`` (None: empty,
    or no configuration)."""
    group = getattr(conf, 'host_pollsters', None) if option else None
    pattern = getattr(group, option, None) if group is not None else None
    if not pattern:
        return None
    try:
        return NameFilter(re.compile(pattern))
    except re.error as exc:
        raise ValueError(f'[host_pollsters] {option}: {pattern!r} is not a '
                         f'regular expression: {exc}') from None


class CounterPollster(HostFamilyPollster):
    """A cumulative counter per device or interface of the host:
    ``readings(snapshot)`` maps names to psutil counters, ``field`` is
    the counter read."""

    meter_type = sample.TYPE_CUMULATIVE
    field = None
    kind = None
    #: Bound of the devices or interfaces known per host (cleared when
    #: full: containers' interfaces come and go).
    max_known = 4096

    #: The [host_pollsters] option naming the devices or interfaces left
    #: out.
    exclude_option = None

    def __init__(self, conf):
        super().__init__(conf)
        # {host: {name: (resource id, id key half)}}, kept across cycles
        # so that a cycle neither formats resource ids nor hashes
        # (meter, resource) pairs again.
        self._known = {}
        self.exclude = excluded(conf, self.exclude_option)

    @abc.abstractmethod
    def readings(self, snapshot):
        """{device or interface name: psutil counters} of the cycle."""

    def _learn(self, known, host, name):
        if len(known) >= self.max_known:
            known.clear()
        resource_id = f'{host}-{name}'
        made = known[name] = (resource_id,
                              base.polled_id_key(self.meter, resource_id))
        return made

    def add_samples(self, samples, readings, context, hosts):
        rows = readings.rows(self.kind, self.readings, self.exclude)
        field, kind, meter = self.field, self.kind, self.meter
        meter_type, unit = self.meter_type, self.unit
        timestamp, source = context.timestamp, context.sample_source
        instant = context.id_instant
        new_sample = _made
        append = samples.append
        # make_sample and polled_sample_id spelled out: this runs for
        # every device and interface at every cycle.
        for host in hosts:
            try:
                known = self._known[host]
            except KeyError:
                known = self._known[host] = {}
            for name, counter in rows:
                try:
                    resource_id, key = known[name]
                except KeyError:
                    resource_id, key = self._learn(known, host, name)
                append(new_sample(meter, meter_type, unit,
                                  getattr(counter, field), resource_id,
                                  timestamp, {'host': host, kind: name},
                                  source, instant + key))


class DiskPollster(CounterPollster):
    unit = 'B'
    kind = 'device'
    exclude_option = 'disk_exclude'
    reads = ('host.disk_io',)

    def readings(self, snapshot):
        return snapshot.disk_io()


class DiskReadBytesPollster(DiskPollster):
    field = 'read_bytes'


class DiskWriteBytesPollster(DiskPollster):
    field = 'write_bytes'


class NetworkPollster(CounterPollster):
    kind = 'interface'
    exclude_option = 'interface_exclude'
    reads = ('host.net_io',)

    def readings(self, snapshot):
        return snapshot.net_io()


class IncomingBytesPollster(NetworkPollster):
    unit = 'B'
    field = 'bytes_recv'


class OutgoingBytesPollster(NetworkPollster):
    unit = 'B'
    field = 'bytes_sent'


class IncomingPacketsPollster(NetworkPollster):
    unit = 'packet'
    field = 'packets_recv'


class OutgoingPacketsPollster(NetworkPollster):
    unit = 'packet'
    field = 'packets_sent'
