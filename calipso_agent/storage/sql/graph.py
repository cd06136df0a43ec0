"""The inventory graph's reads in the SQL store: filtered, paged lists
of objects and the links around a set of objects, one statement each
whatever the number of ids (an array parameter on PostgreSQL, json_each
on SQLite), so a traversal expands a whole frontier per round trip."""

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from calipso_agent.storage.sql import compiler, values
from calipso_agent.storage.sql.schema import INVENTORY, LINK

_FIELDS = ('parent_id', 'host', 'name', 'state')


def _live(table):
    """Neither a tombstone nor a closed link."""
    data = table.c.data
    return sa.and_(data['deleted_at'].as_string().is_(None),
                   sa.func.coalesce(data['state'].as_string(), '')
                   != 'deleted')


class GraphReads:
    """list_inventory and adjacent_links (a mixin of
    connection.Connection)."""

    def _in_set(self, column, items):
        """``column`` is one of ``items`` as a single bound parameter."""
        items = sorted(set(items))
        if self.engine.dialect.name == 'postgresql':
            return column == sa.any_(sa.bindparam(
                None, items, type_=postgresql.ARRAY(sa.Text())))
        members = sa.func.json_each(sa.bindparam(
            None, values.dumps(items), type_=sa.Text())).table_valued(
                'value')
        return column.in_(sa.select(members.c.value))

    def list_inventory(self, ids=None, types=None, project_ids=None,
                       parent_id=None, host=None, name=None, state=None,
                       limit=None, marker=None, deleted=False):
        limit = compiler.check_limit(limit)
        if limit == 0:
            return []
        statement = sa.select(INVENTORY.c.data).order_by(INVENTORY.c.id)
        for column, wanted in ((INVENTORY.c.id, ids),
                               (INVENTORY.c.type, types),
                               (INVENTORY.c.project_id, project_ids)):
            if wanted is not None:
                wanted = [wanted] if isinstance(wanted, str) else wanted
                statement = statement.where(self._in_set(column, wanted))
        for field, wanted in zip(_FIELDS, (parent_id, host, name, state),
                                 strict=True):
            if wanted is not None:
                statement = statement.where(
                    INVENTORY.c.data[field].as_string() == wanted)
        if marker is not None:
            statement = statement.where(INVENTORY.c.id > marker)
        if not deleted:
            statement = statement.where(_live(INVENTORY))
        with self._transaction() as conn:
            return list(conn.execute(statement.limit(limit)).scalars())

    def adjacent_links(self, ids, outgoing=None, incoming=None,
                       deleted=False):
        ids = [ids] if isinstance(ids, str) else list(ids)
        if not ids:
            return []
        parts = []
        for column, types in ((LINK.c.source_id, outgoing),
                              (LINK.c.target_id, incoming)):
            if types is not None:
                types = list(types)
                if not types:
                    continue
            part = sa.select(LINK.c.source_id, LINK.c.target_id,
                             LINK.c.link_type, LINK.c.data).where(
                self._in_set(column, ids))
            if types is not None:
                part = part.where(self._in_set(LINK.c.link_type, types))
            if not deleted:
                part = part.where(_live(LINK))
            parts.append(part)
        if not parts:
            return []
        statement = parts[0] if len(parts) == 1 else sa.union_all(*parts)
        with self._transaction() as conn:
            rows = conn.execute(statement).all()
        unique = {(row[0], row[1], row[2]): row[3] for row in rows}
        return [unique[key] for key in sorted(unique)]
