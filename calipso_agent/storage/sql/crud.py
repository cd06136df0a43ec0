"""Inventory, links, channels and subscriptions in the SQL store: each
row keeps the object as JSON, with the columns it is looked up by."""

import sqlalchemy as sa

from calipso_agent.storage import base
from calipso_agent.storage.sql import compiler, values
from calipso_agent.storage.sql.schema import (
    CHANNEL,
    INVENTORY,
    LINK,
    SUBSCRIPTION,
    SUBSCRIPTION_COUNTER,
    SUBSCRIPTION_VERSION,
)


class Crud:
    """Inventory, link, channel and subscription records of the SQL
    connections (a mixin of connection.Connection)."""

    def upsert_inventory(self, objects):
        newest = {}
        for obj in objects:
            for field in ('id', 'type'):
                if not isinstance(obj.get(field), str) or not obj[field]:
                    raise ValueError(f'inventory object {obj!r}: {field} is '
                                     'missing or not a string')
            try:
                last = values.to_us(obj.get('last_event_at'))
            except (TypeError, ValueError):
                raise ValueError(f'inventory object {obj["id"]}: '
                                 f'last_event_at {obj.get("last_event_at")!r}'
                                 ' is not an ISO 8601 timestamp')
            kept = newest.get(obj['id'])
            if kept is None or last >= kept['last_event_ts']:
                newest[obj['id']] = {
                    'id': obj['id'], 'type': obj['type'],
                    'project_id': obj.get('project_id'),
                    'last_event_ts': last, 'data': values.dumps(obj)}
        if not newest:
            return 0
        params = {c.name: sa.bindparam(c.name, type_=c.type)
                  for c in INVENTORY.c if c.name != 'data'}
        params['data'] = self._json_param('data')
        statement = self._insert(INVENTORY).values(params)
        new = statement.excluded
        statement = statement.on_conflict_do_update(
            index_elements=['id'],
            set_={c: new[c] for c in ('type', 'project_id', 'last_event_ts',
                                      'data')},
            where=new.last_event_ts >= INVENTORY.c.last_event_ts,
        ).returning(INVENTORY.c.id)
        with self._transaction(write=True) as conn:
            return len(conn.execute(
                statement, [newest[k] for k in sorted(newest)]).all())

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
            rows[key] = {'source_id': key[0], 'target_id': key[1],
                         'link_type': key[2],
                         'project_id': link.get('project_id'),
                         'data': values.dumps(link)}
        if not rows:
            return 0
        params = {c.name: sa.bindparam(c.name, type_=c.type)
                  for c in LINK.c if c.name != 'data'}
        params['data'] = self._json_param('data')
        statement = self._insert(LINK).values(params)
        statement = statement.on_conflict_do_update(
            index_elements=['source_id', 'target_id', 'link_type'],
            set_={'project_id': statement.excluded.project_id,
                  'data': statement.excluded.data})
        with self._transaction(write=True) as conn:
            conn.execute(statement, [rows[k] for k in sorted(rows)])
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
            for sub_id in sorted(existing):
                added = counters[sub_id]
                row = {'subscription_id': sub_id,
                       'delivered': int(added.get('delivered') or 0),
                       'dropped': int(added.get('dropped') or 0),
                       'last_error': added.get('last_error')}
                statement = self._insert(SUBSCRIPTION_COUNTER).values(row)
                new = statement.excluded
                table = SUBSCRIPTION_COUNTER.c
                conn.execute(statement.on_conflict_do_update(
                    index_elements=['subscription_id'],
                    set_={'delivered': table.delivered + new.delivered,
                          'dropped': table.dropped + new.dropped,
                          'last_error': sa.func.coalesce(
                              new.last_error, table.last_error)}))

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
