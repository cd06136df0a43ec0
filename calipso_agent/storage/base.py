"""The storage interface every driver implements, and its data model.

Drivers live in the ``calipso.storage`` namespace, keyed by the scheme of
``[database] connection`` (``sqlite``, ``postgresql``, ``mongodb``).

Queries are expressed in one language for every driver: Ceilometer's
complex query (``query.py``). ``SampleFilter`` builds the common case (the
simple ``q`` filters of the v2 API) as such an expression, so drivers
compile one thing.
"""

import abc
import datetime
import math

from calipso_agent import inventory
from calipso_agent import sample as sample_mod
from calipso_agent.storage import query as query_mod

AGGREGATES = ('avg', 'sum', 'min', 'max', 'count', 'stddev',
              'cardinality')
CARDINALITY_FIELDS = ('resource_id', 'user_id', 'project_id', 'source')
GROUPBY_FIELDS = ('user_id', 'project_id', 'resource_id', 'source')
# The longest statistics period: a century of seconds. Stores count in
# 64-bit microseconds, and timestamps end in the year 9999.
MAX_PERIOD = 100 * 36525 * 864
# What an override of a polling source may change (set_polling_override).
POLLING_OVERRIDE_FIELDS = ('interval', 'meters', 'enabled')


class StorageError(Exception):
    """The store failed. Writers retry it later unless it is a
    ``StorageDataError``: a failure nobody classified is taken for a
    passing one (a message that keeps failing is stopped by the retry
    limit of the consumer instead)."""


class StorageUnavailableError(StorageError):
    """The store cannot answer now (connection refused or lost, timeout,
    serialization failure, deadlock, shutting down): the same write may
    succeed later."""


class StorageDataError(StorageError):
    """The store refuses this input and always will (a value out of range,
    text it cannot hold, an index row too big): retrying the same samples
    cannot help; the batch is split to find the ones at fault.
    ``refused``: the (sample, reason) pairs at fault, when known."""

    def __init__(self, message, refused=()):
        super().__init__(message)
        self.refused = list(refused)


InvalidQuery = query_mod.InvalidQuery


def parse_timestamp(value):
    """An aware UTC datetime from an ISO 8601 string or datetime."""
    if isinstance(value, datetime.datetime):
        ts = value
    elif isinstance(value, str):
        ts = datetime.datetime.fromisoformat(
            sample_mod.normalize_timestamp(value))
    else:
        raise ValueError(f'timestamp {value!r} is not a string')
    if ts.tzinfo is None:
        return ts.replace(tzinfo=datetime.UTC)
    return ts.astimezone(datetime.UTC)


def validate_sample(sample, timestamp=True):
    """Why ``sample`` cannot be stored, or None when it can.

    Checks what every store relies on: an id, a name, a known type, a
    resource, a finite numeric volume and (unless ``timestamp`` is false:
    the caller parses it itself) a parseable timestamp.
    """
    for field in ('id', 'name', 'resource_id'):
        value = getattr(sample, field, None)
        if not isinstance(value, str) or not value:
            return f'{field} is missing or not a string'
    if sample.type not in sample_mod.TYPES:
        return f'type {sample.type!r} is not one of {sample_mod.TYPES}'
    volume = sample.volume
    if isinstance(volume, bool) or not isinstance(volume, (int, float)):
        return f'volume {volume!r} is not a number'
    if not math.isfinite(volume):
        return f'volume {volume!r} is not finite'
    if timestamp:
        try:
            parse_timestamp(sample.timestamp)
        except (TypeError, ValueError):
            return f'timestamp {sample.timestamp!r} is not ISO 8601'
    if sample.resource_metadata is not None and not isinstance(
            sample.resource_metadata, dict):
        return 'resource_metadata is not a mapping'
    return None


def polling_override_changes(name, changes):
    """``changes`` of set_polling_override checked: a dict of known
    fields (ValueError otherwise), split into (set, dropped)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f'polling source name {name!r} is not a string')
    unknown = sorted(set(changes) - set(POLLING_OVERRIDE_FIELDS))
    if unknown:
        raise ValueError(f'polling source {name}: cannot override '
                         f'{", ".join(unknown)} (only '
                         f'{", ".join(POLLING_OVERRIDE_FIELDS)})')
    kept = {k: v for k, v in changes.items() if v is not None}
    dropped = [k for k, v in changes.items() if v is None]
    return kept, dropped


def utc_now_iso():
    """Now, as the ISO 8601 UTC text the stores stamp records with."""
    return datetime.datetime.now(datetime.UTC).isoformat()


def _bound(value, what):
    if value is None:
        return None
    try:
        return parse_timestamp(value)
    except (TypeError, ValueError):
        raise InvalidQuery(f'{what} {value!r} is not an ISO 8601 timestamp')


class RecordResult:
    """What ``record_samples`` did: stored, and rejected with reasons."""

    def __init__(self, stored=0, rejected=()):
        self.stored = stored
        self.rejected = list(rejected)

    def __repr__(self):
        return (f'<RecordResult stored={self.stored} '
                f'rejected={len(self.rejected)}>')


class SampleFilter:
    """The simple filters of the v2 API, as a complex-query expression.

    ``project_id`` (and ``user_id``, ``resource_id``) may be one value or
    a collection: a collection means "one of these" (the proxy's project
    scope). Timestamps bound the samples: the start is inclusive unless
    ``start_timestamp_op='gt'``, the end exclusive unless
    ``end_timestamp_op='le'``. ``metaquery`` maps ``resource_metadata.X``
    to a required value. ``conditions`` adds (field, op, value) terms with
    the ops of the complex query.
    """

    def __init__(self, user_id=None, project_id=None, resource_id=None,
                 meter=None, source=None, message_id=None,
                 start_timestamp=None, start_timestamp_op='ge',
                 end_timestamp=None, end_timestamp_op='lt',
                 metaquery=None, conditions=()):
        if start_timestamp_op not in ('ge', 'gt'):
            raise InvalidQuery(f'start timestamp op {start_timestamp_op!r} '
                               'is not ge or gt')
        if end_timestamp_op not in ('le', 'lt'):
            raise InvalidQuery(f'end timestamp op {end_timestamp_op!r} is '
                               'not le or lt')
        self.user_id = user_id
        self.project_id = project_id
        self.resource_id = resource_id
        self.meter = meter
        self.source = source
        self.message_id = message_id
        self.start_timestamp = _bound(start_timestamp, 'start timestamp')
        self.start_timestamp_op = start_timestamp_op
        self.end_timestamp = _bound(end_timestamp, 'end timestamp')
        self.end_timestamp_op = end_timestamp_op
        self.metaquery = dict(metaquery or {})
        self.conditions = list(conditions)

    def expression(self):
        """The filter as a complex-query expression (None: everything)."""
        terms = []
        for field, value in (('user_id', self.user_id),
                             ('project_id', self.project_id),
                             ('resource_id', self.resource_id),
                             ('name', self.meter), ('source', self.source),
                             ('message_id', self.message_id)):
            if value is None:
                continue
            if isinstance(value, (list, tuple, set, frozenset)):
                terms.append({'in': {field: sorted(value)}})
            else:
                terms.append({'=': {field: value}})
        if self.start_timestamp is not None:
            op = '>=' if self.start_timestamp_op == 'ge' else '>'
            terms.append({op: {'timestamp': self.start_timestamp}})
        if self.end_timestamp is not None:
            op = '<=' if self.end_timestamp_op == 'le' else '<'
            terms.append({op: {'timestamp': self.end_timestamp}})
        for key, value in sorted(self.metaquery.items()):
            if key.startswith('metadata.'):
                key = 'resource_' + key
            elif not key.startswith('resource_metadata.'):
                key = 'resource_metadata.' + key
            terms.append({'=': {key: value}})
        for field, op, value in self.conditions:
            terms.append({op: {field: value}})
        if not terms:
            return None
        expression = terms[0] if len(terms) == 1 else {'and': terms}
        return query_mod.validate(expression)


class Meter:
    """A meter seen for a resource (the v2 API's /meters entries)."""

    __slots__ = ('name', 'type', 'unit', 'resource_id', 'project_id',
                 'user_id', 'source')

    def __init__(self, name, type, unit, resource_id, project_id, user_id,
                 source):
        self.name = name
        self.type = type
        self.unit = unit
        self.resource_id = resource_id
        self.project_id = project_id
        self.user_id = user_id
        self.source = source

    def as_dict(self):
        return {f: getattr(self, f) for f in self.__slots__}

    def __eq__(self, other):
        return isinstance(other, Meter) and self.as_dict() == other.as_dict()

    def __hash__(self):
        return hash(tuple(self.as_dict().values()))

    def __repr__(self):
        return f'<Meter {self.name} {self.resource_id}>'


class Resource:
    """What the store knows of a resource from its samples."""

    __slots__ = ('resource_id', 'project_id', 'user_id', 'source',
                 'first_sample_timestamp', 'last_sample_timestamp',
                 'metadata', 'meters')

    def __init__(self, resource_id, project_id, user_id, source,
                 first_sample_timestamp, last_sample_timestamp, metadata,
                 meters=()):
        self.resource_id = resource_id
        self.project_id = project_id
        self.user_id = user_id
        self.source = source
        self.first_sample_timestamp = first_sample_timestamp
        self.last_sample_timestamp = last_sample_timestamp
        self.metadata = metadata
        self.meters = list(meters)

    def as_dict(self):
        return {f: getattr(self, f) for f in self.__slots__}

    def __repr__(self):
        return f'<Resource {self.resource_id}>'


class Statistics:
    """Aggregates of the samples of one period (and group)."""

    __slots__ = ('unit', 'count', 'min', 'max', 'avg', 'sum', 'stddev',
                 'aggregate', 'duration', 'duration_start', 'duration_end',
                 'period', 'period_start', 'period_end', 'groupby')
    FIELDS = __slots__

    def __init__(self, **fields):
        for name in self.FIELDS:
            setattr(self, name, fields.get(name))

    def as_dict(self):
        return {f: getattr(self, f) for f in self.FIELDS}

    def __repr__(self):
        return (f'<Statistics {self.period_start} {self.groupby} '
                f'count={self.count}>')


def period_start(ts, origin, period):
    """Start of the ``period``-second bucket holding ``ts`` (from
    ``origin``)."""
    offset = (ts - origin).total_seconds()
    return origin + datetime.timedelta(
        seconds=period * math.floor(offset / period))


def check_statistics_args(period, groupby, aggregates):
    """Validate the arguments of get_statistics; returns normalized
    (period, groupby, aggregates)."""
    if period is not None:
        if isinstance(period, bool) or not isinstance(period, (int, float)):
            raise InvalidQuery(f'period {period!r} is not a number')
        if not math.isfinite(period):
            raise InvalidQuery(f'period {period!r} is not finite')
        if period < 0:
            raise InvalidQuery('period must be positive')
        if period > MAX_PERIOD:
            raise InvalidQuery(f'period {period} is longer than '
                               f'{MAX_PERIOD} seconds (a century)')
        period = period or None
    groupby = list(groupby or [])
    for field in groupby:
        if not isinstance(field, str):
            raise InvalidQuery(f'cannot group by {field!r}')
        if field not in GROUPBY_FIELDS and not (
                field.startswith('resource_metadata.')
                and query_mod.valid_metadata_key(field)):
            raise InvalidQuery(f'cannot group by {field!r}')
    if len(set(groupby)) != len(groupby):
        raise InvalidQuery('groupby names a field twice')
    normalized = []
    for aggregate in aggregates or ():
        func, param = (aggregate if isinstance(aggregate, (tuple, list))
                       else (aggregate, None))
        if func not in AGGREGATES:
            raise InvalidQuery(f'unknown aggregate {func!r} (one of '
                               f'{", ".join(AGGREGATES)})')
        if func == 'cardinality':
            if param not in CARDINALITY_FIELDS:
                raise InvalidQuery(f'cardinality of {param!r}: one of '
                                   f'{", ".join(CARDINALITY_FIELDS)}')
        elif param is not None:
            raise InvalidQuery(f'aggregate {func} takes no parameter')
        normalized.append((func, param))
    return period, groupby, normalized


class Connection(metaclass=abc.ABCMeta):
    """A storage driver bound to one database."""

    def __init__(self, conf, url):
        self.conf = conf
        self.url = url

    #: What connecting created, for drivers that create a missing schema
    #: as they connect (the SQL ones): the line upgrade() gave then.
    created_on_connect = None

    # --- schema ----------------------------------------------------------
    @abc.abstractmethod
    def upgrade(self):
        """Create or upgrade tables/collections and indexes (idempotent);
        one line saying what was done (created, upgraded, up to date)."""

    @abc.abstractmethod
    def ping(self):
        """Return when the store answers; StorageError when it does not:
        the healthcheck of the services over the store, and the writers'
        probe during an outage (to resume at once)."""

    def close(self):  # noqa: B027 - drivers without resources to free
        """Release connections."""

    # --- samples ---------------------------------------------------------
    @abc.abstractmethod
    def record_samples(self, samples):
        """Store samples idempotently by id; return a RecordResult.

        Invalid samples (``validate_sample``) are rejected, logged with
        their reason and counted; the rest are stored. A sample id already
        stored changes nothing. Also maintains each resource's record and
        the meters seen. Raises StorageDataError when the store refuses
        what it was given (a retry of the same samples would fail again),
        StorageUnavailableError (or another StorageError) when it failed.
        """

    @abc.abstractmethod
    def query_samples(self, filter_expr=None, orderby=None, limit=None):
        """Samples matching a complex-query expression.

        ``orderby``: list of (field, 'asc'|'desc'); default timestamp
        descending.
        """

    def get_samples(self, sample_filter=None, limit=None, orderby=None):
        """Samples matching a SampleFilter, newest first by default."""
        expression = (sample_filter.expression()
                      if sample_filter is not None else None)
        return self.query_samples(expression, orderby, limit)

    @abc.abstractmethod
    def get_meters(self, sample_filter=None, limit=None, unique=False):
        """Meters (name, type, unit, resource, project, user, source)
        having samples that match; ``unique``: one entry per name."""

    @abc.abstractmethod
    def get_resources(self, sample_filter=None, limit=None):
        """Resources having samples that match, with first/last sample
        timestamps within the filter and their latest metadata.

        A filter limited to projects (``project_id``) sees every resource
        as a store holding only those projects' samples would show it:
        timestamps, latest sample's fields and meters never come from
        another project's samples on the same resource id (ids are the
        writers' choice, so they collide across projects).
        """

    @abc.abstractmethod
    def get_statistics(self, sample_filter, period=None, groupby=None,
                       aggregates=None):
        """Statistics of the matching samples, per period, group and unit.

        Computed by the store, never by reading samples into Python.
        Arguments are checked with ``check_statistics_args`` first.

        * Without a period: one Statistics per group (and unit) with
          ``period`` 0, ``period_start``/``duration_start`` the first
          sample's timestamp and ``period_end``/``duration_end`` the last's.
        * With ``period`` P seconds: buckets [origin + kP, origin +
          (k+1)P) where origin is the filter's start timestamp, or the
          first matching sample's; one Statistics per non-empty bucket and
          group, ``period_start``/``period_end`` the bucket's bounds,
          ``duration_start``/``duration_end`` its first and last sample.
        * ``duration`` is duration_end - duration_start in seconds.
        * ``groupby``: {field: value} of the group (None where a metadata
          key is missing); None when not grouping.
        * ``aggregates`` None: count, min, max, avg and sum are set, and
          ``aggregate`` is {}. Otherwise only the listed (function,
          parameter) pairs are computed: they fill the attribute of the
          same name (stddev is the population standard deviation) and
          ``aggregate``, keyed by the function, or ``cardinality/<param>``
          (the number of distinct values of the field).
        * Sorted by period_start then group values when a period is
          given; by group values otherwise.
        """

    @abc.abstractmethod
    def clear_expired_samples(self, ttl):
        """Delete samples older than ``ttl`` seconds; return how many."""

    # --- inventory (DESIGN.md section 4) ---------------------------------
    @abc.abstractmethod
    def upsert_inventory(self, objects):
        """Store inventory objects (dicts with at least ``id``, ``type``,
        ``last_event_at``) as they are. An object older (``last_event_at``)
        than the stored one is ignored, so replayed events change nothing.
        Returns how many were written. Nothing is derived (paths,
        tombstones of children, links): ``apply_inventory`` does that."""

    def apply_inventory(self, objects=(), links=()):
        """Merge objects and links made from events or scans into the
        graph, by the rules of ``calipso_agent.inventory`` (newer wins,
        tombstones, deletions close links and mark children, paths from
        parents, exclusive links): all or nothing where the store has
        transactions, and safe to repeat. Returns how many objects and
        links were written; ValueError (nothing written) on an invalid
        one."""
        objects, links = list(objects), list(links)
        if not objects and not links:
            return 0
        with self._inventory_batch() as batch:
            return inventory.apply(batch, objects, links)

    @abc.abstractmethod
    def _inventory_batch(self):
        """A context manager giving an ``inventory.InventoryBatch``: its
        reads and its one write in one transaction (committed when the
        block ends without error), where the store has them."""

    @abc.abstractmethod
    def get_inventory(self, ids=None, types=None, project_ids=None,
                      limit=None):
        """Inventory objects, optionally of these ids, types, projects."""

    @abc.abstractmethod
    def delete_inventory(self, ids):
        """Delete inventory objects and their links; return how many."""

    @abc.abstractmethod
    def upsert_links(self, links):
        """Store links (dicts with ``source_id``, ``target_id``,
        ``link_type``; one link per triple)."""

    @abc.abstractmethod
    def get_links(self, source_id=None, target_id=None, link_type=None,
                  project_ids=None):
        """Links, optionally from/to an object, of a type or projects."""

    @abc.abstractmethod
    def delete_links(self, source_id=None, target_id=None, link_type=None):
        """Delete the matching links (at least one argument); return how
        many."""

    # --- inventory graph reads (doc/inventory-api.md) --------------------
    @abc.abstractmethod
    def list_inventory(self, ids=None, types=None, project_ids=None,
                       parent_id=None, host=None, name=None, state=None,
                       limit=None, marker=None, deleted=False):
        """Inventory objects ordered by id, only those matching every
        given filter (``ids``, ``types``, ``project_ids``: collections;
        the others: one value compared for equality), only those whose
        id sorts after ``marker`` (stable paging: the last id of the
        previous page), at most ``limit``. Tombstones (``deleted_at``
        set or state "deleted") only with ``deleted``."""

    @abc.abstractmethod
    def adjacent_links(self, ids, outgoing=None, incoming=None,
                       deleted=False, exclude=None):
        """The links leaving the objects ``ids`` (``source_id`` in ids)
        whose type is in ``outgoing``, and those entering them
        (``target_id`` in ids) whose type is in ``incoming``, each once,
        ordered by (source_id, target_id, link_type). ``outgoing`` /
        ``incoming``: link types, None for any, empty for none;
        ``exclude``: ids whose links are left out when they are the
        other end (a traversal's previous level). One round trip
        whatever the number of ids: the graph traversals expand a whole
        frontier with it. Closed links (``deleted_at`` set or state
        "deleted") only with ``deleted``."""

    # --- monitoring channels and subscriptions ---------------------------
    @abc.abstractmethod
    def create_channel(self, channel):
        """Store a new channel (dict with ``id``, ``name``,
        ``tenant_list``, ...) and return it as stored; StorageError if the
        id exists."""

    @abc.abstractmethod
    def get_channels(self, ids=None):
        """Channels, all or these ids."""

    @abc.abstractmethod
    def update_channel(self, channel_id, changes):
        """Apply ``changes`` (dict) to a channel; return it, or None when
        there is no such channel."""

    @abc.abstractmethod
    def delete_channel(self, channel_id):
        """Delete a channel and its subscriptions; True if it existed."""

    @abc.abstractmethod
    def create_subscription(self, subscription):
        """Store a subscription (dict with ``id``, ``app_id``,
        ``channel_id``, ``target``, ``meters``, ``query``) and return it
        as stored, with its counters at zero; StorageError if the id
        exists. Bumps subscriptions_version."""

    @abc.abstractmethod
    def get_subscriptions(self, channel_id=None, ids=None):
        """Subscriptions, all, of a channel, or these ids."""

    @abc.abstractmethod
    def delete_subscription(self, subscription_id):
        """Delete a subscription and its counters; True if it existed.
        Bumps subscriptions_version (so does delete_channel when the
        channel had subscriptions)."""

    @abc.abstractmethod
    def subscriptions_version(self):
        """A number that changes whenever a subscription is created or
        deleted (0 before the first): agents poll it, cheaply, and read
        the subscriptions again only when it changed."""

    @abc.abstractmethod
    def add_subscription_counters(self, counters):
        """Add delivery counts: ``counters`` maps subscription ids to
        ``{"delivered": n, "dropped": n, "last_error": text or None}``
        (a None last_error keeps the stored one). Ids of subscriptions
        that no longer exist are ignored."""

    @abc.abstractmethod
    def get_subscription_counters(self, ids=None):
        """``{subscription id: {"delivered", "dropped", "last_error"}}``
        of the subscriptions that have counts, all or these ids."""

    # --- polling overrides (the probing level set through the API) -------
    @abc.abstractmethod
    def get_polling_overrides(self):
        """The overrides of polling.yaml's sources set at run time:
        ``{source_name: {field: value, ..., 'updated_at': ISO 8601}}``
        holding only the fields overridden (of ``POLLING_OVERRIDE_FIELDS``).
        """

    @abc.abstractmethod
    def set_polling_override(self, name, changes):
        """Merge ``changes`` (fields of ``POLLING_OVERRIDE_FIELDS``; a
        value of None drops that field's override) into the override of
        source ``name`` and stamp its ``updated_at``. Returns the override
        as stored, or None when no field is left overridden (the override
        is gone: the file's definition applies again). ValueError for
        another field. The values are checked by the caller."""
