"""MongoDB storage driver (pymongo).

Samples keep ``timestamp`` as a BSON date (for people and the TTL index)
and ``ts``, int64 microseconds since the epoch UTC: BSON dates stop at
milliseconds, so every query, sort and statistics bucket uses ``ts`` and
results are exact. ``recorded_at``/``recorded_ts`` likewise.

Filters compile the complex query (``query.py``) to Mongo filters that
reproduce ``query.matches`` exactly; statistics, meters and resources are
computed by the aggregation pipeline on the server. Only operators
mongomock also implements are used, so the unit and contract tests run
the very pipelines a server runs.

Metadata keys are stored with ``%``, ``.``, ``$`` and NUL percent-encoded
(MongoDB reserves them in field names) and decoded on the way out; keys
holding them cannot be queried, as in the reference semantics, where a
dotted field always means nesting.
"""

import contextlib
import datetime
import functools
import logging
import math
import re
import threading
import urllib.parse

import bson
import bson.errors
import pymongo
from pymongo import errors as mongo_errors

from calipso_agent import inventory
from calipso_agent import sample as sample_mod
from calipso_agent.storage import base
from calipso_agent.storage import query as query_mod

LOG = logging.getLogger(__name__)

DEFAULT_DATABASE = 'calipso'
TTL_INDEX = 'sample_ttl'
DUPLICATE_KEY = 11000
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_ONE_US = datetime.timedelta(microseconds=1)
# Shifts signed int64 microseconds to a fixed-width non-negative number,
# so the string (ts, sample id) keys compare in time order.
_KEY_OFFSET = 2 ** 63

_SAMPLE_INDEXES = (
    ('sample_name_ts', [('name', 1), ('ts', 1)]),
    ('sample_project_name_ts', [('project_id', 1), ('name', 1), ('ts', 1)]),
    ('sample_resource_ts', [('resource_id', 1), ('ts', 1)]),
)
_COMPARISON_OPS = {'=': '$eq', '!=': '$ne', '<': '$lt', '<=': '$lte',
                   '>': '$gt', '>=': '$gte'}
_FIELD_PATHS = {'id': '_id', 'timestamp': 'ts', 'recorded_at': 'recorded_ts'}
_OPTIONAL_STRINGS = ('unit', 'user_id', 'project_id', 'source',
                     'message_id')
_METER_FIELDS = ('name', 'type', 'unit', 'resource_id', 'project_id',
                 'user_id', 'source')
_METER_ORDER = ('name', 'resource_id', 'project_id', 'user_id', 'source',
                'type', 'unit')
_RESOURCE_INPUT = ['ts', 'name', 'type', 'unit', 'resource_id', 'project_id',
                   'user_id', 'source', 'resource_metadata']
_DEFAULT_AGGREGATES = ('count', 'min', 'max', 'avg', 'sum')
_NOT_ARRAY = {'$not': {'$type': 'array'}}
_KEY_ESCAPES = {'%': '%25', '.': '%2E', '$': '%24', '\0': '%00'}
_KEY_UNESCAPES = {v: k for k, v in _KEY_ESCAPES.items()}
_ESCAPED = re.compile('|'.join(map(re.escape, _KEY_UNESCAPES)))
_TO_ESCAPE = re.compile('[%.$\0]')
_IN_CHUNK = 1000


def _translate_errors(func):
    """pymongo errors (unreachable, refused) become StorageError."""

    @functools.wraps(func)
    def wrapper(self, *args, **kwargs):
        try:
            return func(self, *args, **kwargs)
        except _UNAVAILABLE as exc:
            raise base.StorageUnavailableError(
                f'MongoDB {func.__name__} failed: {exc}') from exc
        except _REFUSED_DATA as exc:
            raise base.StorageDataError(
                f'MongoDB {func.__name__} refused the data: {exc}') from exc
        except mongo_errors.PyMongoError as exc:
            raise base.StorageError(
                f'MongoDB {func.__name__} failed: {exc}') from exc
    return wrapper


# The server is away or slow: the same write may succeed later.
_UNAVAILABLE = (mongo_errors.ConnectionFailure, mongo_errors.ExecutionTimeout,
                mongo_errors.WTimeoutError, mongo_errors.NotPrimaryError)
# The documents can never be written as they are.
_REFUSED_DATA = (mongo_errors.DocumentTooLarge, bson.errors.InvalidDocument,
                 bson.errors.InvalidStringData)


# --- values --------------------------------------------------------------

def _micros(ts):
    return (ts - _EPOCH) // _ONE_US


def _instant(micros):
    return _EPOCH + datetime.timedelta(microseconds=micros)


def _iso(micros):
    return _instant(micros).isoformat()


def _escape_key(key):
    key = key if isinstance(key, str) else str(key)
    if _TO_ESCAPE.search(key):
        return _TO_ESCAPE.sub(lambda m: _KEY_ESCAPES[m.group()], key)
    return key


def _unescape_key(key):
    if '%' in key:
        return _ESCAPED.sub(lambda m: _KEY_UNESCAPES[m.group()], key)
    return key


def _clean(value):
    """``value`` as BSON can hold it: escaped keys, lists for tuples,
    ISO strings for dates, str() for what BSON has no type for."""
    if isinstance(value, dict):
        return {_escape_key(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, (str, bool, float)):
        return value
    if isinstance(value, int):
        if -2 ** 63 <= value < 2 ** 63:
            return value
        try:
            return float(value)
        except OverflowError:
            return str(value)
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    return str(value)


def _restore(value):
    """The inverse of ``_clean``'s key escaping."""
    if isinstance(value, dict):
        return {_unescape_key(k): _restore(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore(v) for v in value]
    return value


def _check_limit(limit):
    """None (no limit) or a non-negative int; 0 asks for nothing."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise base.InvalidQuery(f'limit {limit!r} is not a non-negative '
                                'integer')
    return limit


def _as_list(values):
    if values is None:
        return None
    if isinstance(values, str):
        return [values]
    return list(values)


def _database_name(url):
    path = urllib.parse.urlsplit(url).path.lstrip('/')
    return urllib.parse.unquote(path) or DEFAULT_DATABASE


# --- the complex query as a Mongo filter ---------------------------------

def _kind(value):
    """The BSON $type alias of a (validated) metadata term value."""
    if isinstance(value, bool):
        return 'bool'
    if isinstance(value, (int, float)):
        return 'number'
    return 'string'


def _metadata_term(op, field, value):
    """A metadata leaf: the value must exist, be of the term's kind, not be
    an array, nor sit below one (Mongo would look into arrays)."""
    parts = field.split('.')
    terms = [{'.'.join(parts[:i]): _NOT_ARRAY}
             for i in range(2, len(parts))]
    if op == 'like':
        conditions = [{'$type': 'string',
                       '$regex': _like_pattern(value)}]
    elif op == 'in':
        by_kind = {}
        for item in value:
            by_kind.setdefault(_kind(item), []).append(item)
        conditions = [{'$type': kind, '$in': items}
                      for kind, items in sorted(by_kind.items())]
    else:
        condition = {'$type': _kind(value), _COMPARISON_OPS[op]: value}
        if condition['$type'] == 'number' and op in ('<', '<='):
            # Mongo orders NaN below every number; Python's NaN compares
            # false. -inf <= x holds for every number but NaN.
            condition['$gte'] = -math.inf
        conditions = [condition]
    for condition in conditions:
        condition.update(_NOT_ARRAY)
    alternatives = [{field: condition} for condition in conditions]
    terms.append(alternatives[0] if len(alternatives) == 1
                 else {'$or': alternatives})
    return terms[0] if len(terms) == 1 else {'$and': terms}


def _field_term(op, field, value):
    path = _FIELD_PATHS.get(field, field)
    if field in query_mod.TIME_FIELDS:
        value = ([_micros(v) for v in value] if op == 'in'
                 else _micros(value))
    if op == 'like':
        return {path: {'$type': 'string',
                       '$regex': _like_pattern(value)}}
    if op == 'in':
        return {path: {'$in': value}}
    condition = {_COMPARISON_OPS[op]: value}
    if field in query_mod.STRING_FIELDS:
        # Unset user/project ids are null, which $ne would match.
        condition['$type'] = 'string'
    return {path: condition}


def compile_filter(expression):
    """The Mongo filter of a validated complex-query expression."""
    if expression is None:
        return {}
    ((op, operand),) = expression.items()
    if op in ('and', 'or'):
        return {'$' + op: [compile_filter(e) for e in operand]}
    if op == 'not':
        return {'$nor': [compile_filter(operand)]}
    ((field, value),) = operand.items()
    if field.startswith(query_mod.METADATA_PREFIX):
        return _metadata_term(op, field, value)
    return _field_term(op, field, value)


def _expression(sample_filter):
    return sample_filter.expression() if sample_filter is not None else None


# --- documents -----------------------------------------------------------

def _sample_document(sample, now):
    """The stored form of a valid sample; ValueError says why it cannot
    be stored."""
    for field in _OPTIONAL_STRINGS:
        value = getattr(sample, field)
        if value is not None and not isinstance(value, str):
            raise ValueError(f'{field} {value!r} is not a string')
    ts = base.parse_timestamp(sample.timestamp)
    recorded = now
    if sample.recorded_at is not None:
        try:
            recorded = base.parse_timestamp(sample.recorded_at)
        except (TypeError, ValueError):
            recorded = now
    return {
        '_id': sample.id,
        'name': sample.name,
        'type': sample.type,
        'unit': sample.unit,
        'volume': float(sample.volume),
        'user_id': sample.user_id,
        'project_id': sample.project_id,
        'resource_id': sample.resource_id,
        'source': sample.source,
        'message_id': sample.message_id,
        'resource_metadata': _clean(sample.resource_metadata or {}),
        'timestamp': ts,
        'ts': bson.Int64(_micros(ts)),
        'recorded_at': recorded,
        'recorded_ts': bson.Int64(_micros(recorded)),
    }


def _sample_from_document(doc):
    return sample_mod.Sample(
        name=doc['name'], type=doc['type'], unit=doc.get('unit'),
        volume=doc['volume'], user_id=doc.get('user_id'),
        project_id=doc.get('project_id'), resource_id=doc['resource_id'],
        timestamp=_iso(doc['ts']),
        resource_metadata=_restore(doc.get('resource_metadata') or {}),
        source=doc.get('source'), message_id=doc.get('message_id'),
        id=doc['_id'], recorded_at=_iso(doc['recorded_ts']))


def _latest_key(doc):
    """Orders samples by (ts, id) as one string: the resource record keeps
    the metadata of the greatest, whatever order batches arrive in."""
    return f'{doc["ts"] + _KEY_OFFSET:020d}/{doc["_id"]}'


def _like_pattern(value):
    """The LIKE regex for the server: ``(?!\\n)$`` ends the match at the very
    end on PCRE and Python alike (``\\Z`` differs between them)."""
    pattern = query_mod.like_regex(value).pattern
    return pattern[:-len(r'\Z')] + r'(?!\n)$'


def _meter_sort_key(meter):
    return tuple((v is None, v or '') for v in meter.as_dict().values())


def _stored_object(obj, required):
    if not isinstance(obj, dict):
        raise ValueError(f'{obj!r} is not a mapping')
    for field in required:
        if not isinstance(obj.get(field), str) or not obj[field]:
            raise ValueError(f'{field} is missing or not a string in '
                             f'{obj!r}')
    return _clean(obj)


def _object_from_document(doc):
    return _restore({k: v for k, v in doc.items()
                     if k not in ('_id', '_event_ts')})


def _not_newer(micros):
    """The documents a write of an event at ``micros`` may replace."""
    return {'$or': [{'_event_ts': {'$lte': micros}},
                    {'_event_ts': {'$exists': False}}]}


class _InventoryBatch(inventory.InventoryBatch):
    """Reads and the write of ``apply_inventory``. MongoDB has no
    transaction here: each document is replaced on its own, guarded by
    its event time, and a batch that fails midway is applied again whole
    (the rules make a repeat change nothing)."""

    def __init__(self, store):
        self.store = store
        self.db = store.db

    @_translate_errors
    def objects(self, ids):
        return [_object_from_document(d) for d in self.db.inventory.find(
            {'_id': {'$in': sorted(set(ids))}})]

    @_translate_errors
    def children(self, parent_ids):
        return [_object_from_document(d) for d in self.db.inventory.find(
            {'parent_id': {'$in': sorted(set(parent_ids))}})]

    @_translate_errors
    def links_from(self, source_ids):
        return [_object_from_document(d) for d in self.db.link.find(
            {'source_id': {'$in': sorted(set(source_ids))}})]

    @_translate_errors
    def links_of(self, ids):
        ids = sorted(set(ids))
        return [_object_from_document(d) for d in self.db.link.find(
            {'$or': [{'source_id': {'$in': ids}},
                     {'target_id': {'$in': ids}}]})]

    @_translate_errors
    def write(self, objects, links):
        for obj in objects:
            doc = _stored_object(obj, ('id', 'type'))
            doc['_id'] = obj['id']
            doc['_event_ts'] = bson.Int64(_micros(
                base.parse_timestamp(obj['last_event_at'])))
            self._replace({'_id': obj['id']}, doc, self.db.inventory)
        for link in links:
            doc = _stored_object(link, ('source_id', 'target_id',
                                        'link_type'))
            doc['_event_ts'] = bson.Int64(_micros(
                base.parse_timestamp(link['last_event_at'])))
            triple = {f: doc[f] for f in ('source_id', 'target_id',
                                          'link_type')}
            self._replace(triple, doc, self.db.link)

    @staticmethod
    def _replace(key, doc, collection):
        try:
            collection.replace_one(dict(key, **_not_newer(doc['_event_ts'])),
                                   doc, upsert=True)
        except mongo_errors.DuplicateKeyError:
            # Stored with a later event meanwhile: that one stays.
            pass


class Connection(base.Connection):
    """MongoDB storage; ``client`` replaces ``pymongo.MongoClient(url)``
    (tests give a mongomock client)."""

    def __init__(self, conf, url, client=None):
        super().__init__(conf, url)
        self._owns_client = client is None
        self._inventory_lock = threading.Lock()
        self.client = (pymongo.MongoClient(url) if client is None
                       else client)
        self.db = self.client.get_database(_database_name(url))

    def close(self):
        if self._owns_client:
            self.client.close()

    # --- schema -----------------------------------------------------------
    @_translate_errors
    def upgrade(self):
        existing = set(self.db.list_collection_names())
        samples = self.db.sample
        for name, keys in _SAMPLE_INDEXES:
            samples.create_index(keys, name=name)
        self._ensure_ttl(self.conf.database.metering_time_to_live)
        self.db.resource.create_index([('first_ts', 1)],
                                      name='resource_first_ts')
        self.db.resource.create_index([('last_ts', 1)],
                                      name='resource_last_ts')
        self.db.inventory.create_index([('type', 1)], name='inventory_type')
        self.db.inventory.create_index([('project_id', 1)],
                                       name='inventory_project')
        self.db.inventory.create_index([('parent_id', 1)],
                                       name='inventory_parent')
        self.db.inventory.create_index([('host', 1)], name='inventory_host')
        self.db.link.create_index(
            [('source_id', 1), ('target_id', 1), ('link_type', 1)],
            name='link_triple', unique=True)
        self.db.link.create_index([('target_id', 1)], name='link_target')
        self.db.link.create_index([('project_id', 1)], name='link_project')
        self.db.subscription.create_index([('channel_id', 1)],
                                          name='subscription_channel')
        if 'sample' not in existing:
            return (f'created the collections and indexes in database '
                    f'{self.db.name}')
        return f'indexes of database {self.db.name} are up to date'

    def _ensure_ttl(self, ttl):
        """The TTL index on ``timestamp`` when ttl > 0, none otherwise.

        A changed ttl drops and recreates the index (collMod would avoid
        the rebuild, but mongomock lacks it; the result is the same).
        """
        samples = self.db.sample
        existing = samples.index_information().get(TTL_INDEX)
        if existing is not None and (
                ttl is None or ttl <= 0 or
                existing.get('expireAfterSeconds') != ttl):
            samples.drop_index(TTL_INDEX)
            existing = None
        if existing is None and ttl is not None and ttl > 0:
            samples.create_index([('timestamp', 1)], name=TTL_INDEX,
                                 expireAfterSeconds=ttl)

    @_translate_errors
    def ping(self):
        self.client.admin.command('ping')

    # --- samples ----------------------------------------------------------
    @_translate_errors
    def record_samples(self, samples):
        """Store samples idempotently by id; ``stored`` counts the samples
        that were new.

        The resource records are folded from the stored version of every
        sample of the batch, new or not: a batch redelivered after a
        failure between the two writes completes them, and a known id
        with other content changes nothing.
        """
        result = base.RecordResult()
        now = datetime.datetime.now(datetime.UTC)
        docs = {}
        holders = {}
        for sample in samples:
            reason = base.validate_sample(sample)
            if reason is None:
                try:
                    doc = _sample_document(sample, now)
                except (TypeError, ValueError) as exc:
                    reason = str(exc)
            if reason is not None:
                self._reject(result, sample, reason)
                continue
            docs.setdefault(doc['_id'], doc)
            holders.setdefault(doc['_id'], []).append(sample)
        known, failures = self._insert_samples(list(docs.values()))
        for sample_id, reason in failures.items():
            del docs[sample_id]
            for sample in holders.pop(sample_id):
                self._reject(result, sample, reason)
        for sample_id in known:
            del docs[sample_id]
        result.stored = len(docs)
        folded = list(docs.values())
        if known:
            folded += self.db.sample.find({'_id': {'$in': known}},
                                          projection=_RESOURCE_INPUT)
        self._update_resources(folded)
        return result

    @staticmethod
    def _reject(result, sample, reason):
        LOG.debug('Sample %s rejected: %s', getattr(sample, 'id', None),
                  reason)
        result.rejected.append((sample, reason))

    def _insert_samples(self, docs):
        """Insert the new samples, leaving stored ids alone; returns the
        ids already stored and {id: reason} of the documents refused."""
        known, failures = [], {}
        if not docs:
            return known, failures
        try:
            self.db.sample.insert_many(docs, ordered=False)
        except mongo_errors.BulkWriteError as exc:
            details = exc.details or {}
            if details.get('writeConcernErrors'):
                raise
            for error in details.get('writeErrors', ()):
                sample_id = docs[error['index']]['_id']
                if error.get('code') == DUPLICATE_KEY:
                    known.append(sample_id)
                else:
                    failures[sample_id] = error.get('errmsg', '')
        except bson.errors.InvalidDocument:
            # A document BSON cannot hold (too large): find it.
            for doc in docs:
                try:
                    self.db.sample.insert_one(doc)
                except mongo_errors.DuplicateKeyError:
                    known.append(doc['_id'])
                except bson.errors.InvalidDocument as exc:
                    failures[doc['_id']] = str(exc)
        return known, failures

    def _update_resources(self, docs):
        """Fold the samples into their resources' records.

        Every change is idempotent ($min, $max, $addToSet, and the latest
        sample's fields set only when its (ts, id) key is greater than the
        stored one), so redelivered and out-of-order batches leave the
        record as if the samples had come once, in order.
        """
        resources = {}
        for doc in docs:
            entry = resources.setdefault(doc['resource_id'], {
                'first': doc['ts'], 'last': doc['ts'], 'latest': doc,
                'meters': {}})
            entry['first'] = min(entry['first'], doc['ts'])
            entry['last'] = max(entry['last'], doc['ts'])
            if _latest_key(doc) > _latest_key(entry['latest']):
                entry['latest'] = doc
            meter = {'name': doc['name'], 'type': doc['type'],
                     'unit': doc['unit']}
            entry['meters'][tuple(meter.values())] = meter
        for resource_id, entry in sorted(resources.items()):
            latest = entry['latest']
            key = _latest_key(latest)
            always = {
                '$min': {'first_ts': bson.Int64(entry['first'])},
                '$max': {'last_ts': bson.Int64(entry['last'])},
                '$addToSet': {'meters': {'$each': [
                    entry['meters'][k] for k in sorted(
                        entry['meters'], key=str)]}},
            }
            full = dict(always, **{'$set': {
                'latest_key': key,
                'project_id': latest['project_id'],
                'user_id': latest['user_id'],
                'source': latest['source'],
                'metadata': latest['resource_metadata'],
            }})
            newer = {'_id': resource_id,
                     '$or': [{'latest_key': {'$lt': key}},
                             {'latest_key': {'$exists': False}}]}
            try:
                self.db.resource.update_one(newer, full, upsert=True)
            except mongo_errors.DuplicateKeyError:
                # The record exists with a later sample, or a concurrent
                # writer just created it: retry without inserting.
                if not self.db.resource.update_one(newer,
                                                   full).matched_count:
                    self.db.resource.update_one({'_id': resource_id},
                                                always)

    @_translate_errors
    def query_samples(self, filter_expr=None, orderby=None, limit=None):
        expression = (query_mod.validate(filter_expr)
                      if filter_expr is not None else None)
        order = (query_mod.validate_orderby(orderby) or
                 [('timestamp', 'desc')])
        sort = [(_FIELD_PATHS.get(field, field),
                 pymongo.ASCENDING if direction == 'asc'
                 else pymongo.DESCENDING) for field, direction in order]
        if not any(path == '_id' for path, _ in sort):
            sort.append(('_id', pymongo.ASCENDING))
        limit = _check_limit(limit)
        if limit == 0:
            return []
        cursor = self.db.sample.find(
            compile_filter(expression),
            projection={'timestamp': False, 'recorded_at': False},
            sort=sort, limit=limit or 0)
        return [_sample_from_document(doc) for doc in cursor]

    def _aggregate(self, pipeline):
        return list(self.db.sample.aggregate(pipeline, allowDiskUse=True))

    @_translate_errors
    def get_meters(self, sample_filter=None, limit=None, unique=False):
        """Distinct (name, type, unit, resource, project, user, source)
        of the matching samples; ``unique``: per name, the latest
        sample's."""
        limit = _check_limit(limit)
        if limit == 0:
            return []
        pipeline = [{'$match': compile_filter(_expression(sample_filter))}]
        if unique:
            pipeline += [
                {'$sort': {'ts': -1, '_id': -1}},
                {'$group': {'_id': '$name', **{
                    f: {'$first': '$' + f} for f in _METER_FIELDS
                    if f != 'name'}}},
                {'$sort': {'_id': 1}},
            ]
        else:
            pipeline += [
                {'$group': {'_id': {f: '$' + f for f in _METER_FIELDS}}},
                {'$sort': {'_id.' + f: 1 for f in _METER_ORDER}},
            ]
        if limit:
            pipeline.append({'$limit': limit})
        meters = []
        for doc in self._aggregate(pipeline):
            fields = ({'name': doc['_id'], **doc} if unique
                      else doc['_id'])
            meters.append(base.Meter(**{f: fields[f]
                                        for f in _METER_FIELDS}))
        return meters

    @_translate_errors
    def get_resources(self, sample_filter=None, limit=None):
        """Resources of the matching samples: first/last of those samples,
        project, user, source and metadata of the latest of them."""
        limit = _check_limit(limit)
        if limit == 0:
            return []
        meter = {f: '$' + f for f in _METER_FIELDS if f != 'resource_id'}
        pipeline = [
            {'$match': compile_filter(_expression(sample_filter))},
            {'$sort': {'ts': -1, '_id': -1}},
            {'$group': {
                '_id': '$resource_id',
                'first': {'$min': '$ts'},
                'last': {'$max': '$ts'},
                'project_id': {'$first': '$project_id'},
                'user_id': {'$first': '$user_id'},
                'source': {'$first': '$source'},
                'metadata': {'$first': '$resource_metadata'},
                'meters': {'$addToSet': meter},
            }},
            {'$sort': {'_id': 1}},
        ]
        if limit:
            pipeline.append({'$limit': limit})
        resources = []
        for doc in self._aggregate(pipeline):
            meters = sorted((base.Meter(resource_id=doc['_id'], **m)
                             for m in doc['meters']), key=_meter_sort_key)
            resources.append(base.Resource(
                resource_id=doc['_id'], project_id=doc['project_id'],
                user_id=doc['user_id'], source=doc['source'],
                first_sample_timestamp=_instant(doc['first']),
                last_sample_timestamp=_instant(doc['last']),
                metadata=_restore(doc['metadata'] or {}), meters=meters))
        return resources

    @_translate_errors
    def get_statistics(self, sample_filter, period=None, groupby=None,
                       aggregates=None):
        """Statistics per base.Connection.get_statistics, computed by the
        aggregation pipeline.

        Buckets are floor((ts - origin) / period) in integer microseconds.
        stddev uses the sums of (volume - shift) and of its square, shift
        being the mean of all matching samples, which keeps the
        cancellation of sum-of-squares small ($stdDevPop would do, but
        mongomock lacks it); a group whose min equals its max has 0.
        """
        period, groupby, aggregates = base.check_statistics_args(
            period, groupby, aggregates)
        period_us = round(period * 1_000_000) if period else None
        if period and period_us < 1:
            raise base.InvalidQuery('period is shorter than a microsecond')
        match = compile_filter(_expression(sample_filter))
        functions = ({f for f, _ in aggregates} if aggregates
                     else set(_DEFAULT_AGGREGATES))
        start = (sample_filter.start_timestamp
                 if sample_filter is not None else None)
        origin = _micros(start) if start is not None else None
        shift = 0.0
        if (period and origin is None) or 'stddev' in functions:
            overall = self._aggregate([
                {'$match': match},
                {'$group': {'_id': None, 'first': {'$min': '$ts'},
                            'mean': {'$avg': '$volume'}}},
            ])
            if not overall:
                return []
            if origin is None:
                origin = overall[0]['first']
            shift = overall[0]['mean']
        pipeline = [
            {'$match': match},
            {'$group': self._statistics_group(
                groupby, functions, aggregates, origin, period_us, shift)},
            {'$project': self._statistics_projection(functions,
                                                     aggregates)},
            {'$sort': {**({'_id.bucket': 1} if period else {}),
                       **{f'_id.g{i}': 1 for i in range(len(groupby))},
                       '_id.unit': 1}},
        ]
        return [self._statistics(doc, period, groupby, aggregates, origin,
                                 period_us)
                for doc in self._aggregate(pipeline)]

    @staticmethod
    def _statistics_group(groupby, functions, aggregates, origin,
                          period_us, shift):
        key = {'unit': '$unit'}
        for index, field in enumerate(groupby):
            value = '$' + field
            # Missing keys group with null; 1 and 1.0 group together
            # (mongomock keeps int and double apart; $add makes both
            # double, on a server too).
            key[f'g{index}'] = {'$cond': [{'$isNumber': value},
                                          {'$add': [value, 0.0]},
                                          {'$ifNull': [value, None]}]}
            # Keeps true and 1 apart where group keys are compared the
            # Python way (mongomock); a server already does.
            key[f'n{index}'] = {'$isNumber': value}
        if period_us:
            key['bucket'] = {'$floor': {'$divide': [
                {'$subtract': ['$ts', origin]}, period_us]}}
        group = {'_id': key, 'count': {'$sum': 1},
                 'first': {'$min': '$ts'}, 'last': {'$max': '$ts'}}
        if functions & {'sum', 'avg'}:
            group['sum'] = {'$sum': '$volume'}
        if functions & {'min', 'stddev'}:
            group['min'] = {'$min': '$volume'}
        if functions & {'max', 'stddev'}:
            group['max'] = {'$max': '$volume'}
        if 'stddev' in functions:
            deviation = {'$subtract': ['$volume', shift]}
            group['dsum'] = {'$sum': deviation}
            group['dsq'] = {'$sum': {'$multiply': [deviation, deviation]}}
        for func, param in aggregates:
            if func == 'cardinality':
                group['card_' + param] = {'$addToSet': '$' + param}
        return group

    @staticmethod
    def _statistics_projection(functions, aggregates):
        projection = {'count': 1, 'first': 1, 'last': 1}
        for func in ('sum', 'min', 'max'):
            if func in functions:
                projection[func] = 1
        if 'avg' in functions:
            projection['avg'] = {'$divide': ['$sum', '$count']}
        if 'stddev' in functions:
            mean = {'$divide': ['$dsum', '$count']}
            variance = {'$subtract': [{'$divide': ['$dsq', '$count']},
                                      {'$multiply': [mean, mean]}]}
            projection['stddev'] = {'$cond': [
                {'$eq': ['$min', '$max']}, 0.0,
                {'$sqrt': {'$max': [0.0, variance]}}]}
        for func, param in aggregates:
            if func == 'cardinality':
                # Distinct values, null (an unset id) not counted.
                projection['card_' + param] = {'$size': {'$filter': {
                    'input': '$card_' + param,
                    'cond': {'$ne': ['$$this', None]}}}}
        return projection

    @staticmethod
    def _statistics(doc, period, groupby, aggregates, origin, period_us):
        key = doc['_id']
        first, last = _instant(doc['first']), _instant(doc['last'])
        if period:
            period_start = _instant(origin) + datetime.timedelta(
                microseconds=int(key['bucket']) * period_us)
            period_end = period_start + datetime.timedelta(
                microseconds=period_us)
        else:
            period_start, period_end = first, last
        stats = base.Statistics(
            unit=key['unit'], period=period or 0, period_start=period_start,
            period_end=period_end, duration_start=first, duration_end=last,
            duration=(doc['last'] - doc['first']) / 1e6,
            groupby=({field: _restore(key[f'g{index}'])
                      for index, field in enumerate(groupby)}
                     if groupby else None),
            aggregate={})
        if not aggregates:
            for func in _DEFAULT_AGGREGATES:
                setattr(stats, func, doc[func])
            return stats
        for func, param in aggregates:
            if func == 'cardinality':
                stats.aggregate[f'cardinality/{param}'] = doc['card_' + param]
            else:
                setattr(stats, func, doc[func])
                stats.aggregate[func] = doc[func]
        return stats

    @_translate_errors
    def clear_expired_samples(self, ttl):
        """Delete samples whose timestamp is more than ``ttl`` seconds old
        (none when ttl <= 0, which keeps samples forever), the resources
        left without samples, and move the others' first timestamp."""
        if ttl is None or ttl <= 0:
            return 0
        cutoff = bson.Int64(
            _micros(datetime.datetime.now(datetime.UTC)) -
            round(ttl * 1_000_000))
        deleted = self.db.sample.delete_many(
            {'ts': {'$lt': cutoff}}).deleted_count
        self.db.resource.delete_many({'last_ts': {'$lt': cutoff}})
        stale = [doc['_id'] for doc in self.db.resource.find(
            {'first_ts': {'$lt': cutoff}}, projection={'_id': True})]
        for offset in range(0, len(stale), _IN_CHUNK):
            chunk = stale[offset:offset + _IN_CHUNK]
            firsts = {doc['_id']: doc['first'] for doc in self._aggregate([
                {'$match': {'resource_id': {'$in': chunk}}},
                {'$group': {'_id': '$resource_id',
                            'first': {'$min': '$ts'}}},
            ])}
            gone = [rid for rid in chunk if rid not in firsts]
            if gone:
                self.db.resource.delete_many({'_id': {'$in': gone}})
            for resource_id, first in firsts.items():
                self.db.resource.update_one(
                    {'_id': resource_id},
                    {'$set': {'first_ts': bson.Int64(first)}})
        return deleted

    # --- inventory --------------------------------------------------------
    @_translate_errors
    def upsert_inventory(self, objects):
        """Replace each object unless the stored one has a later or equal
        ``last_event_at``; the condition is checked by the server, so
        concurrent writers cannot put an older state back."""
        prepared = []
        for obj in objects:
            doc = _stored_object(obj, ('id', 'type'))
            try:
                event = base.parse_timestamp(obj.get('last_event_at'))
            except (TypeError, ValueError):
                raise ValueError(f'inventory object {obj["id"]}: '
                                 f'last_event_at {obj.get("last_event_at")!r}'
                                 ' is not a timestamp')
            doc['_id'] = obj['id']
            doc['_event_ts'] = bson.Int64(_micros(event))
            prepared.append(doc)
        written = 0
        for doc in prepared:
            older = {'_id': doc['_id'],
                     '$or': [{'_event_ts': {'$lt': doc['_event_ts']}},
                             {'_event_ts': {'$exists': False}}]}
            try:
                result = self.db.inventory.replace_one(older, doc,
                                                       upsert=True)
            except mongo_errors.DuplicateKeyError:
                # Stored with a later event, or just created by another
                # writer: replace only if ours is still newer.
                result = self.db.inventory.replace_one(older, doc)
                written += result.matched_count
                continue
            written += result.matched_count + (result.upserted_id
                                               is not None)
        return written

    def apply_inventory(self, objects=(), links=()):
        # Merged as BSON holds them (an integer beyond 64 bits is a float
        # there): a redelivery then equals what it stored.
        return super().apply_inventory(
            [_restore(_clean(o)) for o in objects],
            [_restore(_clean(lk)) for lk in links])

    @contextlib.contextmanager
    def _inventory_batch(self):
        # One batch at a time in this process; processes sharing the
        # database are not kept apart (doc/inventory.md).
        with self._inventory_lock:
            yield _InventoryBatch(self)

    @_translate_errors
    def get_inventory(self, ids=None, types=None, project_ids=None,
                      limit=None):
        query = {}
        for path, values in (('_id', ids), ('type', types),
                             ('project_id', project_ids)):
            values = _as_list(values)
            if values is not None:
                query[path] = {'$in': values}
        limit = _check_limit(limit)
        if limit == 0:
            return []
        cursor = self.db.inventory.find(query, sort=[('_id', 1)],
                                        limit=limit or 0)
        return [_object_from_document(doc) for doc in cursor]

    @_translate_errors
    def delete_inventory(self, ids):
        ids = _as_list(ids) or []
        if not ids:
            return 0
        deleted = self.db.inventory.delete_many(
            {'_id': {'$in': ids}}).deleted_count
        self.db.link.delete_many({'$or': [{'source_id': {'$in': ids}},
                                          {'target_id': {'$in': ids}}]})
        return deleted

    @_translate_errors
    def upsert_links(self, links):
        """Store links, one per (source_id, target_id, link_type); return
        how many were written."""
        prepared = [_stored_object(link, ('source_id', 'target_id',
                                          'link_type')) for link in links]
        for doc in prepared:
            triple = {f: doc[f] for f in ('source_id', 'target_id',
                                          'link_type')}
            try:
                self.db.link.replace_one(triple, doc, upsert=True)
            except mongo_errors.DuplicateKeyError:
                # A concurrent writer inserted the same triple.
                self.db.link.replace_one(triple, doc)
        return len(prepared)

    @staticmethod
    def _link_query(source_id, target_id, link_type, project_ids=None):
        query = {f: v for f, v in (('source_id', source_id),
                                   ('target_id', target_id),
                                   ('link_type', link_type))
                 if v is not None}
        project_ids = _as_list(project_ids)
        if project_ids is not None:
            query['project_id'] = {'$in': project_ids}
        return query

    @_translate_errors
    def get_links(self, source_id=None, target_id=None, link_type=None,
                  project_ids=None):
        cursor = self.db.link.find(
            self._link_query(source_id, target_id, link_type, project_ids),
            sort=[('source_id', 1), ('target_id', 1), ('link_type', 1)])
        return [_object_from_document(doc) for doc in cursor]

    @_translate_errors
    def delete_links(self, source_id=None, target_id=None, link_type=None):
        if source_id is None and target_id is None and link_type is None:
            raise ValueError('delete_links needs source_id, target_id or '
                             'link_type')
        return self.db.link.delete_many(
            self._link_query(source_id, target_id, link_type)).deleted_count

    # --- inventory graph reads --------------------------------------------
    @staticmethod
    def _live(query, deleted):
        """``query`` without tombstones and closed links unless
        ``deleted``."""
        if deleted:
            return query
        return {'$and': [query, {'deleted_at': None},
                         {'state': {'$ne': 'deleted'}}]}

    @_translate_errors
    def list_inventory(self, ids=None, types=None, project_ids=None,
                       parent_id=None, host=None, name=None, state=None,
                       limit=None, marker=None, deleted=False):
        limit = _check_limit(limit)
        if limit == 0:
            return []
        query = {}
        for path, values in (('_id', ids), ('type', types),
                             ('project_id', project_ids)):
            values = _as_list(values)
            if values is not None:
                query[path] = {'$in': values}
        for path, value in (('parent_id', parent_id), ('host', host),
                            ('name', name), ('state', state)):
            if value is not None:
                query[path] = value
        if marker is not None:
            query.setdefault('_id', {})['$gt'] = marker
        cursor = self.db.inventory.find(self._live(query, deleted),
                                        sort=[('_id', 1)], limit=limit or 0)
        return [_object_from_document(doc) for doc in cursor]

    @_translate_errors
    def adjacent_links(self, ids, outgoing=None, incoming=None,
                       deleted=False, exclude=None):
        """One find with an $or per direction: the batched frontier
        expansion of the traversals ($graphLookup cannot follow each
        link type in its own direction, and mongomock lacks it)."""
        ids = _as_list(ids) or []
        if not ids:
            return []
        exclude = sorted(set(_as_list(exclude) or ()) - set(ids))
        branches = []
        for field, other, types in (('source_id', 'target_id', outgoing),
                                    ('target_id', 'source_id', incoming)):
            types = _as_list(types)
            if types is not None and not types:
                continue
            branch = {field: {'$in': ids}}
            if exclude:
                branch[other] = {'$nin': exclude}
            if types is not None:
                branch['link_type'] = {'$in': types}
            branches.append(branch)
        if not branches:
            return []
        cursor = self.db.link.find(
            self._live({'$or': branches}, deleted),
            sort=[('source_id', 1), ('target_id', 1), ('link_type', 1)])
        return [_object_from_document(doc) for doc in cursor]

    # --- monitoring channels and subscriptions ----------------------------
    @_translate_errors
    def create_channel(self, channel):
        doc = _stored_object(channel, ('id',))
        doc['_id'] = channel['id']
        try:
            self.db.channel.insert_one(doc)
        except mongo_errors.DuplicateKeyError:
            raise base.StorageError(f'channel {channel["id"]} exists')
        return _object_from_document(doc)

    @_translate_errors
    def get_channels(self, ids=None):
        ids = _as_list(ids)
        query = {} if ids is None else {'_id': {'$in': ids}}
        return [_object_from_document(doc)
                for doc in self.db.channel.find(query, sort=[('_id', 1)])]

    @_translate_errors
    def update_channel(self, channel_id, changes):
        changes = _clean(dict(changes))
        if changes.get('id', channel_id) != channel_id:
            raise ValueError(f'channel {channel_id}: the id cannot change')
        changes.pop('id', None)
        changes.pop('_id', None)
        if not changes:
            doc = self.db.channel.find_one({'_id': channel_id})
        else:
            doc = self.db.channel.find_one_and_update(
                {'_id': channel_id}, {'$set': changes},
                return_document=pymongo.ReturnDocument.AFTER)
        return _object_from_document(doc) if doc is not None else None

    @_translate_errors
    def delete_channel(self, channel_id):
        existed = self.db.channel.delete_one(
            {'_id': channel_id}).deleted_count > 0
        owned = [doc['_id'] for doc in self.db.subscription.find(
            {'channel_id': channel_id}, projection=['_id'])]
        if owned:
            self.db.subscription_counter.delete_many(
                {'_id': {'$in': owned}})
            self.db.subscription.delete_many({'channel_id': channel_id})
            self._bump_subscriptions_version()
        return existed

    def _bump_subscriptions_version(self):
        self.db.subscription_version.update_one(
            {'_id': 1}, {'$inc': {'version': 1}}, upsert=True)

    @_translate_errors
    def create_subscription(self, subscription):
        doc = _stored_object(subscription, ('id',))
        doc['_id'] = subscription['id']
        try:
            self.db.subscription.insert_one(doc)
        except mongo_errors.DuplicateKeyError:
            raise base.StorageError(
                f'subscription {subscription["id"]} exists')
        self.db.subscription_counter.delete_one({'_id': subscription['id']})
        self._bump_subscriptions_version()
        return _object_from_document(doc)

    @_translate_errors
    def get_subscriptions(self, channel_id=None, ids=None):
        query = {}
        if channel_id is not None:
            query['channel_id'] = channel_id
        ids = _as_list(ids)
        if ids is not None:
            query['_id'] = {'$in': ids}
        return [_object_from_document(doc) for doc in
                self.db.subscription.find(query, sort=[('_id', 1)])]

    @_translate_errors
    def delete_subscription(self, subscription_id):
        self.db.subscription_counter.delete_one({'_id': subscription_id})
        deleted = self.db.subscription.delete_one(
            {'_id': subscription_id}).deleted_count > 0
        if deleted:
            self._bump_subscriptions_version()
        return deleted

    @_translate_errors
    def subscriptions_version(self):
        doc = self.db.subscription_version.find_one({'_id': 1})
        return doc['version'] if doc else 0

    @_translate_errors
    def add_subscription_counters(self, counters):
        if not counters:
            return
        existing = {doc['_id'] for doc in self.db.subscription.find(
            {'_id': {'$in': sorted(counters)}}, projection=['_id'])}
        for sub_id in sorted(existing):
            added = counters[sub_id]
            update = {'$inc': {'delivered': int(added.get('delivered') or 0),
                               'dropped': int(added.get('dropped') or 0)}}
            if added.get('last_error') is not None:
                update['$set'] = {'last_error': added['last_error']}
            self.db.subscription_counter.update_one({'_id': sub_id}, update,
                                                    upsert=True)

    @_translate_errors
    def get_subscription_counters(self, ids=None):
        ids = _as_list(ids)
        query = {} if ids is None else {'_id': {'$in': ids}}
        return {doc['_id']: {'delivered': doc.get('delivered', 0),
                             'dropped': doc.get('dropped', 0),
                             'last_error': doc.get('last_error')}
                for doc in self.db.subscription_counter.find(query)}

    # --- polling overrides --------------------------------------------------
    @_translate_errors
    def get_polling_overrides(self):
        return {doc['_id']: _restore({k: v for k, v in doc.items()
                                      if k != '_id'})
                for doc in self.db.polling_override.find(sort=[('_id', 1)])}

    @_translate_errors
    def set_polling_override(self, name, changes):
        kept, dropped = base.polling_override_changes(name, changes)
        update = {'$set': dict(_clean(kept),
                               updated_at=base.utc_now_iso())}
        if dropped:
            update['$unset'] = {field: '' for field in dropped}
        doc = self.db.polling_override.find_one_and_update(
            {'_id': name}, update, upsert=True,
            return_document=pymongo.ReturnDocument.AFTER)
        override = {k: v for k, v in doc.items() if k != '_id'}
        if set(override) == {'updated_at'}:
            # Nothing overridden any more; a concurrent setter that added
            # a field since keeps its document.
            self.db.polling_override.delete_one(
                {'_id': name, 'updated_at': override['updated_at'],
                 **{field: {'$exists': False}
                    for field in base.POLLING_OVERRIDE_FIELDS}})
            return None
        return _restore(override)
