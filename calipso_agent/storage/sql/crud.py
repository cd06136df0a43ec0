"""Inventory, links, channels, subscriptions and polling overrides in the
SQL store: each row keeps the object as JSON, with the columns it is
looked up by."""

import contextlib
import functools

import sqlalchemy as sa

from calipso_agent import inventory
from calipso_agent.storage import base
from calipso_agent.storage.sql import compiler, values
from calipso_agent.storage.sql.schema import (
    CHANNEL,
    INVENTORY,
    LINK,
    POLLING_OVERRIDE,
    SUBSCRIPTION,
    SUBSCRIPTION_COUNTER,
    SUBSCRIPTION_VERSION,
)


class Crud:
    """Inventory, link, channel, subscription and polling override
    records of the SQL connections (a mixin of connection.Connection)."""

    def upsert_inventory(self, objects):
        newest = {}
        for obj in objects:
            for field in ('id', 'type'):
                if not isinstance(obj.get(field), str) or not obj[field]:
                    raise ValueError(f'inventory object {obj!r}: {field} is '
                                     'missing or not a string')
            row = _object_row(obj)
            kept = newest.get(obj['id'])
            if kept is None or row['last_event_ts'] >= kept['last_event_ts']:
                newest[obj['id']] = row
        if not newest:
            return 0
        with self._transaction(write=True) as conn:
            return len(conn.execute(
                self._object_upsert().returning(INVENTORY.c.id),
                [newest[k] for k in sorted(newest)]).all())

    def _object_upsert(self):
        """INSERT of inventory rows replacing a stored row unless that
        one has a later event."""
        params = {c.name: sa.bindparam(c.name, type_=c.type)
                  for c in INVENTORY.c if c.name != 'data'}
        params['data'] = self._json_param('data')
        statement = self._insert(INVENTORY).values(params)
        new = statement.excluded
        return statement.on_conflict_do_update(
            index_elements=['id'],
            set_={c.name: new[c.name] for c in INVENTORY.c
                  if c.name != 'id'},
            where=new.last_event_ts >= INVENTORY.c.last_event_ts)

    def _link_upsert(self, guarded):
        params = {c.name: sa.bindparam(c.name, type_=c.type)
                  for c in LINK.c if c.name != 'data'}
        params['data'] = self._json_param('data')
        statement = self._insert(LINK).values(params)
        new = statement.excluded
        return statement.on_conflict_do_update(
            index_elements=['source_id', 'target_id', 'link_type'],
            set_={c: new[c] for c in ('project_id', 'state',
                                      'last_event_ts', 'data')},
            where=(sa.or_(LINK.c.last_event_ts.is_(None),
                          new.last_event_ts >= LINK.c.last_event_ts)
                   if guarded else None))

    @contextlib.contextmanager
    def _inventory_batch(self):
        with self._transaction(write=True) as conn:
            yield _InventoryBatch(self, conn)

    def get_inventory(self, ids=None, types=None, project_ids=None,
                      limit=None):
        limit = compiler.check_limit(limit)
        if limit == 0:
            return []
        statement = sa.select(INVENTORY.c.data).order_by(INVENTORY.c.id)
        for column, wanted in ((INVENTORY.c.id, ids),
                               (INVENTORY.c.type, types),
                               (INVENTORY.c.project_id, project_ids)):
            if wanted is not None:
                statement = statement.where(column.in_(list(wanted)))
        with self._transaction() as conn:
            return list(conn.execute(statement.limit(limit)).scalars())

    def delete_inventory(self, ids):
        ids = list(ids)
        if not ids:
            return 0
        with self._transaction(write=True) as conn:
            conn.execute(LINK.delete().where(sa.or_(
                LINK.c.source_id.in_(ids), LINK.c.target_id.in_(ids))))
            return conn.execute(INVENTORY.delete().where(
                INVENTORY.c.id.in_(ids))).rowcount

    def upsert_links(self, links):
        rows = {}
        for link in links:
            key = tuple(link.get(f) for f in ('source_id', 'target_id',
                                              'link_type'))
            if not all(isinstance(k, str) and k for k in key):
                raise ValueError(f'link {link!r} needs source_id, target_id '
                                 'and link_type strings')
            rows[key] = _link_row(link)
        if not rows:
            return 0
        with self._transaction(write=True) as conn:
            conn.execute(self._link_upsert(guarded=False),
                         [rows[k] for k in sorted(rows)])
        return len(rows)

    @staticmethod
    def _link_conditions(source_id, target_id, link_type):
        return [column == value for column, value in (
            (LINK.c.source_id, source_id), (LINK.c.target_id, target_id),
            (LINK.c.link_type, link_type)) if value is not None]

    def get_links(self, source_id=None, target_id=None, link_type=None,
                  project_ids=None):
        statement = sa.select(LINK.c.data).where(
            *self._link_conditions(source_id, target_id, link_type))
        if project_ids is not None:
            statement = statement.where(
                LINK.c.project_id.in_(list(project_ids)))
        statement = statement.order_by(LINK.c.source_id, LINK.c.target_id,
                                       LINK.c.link_type)
        with self._transaction() as conn:
            return list(conn.execute(statement).scalars())

    def delete_links(self, source_id=None, target_id=None, link_type=None):
        conditions = self._link_conditions(source_id, target_id, link_type)
        if not conditions:
            raise ValueError('delete_links needs source_id, target_id or '
                             'link_type')
        with self._transaction(write=True) as conn:
            return conn.execute(LINK.delete().where(*conditions)).rowcount

    # --- channels and subscriptions ---------------------------------------
    def create_channel(self, channel):
        return self._create(CHANNEL, 'channel', channel, {})

    def _create(self, table, what, obj, columns):
        if not isinstance(obj.get('id'), str) or not obj['id']:
            raise ValueError(f'{what} {obj!r}: id is missing or not a '
                             'string')
        statement = (self._insert(table)
                     .values(id=obj['id'], data=obj, **columns)
                     .on_conflict_do_nothing(index_elements=['id'])
                     .execution_options(preserve_rowcount=True))
        with self._transaction(write=True) as conn:
            if not conn.execute(statement).rowcount:
                raise base.StorageError(f'{what} {obj["id"]} exists')
        return values.loads(values.dumps(obj))

    def get_channels(self, ids=None):
        statement = sa.select(CHANNEL.c.data).order_by(CHANNEL.c.id)
        if ids is not None:
            statement = statement.where(CHANNEL.c.id.in_(list(ids)))
        with self._transaction() as conn:
            return list(conn.execute(statement).scalars())

    def update_channel(self, channel_id, changes):
        with self._transaction(write=True) as conn:
            data = conn.execute(
                sa.select(CHANNEL.c.data).where(CHANNEL.c.id == channel_id)
                .with_for_update()).scalar()
            if data is None:
                return None
            data.update(changes)
            data['id'] = channel_id
            conn.execute(CHANNEL.update().where(
                CHANNEL.c.id == channel_id).values(data=data))
        return values.loads(values.dumps(data))

    def delete_channel(self, channel_id):
        with self._transaction(write=True) as conn:
            owned = sa.select(SUBSCRIPTION.c.id).where(
                SUBSCRIPTION.c.channel_id == channel_id)
            conn.execute(SUBSCRIPTION_COUNTER.delete().where(
                SUBSCRIPTION_COUNTER.c.subscription_id.in_(owned)))
            if conn.execute(SUBSCRIPTION.delete().where(
                    SUBSCRIPTION.c.channel_id == channel_id)).rowcount:
                self._bump_subscriptions_version(conn)
            return bool(conn.execute(CHANNEL.delete().where(
                CHANNEL.c.id == channel_id)).rowcount)

    def _bump_subscriptions_version(self, conn):
        statement = self._insert(SUBSCRIPTION_VERSION).values(id=1,
                                                              version=1)
        conn.execute(statement.on_conflict_do_update(
            index_elements=['id'],
            set_={'version': SUBSCRIPTION_VERSION.c.version + 1}))

    def create_subscription(self, subscription):
        if not isinstance(subscription.get('id'), str) or (
                not subscription['id']):
            raise ValueError(f'subscription {subscription!r}: id is '
                             'missing or not a string')
        statement = (self._insert(SUBSCRIPTION)
                     .values(id=subscription['id'], data=subscription,
                             channel_id=subscription.get('channel_id'))
                     .on_conflict_do_nothing(index_elements=['id'])
                     .execution_options(preserve_rowcount=True))
        with self._transaction(write=True) as conn:
            if not conn.execute(statement).rowcount:
                raise base.StorageError(
                    f'subscription {subscription["id"]} exists')
            conn.execute(SUBSCRIPTION_COUNTER.delete().where(
                SUBSCRIPTION_COUNTER.c.subscription_id ==
                subscription['id']))
            self._bump_subscriptions_version(conn)
        return values.loads(values.dumps(subscription))

    def get_subscriptions(self, channel_id=None, ids=None):
        statement = sa.select(SUBSCRIPTION.c.data).order_by(
            SUBSCRIPTION.c.id)
        if channel_id is not None:
            statement = statement.where(
                SUBSCRIPTION.c.channel_id == channel_id)
        if ids is not None:
            statement = statement.where(SUBSCRIPTION.c.id.in_(list(ids)))
        with self._transaction() as conn:
            return list(conn.execute(statement).scalars())

    def delete_subscription(self, subscription_id):
        with self._transaction(write=True) as conn:
            conn.execute(SUBSCRIPTION_COUNTER.delete().where(
                SUBSCRIPTION_COUNTER.c.subscription_id == subscription_id))
            deleted = bool(conn.execute(SUBSCRIPTION.delete().where(
                SUBSCRIPTION.c.id == subscription_id)).rowcount)
            if deleted:
                self._bump_subscriptions_version(conn)
            return deleted

    def subscriptions_version(self):
        with self._transaction() as conn:
            return conn.execute(sa.select(
                SUBSCRIPTION_VERSION.c.version)).scalar() or 0

    def add_subscription_counters(self, counters):
        if not counters:
            return
        with self._transaction(write=True) as conn:
            existing = set(conn.execute(sa.select(SUBSCRIPTION.c.id).where(
                SUBSCRIPTION.c.id.in_(list(counters)))).scalars())
            if not existing:
                return
            rows = [{'subscription_id': sub_id,
                     'delivered': int(counters[sub_id].get('delivered') or 0),
                     'dropped': int(counters[sub_id].get('dropped') or 0),
                     'last_error': counters[sub_id].get('last_error')}
                    for sub_id in sorted(existing)]
            statement = self._insert(SUBSCRIPTION_COUNTER)
            new = statement.excluded
            table = SUBSCRIPTION_COUNTER.c
            # One statement for every subscription (executemany).
            conn.execute(statement.on_conflict_do_update(
                index_elements=['subscription_id'],
                set_={'delivered': table.delivered + new.delivered,
                      'dropped': table.dropped + new.dropped,
                      'last_error': sa.func.coalesce(
                          new.last_error, table.last_error)}), rows)

    def get_subscription_counters(self, ids=None):
        statement = sa.select(SUBSCRIPTION_COUNTER)
        if ids is not None:
            statement = statement.where(
                SUBSCRIPTION_COUNTER.c.subscription_id.in_(list(ids)))
        with self._transaction() as conn:
            return {row.subscription_id: {
                'delivered': row.delivered, 'dropped': row.dropped,
                'last_error': row.last_error}
                for row in conn.execute(statement)}

    # --- polling overrides --------------------------------------------------
    def get_polling_overrides(self):
        statement = sa.select(POLLING_OVERRIDE.c.name,
                              POLLING_OVERRIDE.c.data)
        with self._transaction() as conn:
            return dict(conn.execute(statement).all())

    def set_polling_override(self, name, changes):
        kept, dropped = base.polling_override_changes(name, changes)
        where = POLLING_OVERRIDE.c.name == name
        with self._transaction(write=True) as conn:
            data = conn.execute(sa.select(POLLING_OVERRIDE.c.data)
                                .where(where).with_for_update()).scalar()
            data = dict(data or {})
            data.pop('updated_at', None)
            for field in dropped:
                data.pop(field, None)
            data.update(kept)
            if not data:
                conn.execute(POLLING_OVERRIDE.delete().where(where))
                return None
            data['updated_at'] = base.utc_now_iso()
            statement = self._insert(POLLING_OVERRIDE).values(
                name=name, data=self._json_param('data'))
            conn.execute(statement.on_conflict_do_update(
                index_elements=['name'],
                set_={'data': statement.excluded.data}),
                {'data': values.dumps(data)})
        return values.loads(values.dumps(data))


# --- inventory rows ---------------------------------------------------------

# The PostgreSQL advisory lock of inventory batches ("calipso" in ASCII).
_INVENTORY_LOCK = 0x63616c6970736f
# Ids per IN list: SQLite takes at most 32766 parameters a statement.
_CHUNK = 10000


def _event_us(item, what):
    try:
        return values.to_us(item.get('last_event_at'))
    except (TypeError, ValueError, AttributeError):
        raise ValueError(f'{what}: last_event_at '
                         f'{item.get("last_event_at")!r} is not an ISO 8601 '
                         'timestamp')


def _object_row(obj):
    return {'id': obj['id'], 'type': obj['type'],
            'project_id': obj.get('project_id'),
            'parent_id': obj.get('parent_id'), 'host': obj.get('host'),
            'name': obj.get('name'), 'state': obj.get('state'),
            'last_event_ts': _event_us(obj, f'inventory object {obj["id"]}'),
            'data': values.dumps(obj)}


def _link_row(link):
    last = link.get('last_event_at')
    return {'source_id': link['source_id'], 'target_id': link['target_id'],
            'link_type': link['link_type'],
            'project_id': link.get('project_id'),
            'state': link.get('state'),
            'last_event_ts': (None if last is None else _event_us(
                link, f'link {link["source_id"]} {link["target_id"]}')),
            'data': values.dumps(link)}


def _chunks(ids):
    ids = sorted(set(ids))
    for start in range(0, len(ids), _CHUNK):
        yield ids[start:start + _CHUNK]


class _InventoryBatch(inventory.InventoryBatch):
    """Reads and the write of ``apply_inventory``, in one transaction, as
    plain driver SQL (this runs for every batch of notifications: no
    statement compiled per call). PostgreSQL takes the ids as one array
    (one statement, prepared once), sent in binary (psycopg quotes each
    element of a text array in Python: a batch's hundred ids cost more
    than the lookup); SQLite as a list of parameters."""

    def __init__(self, store, conn):
        self.conn = conn
        # The driver's cursor, in the transaction SQLAlchemy began: a
        # batch's few statements skip SQLAlchemy's execution machinery
        # (the driver's errors are the store's errors: _transaction).
        self.cursor = conn.connection.driver_connection.cursor()
        self.postgresql = store.backend == 'postgresql'
        self.mark = '%s' if self.postgresql else '?'
        # PostgreSQL: one inventory batch at a time, whatever the
        # process (a batch reads what it derives from, and a concurrent
        # one must not change that before it commits). The lock is taken
        # in the round trip of the batch's first statement.
        self._lock_pending = self.postgresql

    def _execute(self, statement, params):
        """Run one statement (the batch's lock first, when not taken)."""
        if not self._lock_pending:
            self.cursor.execute(statement, params)
            return
        connection = self.cursor.connection
        with connection.pipeline():
            connection.execute('SELECT pg_advisory_xact_lock(%s)',
                               (_INVENTORY_LOCK,))
            self.cursor.execute(statement, params)
        self._lock_pending = False

    def _select(self, table, columns, ids):
        if self.postgresql:
            where = ' OR '.join(f'{c} = ANY(%b)' for c in columns)
            chunks = [sorted(set(ids))]
        else:
            chunks = list(_chunks(ids))
        for chunk in chunks:
            if not chunk:
                continue
            if self.postgresql:
                params = (chunk,) * len(columns)
            else:
                marks = ', '.join('?' * len(chunk))
                where = ' OR '.join(f'{c} IN ({marks})' for c in columns)
                params = tuple(chunk) * len(columns)
            self._execute(f'SELECT data FROM {table} WHERE {where}',
                          params)
            for (data,) in self.cursor.fetchall():
                yield data if isinstance(data, dict) else values.loads(data)

    def objects(self, ids):
        return self._select('inventory', ('id',), ids)

    def children(self, parent_ids):
        return self._select('inventory', ('parent_id',), parent_ids)

    def links_from(self, source_ids):
        return self._select('link', ('source_id',), source_ids)

    def links_of(self, ids):
        return self._select('link', ('source_id', 'target_id'), ids)

    def write(self, objects, links):
        # Rows are unique per key here (``apply`` keeps one per id and
        # per triple), so one statement takes many rows. ``apply`` gives
        # canonical timestamps, which a batch repeats: each is converted
        # once.
        dumps = values.dumps
        object_rows = [
            (o['id'], o['type'], o.get('project_id'), o.get('parent_id'),
             o.get('host'), o.get('name'), o.get('state'),
             _canonical_us(o['last_event_at']), dumps(o))
            for o in objects]
        link_rows = [
            (lk['source_id'], lk['target_id'], lk['link_type'],
             lk.get('project_id'), lk.get('state'),
             _canonical_us(lk['last_event_at']), dumps(lk))
            for lk in links]
        # PostgreSQL: both statements in one round trip.
        with (self.cursor.connection.pipeline() if self.postgresql
              else contextlib.nullcontext()):
            self._upsert(INVENTORY, ('id',), object_rows)
            self._upsert(LINK, ('source_id', 'target_id', 'link_type'),
                         link_rows)

    def _upsert(self, table, keys, rows):
        if not rows:
            return
        if self.postgresql:
            # One array a column: one short statement whatever the rows
            # (psycopg parses it once and the server prepares it).
            columns = zip(*rows, strict=True)
            self._execute(_unnest_upsert_sql(table, keys),
                          [list(column) for column in columns])
            return
        # sqlite3 runs one prepared statement over the rows: cheaper than
        # building and parsing a statement of many rows.
        self.cursor.executemany(_upsert_sql(self.mark, table, keys, 1), rows)


@functools.lru_cache(maxsize=8192)
def _canonical_us(text):
    """Microseconds since the epoch of a canonical timestamp
    (``inventory.timestamp``)."""
    return values.to_us(text)


@functools.lru_cache(maxsize=64)
def _upsert_sql(mark, table, keys, count):
    """INSERT of ``count`` whole rows of ``table``, each replacing a
    stored row unless that one has a later event (in the driver's
    parameter style)."""
    row = f'({", ".join([mark] * len(table.c))})'
    return _upsert_of(table, keys, f'VALUES {", ".join([row] * count)}')


@functools.lru_cache(maxsize=8)
def _unnest_upsert_sql(table, keys):
    """PostgreSQL: the INSERT of ``_upsert_sql`` taking its rows as one
    array parameter a column (JSON as text)."""
    # %b: arrays in binary (in text, each JSON string would be escaped).
    arrays = ', '.join(f'%b::{_PG_ARRAYS.get(c.name, "text")}[]'
                       for c in table.c)
    columns = ', '.join(f'{c.name}::jsonb' if c.name == 'data' else c.name
                        for c in table.c)
    return _upsert_of(table, keys, f'SELECT {columns} FROM unnest('
                                   f'{arrays}) AS given '
                                   f'({", ".join(c.name for c in table.c)})')


# Columns other than text (JSON goes as text, cast in the SELECT).
_PG_ARRAYS = {'last_event_ts': 'bigint'}


def _upsert_of(table, keys, rows):
    """INSERT of ``rows`` (VALUES or a SELECT) into ``table``, each
    replacing a stored row unless that one has a later event."""
    columns = [c.name for c in table.c]
    updates = ', '.join(f'{c} = excluded.{c}' for c in columns
                        if c not in keys)
    return (f'INSERT INTO {table.name} ({", ".join(columns)}) {rows} ON '
            f'CONFLICT ({", ".join(keys)}) DO UPDATE SET {updates} WHERE '
            f'{table.name}.last_event_ts IS NULL OR '
            f'excluded.last_event_ts >= {table.name}.last_event_ts')
