"""Writes of the SQL store: samples checked and encoded into rows, the
staged merge into sample, resource and meter, and expiry.

Each dialect stores rows its own way (the connection classes in sqlite.py
and postgresql.py); both can merge a staged batch (``INCOMING``) of any
mix of new and known samples.
"""

import abc
import hashlib
import itertools
import logging
import math
import operator
import re

import orjson
import sqlalchemy as sa

from calipso_agent import sample as sample_mod
from calipso_agent.storage import base
from calipso_agent.storage.sql import values
from calipso_agent.storage.sql.schema import (
    INCOMING,
    METER,
    METER_FIELDS,
    RESOURCE,
    SAMPLE,
)

LOG = logging.getLogger(__name__)

_SAMPLE_FIELDS = operator.attrgetter(
    'id', 'name', 'type', 'unit', 'volume', 'user_id', 'project_id',
    'resource_id', 'timestamp', 'recorded_at', 'resource_metadata', 'source',
    'message_id')
_TYPES = frozenset(sample_mod.TYPES)
# Meter keys kept by a store (its meters, usually far fewer).
_METER_KEYS_KEPT = 100_000
_STRING_COLUMNS = ('id', 'name', 'type', 'unit', 'user_id', 'project_id',
                   'resource_id', 'source', 'message_id')
# \u0000 in JSON text, not an escaped backslash followed by "u0000".
_JSON_NUL = re.compile(r'(?<!\\)(?:\\\\)*\\u0000')


def _by_id(item):
    """Sort key of an (index, sample): its id (samples without a string
    id are rejected anyway)."""
    sample_id = getattr(item[1], 'id', None)
    return sample_id if isinstance(sample_id, str) else ''


class Writes(abc.ABC):
    """record_samples and clear_expired_samples of the SQL connections (a
    mixin of connection.Connection)."""

    # Whether the dialect's text can hold NUL (PostgreSQL's cannot).
    text_holds_nul = True

    def record_samples(self, samples):
        rejected = []
        rows = self._rows(samples, rejected)
        first = next(rows, None)
        stored = 0
        if first is not None:
            stored = self._store(itertools.chain((first,), rows))
        rejected.sort(key=operator.itemgetter(0))
        return base.RecordResult(
            stored, [(sample, reason) for _, sample, reason in rejected])

    @abc.abstractmethod
    def _store(self, rows):
        """Store ``rows`` (an iterator, in id order); how many were
        new."""

    def _rows(self, samples, rejected):
        """The rows of the valid samples in id order (the order concurrent
        writers lock in), the first valid sample of each id; ``rejected``
        gets (index, sample, reason) of the others.

        A generator: PostgreSQL copies each row as it is made, while the
        server stores the ones before.
        """
        now_us = values.now_us()
        previous = None
        for index, sample in sorted(enumerate(samples), key=_by_id):
            try:
                row = self._row(sample, now_us)
            except ValueError as exc:
                reason = str(exc)
                # The caller names the message of the sample.
                LOG.debug('Sample %s rejected: %s',
                          getattr(sample, 'id', None), reason)
                rejected.append((index, sample, reason))
                continue
            if row[0] != previous:
                previous = row[0]
                yield row

    def _record_staged(self, conn, rows):
        """Rows through INCOMING, merged in SQL: any mix of new and known
        samples."""
        conn.execute(sa.schema.CreateTable(INCOMING, if_not_exists=True))
        self._stage(conn, rows)
        return self._merge_incoming(conn)

    def _row(self, sample, now_us):
        """The INCOMING row of a sample, or ValueError (the reason).

        One pass over the usual sample (ASCII text, a float volume, a
        dict of metadata); any other goes through every check, which
        names what is wrong or lets it through (Unicode text, an int).
        """
        try:
            (sample_id, name, type_, unit, volume, user_id, project_id,
             resource_id, timestamp, recorded_at, metadata, source,
             message_id) = _SAMPLE_FIELDS(sample)
        except AttributeError:
            self._check_sample(sample)
            raise
        try:
            text = ''.join([value for value in (
                sample_id, name, type_, unit, user_id, project_id,
                resource_id, source, message_id) if value is not None])
        except TypeError:
            text = None
        if (text is None or not text.isascii() or '\x00' in text
                or not (sample_id and name and resource_id)
                or type_ not in _TYPES or type(volume) is not float
                or not math.isfinite(volume)
                or (metadata is not None and type(metadata) is not dict)):
            self._check_sample(sample)
            volume = float(volume)
        try:
            ts = values.to_us(timestamp)
        except (TypeError, ValueError):
            raise ValueError(f'timestamp {timestamp!r} is not ISO 8601')
        if recorded_at is None:
            recorded_ts = now_us
        else:
            try:
                recorded_ts = values.to_us(recorded_at)
            except (TypeError, ValueError):
                raise ValueError(f'recorded_at {recorded_at!r} is not '
                                 'ISO 8601')
        try:
            metadata = values.dumps(metadata or {})
        except (TypeError, ValueError) as exc:
            raise ValueError(f'resource_metadata is not JSON: {exc}')
        if (not self.text_holds_nul and '\\u0000' in metadata
                and _JSON_NUL.search(metadata)):
            raise ValueError('resource_metadata holds a NUL character, '
                             'which PostgreSQL cannot store')
        meter = (name, type_, unit, resource_id, project_id, user_id, source)
        key = self._meter_keys.get(meter)
        if key is None:
            if len(self._meter_keys) >= _METER_KEYS_KEPT:
                self._meter_keys.clear()
            key = self._meter_keys[meter] = hashlib.sha1(
                orjson.dumps(meter)).hexdigest()
        return (sample_id, name, type_, unit, volume, user_id, project_id,
                resource_id, source, message_id, ts, recorded_ts, metadata,
                key)

    def _check_sample(self, sample):
        """ValueError naming what cannot be stored in ``sample`` (its
        timestamps aside)."""
        reason = base.validate_sample(sample, timestamp=False)
        if reason:
            raise ValueError(reason)
        for field in _STRING_COLUMNS:
            value = getattr(sample, field)
            if value is not None:
                if not isinstance(value, str):
                    raise ValueError(f'{field} is a {type(value).__name__}, '
                                     'not a string')
                if not value.isascii():
                    try:
                        value.encode()
                    except UnicodeEncodeError:
                        raise ValueError(f'{field} is not valid Unicode')
                if not self.text_holds_nul and '\x00' in value:
                    raise ValueError(f'{field} holds a NUL character, '
                                     'which PostgreSQL cannot store')


    @abc.abstractmethod
    def _stage(self, conn, rows):
        """Load rows into INCOMING."""

    @abc.abstractmethod
    def _merge_incoming(self, conn):
        """INCOMING into sample, resource and meter; how many samples were
        new. Resources and meters take only the samples inserted, so a
        redelivered batch touches nothing. Set-based SQL in primary key
        order: concurrent writers lock rows in the same order."""

    def _insert_new_samples(self):
        """INSERT of the INCOMING samples not stored yet, in id order."""
        new = INCOMING.c
        columns = [c.name for c in SAMPLE.c]
        return self._insert(SAMPLE).from_select(
            columns, sa.select(*(new[c] for c in columns)).where(sa.true())
            .order_by(new.id)).on_conflict_do_nothing(index_elements=['id'])

    def _resources_upsert(self, rows):
        """The first timestamp and latest sample of each resource of
        ``rows`` (INCOMING or the inserted samples) merged into its
        record."""
        ranked = sa.select(
            rows.c.resource_id, rows.c.project_id, rows.c.user_id,
            rows.c.source,
            sa.func.min(rows.c.ts).over(partition_by=rows.c.resource_id)
            .label('first_ts'),
            rows.c.ts.label('last_ts'), rows.c.id.label('latest_id'),
            rows.c.resource_metadata.label('metadata'),
            sa.func.row_number().over(
                partition_by=rows.c.resource_id,
                order_by=(rows.c.ts.desc(), rows.c.id.desc())).label('rank'),
        ).subquery()
        latest = sa.select(*(c for c in ranked.c if c.name != 'rank')).where(
            ranked.c.rank == 1).order_by(ranked.c.resource_id)
        return self._resources_merge(latest)

    def _resources_merge(self, latest):
        """``latest`` (one row per resource: the RESOURCE columns) merged
        into the resource records."""
        statement = self._insert(RESOURCE).from_select(
            [c.name for c in latest.selected_columns], latest)
        excluded = statement.excluded
        newer = (sa.tuple_(excluded.last_ts, excluded.latest_id)
                 > sa.tuple_(RESOURCE.c.last_ts, RESOURCE.c.latest_id))
        changes = {'first_ts': self._least(RESOURCE.c.first_ts,
                                           excluded.first_ts)}
        for name in ('project_id', 'user_id', 'source', 'last_ts',
                     'latest_id', 'metadata'):
            changes[name] = sa.case((newer, excluded[name]),
                                    else_=RESOURCE.c[name])
        return statement.on_conflict_do_update(
            index_elements=['resource_id'], set_=changes)

    def _meters_insert(self, rows):
        """The meters of ``rows`` (INCOMING or the inserted samples), with
        their key from INCOMING."""
        new = INCOMING.c
        meters = sa.select(new.meter_key, *(new[f] for f in METER_FIELDS))
        meters = meters.where(sa.true() if rows is INCOMING else new.id.in_(
            sa.select(rows.c.id)))
        return self._insert(METER).from_select(
            ['key', *METER_FIELDS],
            meters.distinct().order_by(new.meter_key),
        ).on_conflict_do_nothing(index_elements=['key'])


    @abc.abstractmethod
    def _least(self, *columns):
        """SQL of the smallest of ``columns``."""

    # --- expiry -----------------------------------------------------------
    def clear_expired_samples(self, ttl):
        cutoff = values.now_us() - round(ttl * 1_000_000)
        with self._transaction(write=True) as conn:
            affected = [r for (r,) in conn.execute(
                sa.select(RESOURCE.c.resource_id).where(
                    RESOURCE.c.first_ts < cutoff))]
            deleted = conn.execute(SAMPLE.delete().where(
                SAMPLE.c.ts < cutoff)).rowcount
            if affected:
                self._refresh_resources(conn, affected)
        LOG.info('Deleted %d samples older than %ss', deleted, ttl)
        return deleted

    def _refresh_resources(self, conn, resource_ids):
        """After expiry: first timestamps, then resources and meters
        without samples left."""
        param = sa.bindparam('ids', expanding=True)
        oldest = (sa.select(sa.func.min(SAMPLE.c.ts))
                  .where(SAMPLE.c.resource_id == RESOURCE.c.resource_id)
                  .scalar_subquery())
        for start in range(0, len(resource_ids), 500):
            ids = {'ids': resource_ids[start:start + 500]}
            conn.execute(RESOURCE.delete().where(
                RESOURCE.c.resource_id.in_(param),
                ~sa.exists().where(
                    SAMPLE.c.resource_id == RESOURCE.c.resource_id)), ids)
            conn.execute(RESOURCE.update().where(
                RESOURCE.c.resource_id.in_(param)).values(
                first_ts=oldest), ids)
            same = [SAMPLE.c[f].is_not_distinct_from(METER.c[f])
                    if METER.c[f].nullable else SAMPLE.c[f] == METER.c[f]
                    for f in METER_FIELDS]
            conn.execute(METER.delete().where(
                METER.c.resource_id.in_(param),
                ~sa.exists().where(*same)), ids)
