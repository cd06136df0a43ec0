"""The inventory graph's reads in the SQL store: filtered, paged lists
of objects and the links around a set of objects, one statement each
whatever the number of ids (one JSON array parameter, unnested by
jsonb_array_elements_text on PostgreSQL, json_each on SQLite), so a
traversal expands a whole frontier per round trip."""

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from calipso_agent.storage.sql import compiler, values
from calipso_agent.storage.sql.schema import INVENTORY, LINK

_FIELDS = ('parent_id', 'host', 'name', 'state')
# The primary key of a link, the order adjacent_links answers in.
_LINK_KEY = (LINK.c.source_id, LINK.c.target_id, LINK.c.link_type)


def _data(table):
    """The JSON column as text, decoded by ``values.loads`` here: the
    JSON type's result processing costs more than the decoding."""
    return sa.type_coerce(table.c.data, sa.Text())


def _is_live(item):
    """Neither a tombstone nor a closed link (decoded)."""
    return item.get('deleted_at') is None and item.get('state') != 'deleted'


def _live_ones(items, deleted):
    """``items`` without tombstones and closed links, unless
    ``deleted``."""
    if deleted:
        return items
    return [item for item in items if _is_live(item)]


def _live(table):
    """Not a tombstone, in SQL (the state column; only where a limit
    needs it: elsewhere the rows decoded anyway are tested)."""
    return sa.func.coalesce(table.c.state, '') != 'deleted'


def _decoded(value):
    """A JSON column's value: text from SQLite, already decoded by the
    driver (jsonb) from PostgreSQL."""
    return values.loads(value) if isinstance(value, (str, bytes)) else value


class GraphReads:
    """list_inventory and adjacent_links (a mixin of
    connection.Connection)."""

    def _members(self, items):
        """The rows (column ``value``) of ``items`` sent as one JSON
        array parameter (orjson writes thousands of ids in well under a
        millisecond; psycopg dumps a text array item by item)."""
        parameter = sa.bindparam(None, values.dumps(sorted(set(items))),
                                 type_=sa.Text())
        if self.engine.dialect.name == 'postgresql':
            return sa.func.jsonb_array_elements_text(
                sa.cast(parameter, postgresql.JSONB())).table_valued('value')
        return sa.func.json_each(parameter).table_valued('value')

    def _in_set(self, column, items):
        """``column`` is one of ``items``. On PostgreSQL ``= ANY`` of
        them made an array: an index scan in index order, where ``IN
        (SELECT ...)`` joins and then sorts."""
        members = self._members(items)
        if self.engine.dialect.name == 'postgresql':
            return column == sa.any_(sa.func.array(
                sa.select(members.c.value).scalar_subquery(),
                type_=postgresql.ARRAY(sa.Text())))
        return column.in_(sa.select(members.c.value))

    def _not_in_set(self, column, items):
        """``column`` is none of ``items``: ``NOT IN (SELECT ...)``, a
        hashed subplan (``<> ALL`` of an array compares each row with
        every item)."""
        return column.not_in(sa.select(self._members(items).c.value))

    def list_inventory(self, ids=None, types=None, project_ids=None,
                       parent_id=None, host=None, name=None, state=None,
                       limit=None, marker=None, deleted=False):
        limit = compiler.check_limit(limit)
        if limit == 0:
            return []
        statement = sa.select(_data(INVENTORY)).order_by(INVENTORY.c.id)
        for column, wanted in ((INVENTORY.c.id, ids),
                               (INVENTORY.c.type, types),
                               (INVENTORY.c.project_id, project_ids)):
            if wanted is not None:
                wanted = [wanted] if isinstance(wanted, str) else wanted
                statement = statement.where(self._in_set(column, wanted))
        for field, wanted in zip(_FIELDS, (parent_id, host, name, state),
                                 strict=True):
            if wanted is not None:
                statement = statement.where(INVENTORY.c[field] == wanted)
        if marker is not None:
            statement = statement.where(INVENTORY.c.id > marker)
        if not deleted and limit is not None:
            statement = statement.where(_live(INVENTORY))
        with self._transaction() as conn:
            texts = conn.execute(statement.limit(limit)).scalars().all()
        found = [_decoded(text) for text in texts]
        if deleted or limit is not None:
            return found
        return [item for item in found if _is_live(item)]

    def adjacent_links(self, ids, outgoing=None, incoming=None,
                       deleted=False, exclude=None):
        ids = [ids] if isinstance(ids, str) else list(ids)
        if not ids:
            return []
        parts = []
        exclude = sorted(set(exclude or ()) - set(ids))
        for column, other, types in (
                (LINK.c.source_id, LINK.c.target_id, outgoing),
                (LINK.c.target_id, LINK.c.source_id, incoming)):
            if types is not None:
                types = list(types)
                if not types:
                    continue
            part = sa.select(LINK.c.source_id, LINK.c.target_id,
                             LINK.c.link_type, _data(LINK)).where(
                self._in_set(column, ids))
            if exclude:
                part = part.where(self._not_in_set(other, exclude))
            if types is not None:
                part = part.where(self._in_set(LINK.c.link_type, types))
            parts.append(part)
        if not parts:
            return []
        if len(parts) == 1:
            # One link per (source, target, type): no duplicates, and
            # the key columns are not needed.
            statement = parts[0].with_only_columns(_data(LINK)).order_by(
                *_LINK_KEY)
            with self._transaction() as conn:
                texts = conn.execute(statement).scalars().all()
            return _live_ones([_decoded(text) for text in texts], deleted)
        both = sa.union_all(*parts).subquery()
        statement = sa.select(both.c.data).order_by(
            both.c.source_id, both.c.target_id, both.c.link_type)
        with self._transaction() as conn:
            texts = conn.execute(statement).scalars().all()
        # Ordered by the key ("C"/binary collation: Python's string
        # order): a link both parts found comes twice in a row. Only the
        # JSON is fetched (no row objects kept while decoding).
        found = []
        last = None
        for text in texts:
            link = _decoded(text)
            if last is not None and (
                    link['link_type'] == last['link_type']
                    and link['target_id'] == last['target_id']
                    and link['source_id'] == last['source_id']):
                continue
            found.append(link)
            last = link
        return _live_ones(found, deleted)
