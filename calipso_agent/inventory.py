"""The unit of topology: inventory objects, links, and the rules that keep
the graph right whatever order events arrive in (DESIGN.md section 4).

Objects and links are plain dicts (doc/inventory.md lists their fields).
Builders here make them (``make_object``, ``tombstone``, ``make_link``,
``closed_link``) and ``apply`` merges a batch of them into a store through
an ``InventoryBatch`` of the storage driver (``storage/base.py``), so every
driver follows the same rules:

* an object or link is replaced only by a newer one (``last_event_at``;
  at an equal instant a deletion wins, then the greater content, so the
  result does not depend on arrival order); a redelivery changes nothing;
* a delete keeps a tombstone (state ``deleted``, ``deleted_at``), so an
  older create or update cannot bring the object back;
* a deleted object closes its links; a deleted network marks its subnets
  and ports deleted (``deleted_by`` the network), a deleted instance its
  vNICs (a child event older than the deletion is born deleted);
* ``id_path``/``name_path`` (and a vNIC's host) are derived from the
  parent when it is known; an object whose parent is unknown gets paths
  rooted at the parent id, fixed when the parent appears; a moved object
  (a live migration changes an instance's host) carries its children;
* a source has one live link of an exclusive type (an instance is on one
  host): a newer one closes the older ones.

This module knows no storage and no notification format.
"""

import abc
import datetime
import functools
import hashlib
import json
import re

TYPES = ('project', 'region', 'availability_zone', 'host', 'instance',
         'vnic', 'network', 'subnet', 'port', 'router', 'floating_ip',
         'vservice', 'vedge', 'volume')
#: Objects without a project: admin-only, opaque to tenants.
INFRASTRUCTURE_TYPES = ('region', 'availability_zone', 'host', 'vservice',
                        'vedge')
LINK_TYPES = ('instance-vnic', 'vnic-port', 'port-network',
              'subnet-network', 'router-subnet', 'router-port',
              'router-network', 'floating_ip-port', 'instance-host',
              'vservice-network', 'vservice-host', 'vedge-host',
              'volume-instance', 'host-availability_zone')
#: The parent type of each type in the tree (region → availability zone
#: → host → instance → vnic; project → network → subnet, port ...).
PARENT_TYPES = {'availability_zone': 'region', 'host': 'availability_zone',
                'instance': 'host', 'vnic': 'instance',
                'network': 'project', 'subnet': 'network',
                'port': 'network', 'router': 'project',
                'floating_ip': 'project', 'volume': 'project',
                'vservice': 'host', 'vedge': 'host'}
#: Types that are the parent of some type: only their children are
#: looked up when they appear or move.
PARENT_OF_SOME = frozenset(PARENT_TYPES.values())
#: Depth in the tree: a batch derives parents before children.
DEPTH = {'project': 0, 'region': 0, 'availability_zone': 1, 'host': 2,
         'instance': 3, 'vnic': 4, 'network': 1, 'subnet': 2, 'port': 2,
         'router': 1, 'floating_ip': 1, 'volume': 1, 'vservice': 3,
         'vedge': 3}
#: Deleting an object of the key type deletes its children of these types.
CASCADE_DELETE = {'network': ('subnet', 'port'), 'instance': ('vnic',)}
#: Types whose host is their parent's (a vNIC is where its instance is).
HOST_FROM_PARENT = ('vnic',)
#: Link types a source has one live link of: a newer one closes the others.
EXCLUSIVE_LINK_TYPES = ('instance-host', 'vnic-port', 'port-network',
                        'subnet-network', 'floating_ip-port',
                        'router-network', 'host-availability_zone')

DELETED = 'deleted'
ACTIVE = 'ACTIVE'

OBJECT_FIELDS = ('id', 'type', 'name', 'project_id', 'parent_id',
                 'parent_type', 'id_path', 'name_path', 'environment',
                 'host', 'state', 'attributes', 'created_at', 'updated_at',
                 'deleted_at', 'deleted_by', 'last_event_at', 'resource_ids',
                 'link_targets', 'described_from', 'reported_state')
LINK_FIELDS = ('source_id', 'target_id', 'link_type', 'source_type',
               'target_type', 'state', 'project_id', 'attributes',
               'created_at', 'updated_at', 'deleted_at', 'deleted_by',
               'last_event_at')
#: Fields the store derives; the rest comes from the event.
_DERIVED_OBJECT_FIELDS = ('id_path', 'name_path', 'created_at',
                          'updated_at', 'deleted_at', 'deleted_by',
                          'described_from', 'reported_state')

_UTC = datetime.UTC
_CANONICAL = re.compile(
    r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00\Z')
#: oslo.messaging's stamp of every notification (``str(utcnow())``).
_OSLO_TEXT = re.compile(r'\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\Z')
_UTC_TEXT = re.compile(r'(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)'
                       r'(?:\.(\d{1,6}))?(?:[Zz]|\+00:00)?\Z')


# --- ids ----------------------------------------------------------------

def region_id(name):
    return f'region-{name}'


def availability_zone_id(name):
    return f'az-{name}'


def tap_name(port_id):
    """The tap device of a port, as the L2 agents name it."""
    return 'tap' + port_id[:11]


def vnic_id(instance_id, port_id):
    return f'{instance_id}-{tap_name(port_id)}'


def vedge_id(host):
    return f'vedge-{host}'


def link_type(source_type, target_type):
    return f'{source_type}-{target_type}'


def link_key(link):
    return (link['source_id'], link['target_id'], link['link_type'])


# --- timestamps -----------------------------------------------------------

def timestamp(value):
    """The canonical text of an instant: ISO 8601 in UTC with
    microseconds (``2024-05-01T12:00:00.000000+00:00``), so text order is
    time order. Naive input is UTC; nova's ``2024-05-01 12:00:00.123``
    is read too. None stays None; anything else unreadable: ValueError."""
    if value is None:
        return None
    if value.__class__ is str:
        # A batch repeats its notifications' instants: each text is read
        # once.
        return _text_timestamp(value)
    return _parse_timestamp(value)


@functools.lru_cache(maxsize=8192)
def _text_timestamp(value):
    if _OSLO_TEXT.match(value):
        text = f'{value[:10]}T{value[11:]}+00:00'
    elif _CANONICAL.match(value):
        text = value
    else:
        # The other usual spellings of UTC (oslo's without a fraction or
        # with a shorter one, ISO with or without a fraction or a Z) are
        # rewritten, not formatted.
        match = _UTC_TEXT.match(value)
        if match is None:
            return _parse_timestamp(value)
        day, clock, fraction = match.groups()
        text = f'{day}T{clock}.{(fraction or "").ljust(6, "0")}+00:00'
    try:
        # A real instant (no 13th month, no 25th hour).
        datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f'{value!r} is not an ISO 8601 timestamp')
    return text


def _parse_timestamp(value):
    if isinstance(value, str):
        text = value.strip()
        if text[-1:] in ('Z', 'z'):
            text = text[:-1] + '+00:00'
        try:
            value = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f'{value!r} is not an ISO 8601 timestamp')
    if not isinstance(value, datetime.datetime):
        raise ValueError(f'{value!r} is not a timestamp')
    if value.tzinfo is None:
        value = value.replace(tzinfo=_UTC)
    try:
        value = value.astimezone(_UTC)
    except OverflowError:
        raise ValueError(f'{value!r} is out of range')
    return value.isoformat(timespec='microseconds')


def state_of(status):
    """An upper-case state from a source status (None stays None)."""
    if status is None:
        return None
    if status.__class__ is str:
        return status.upper()
    return str(status).upper()


# --- builders and validators ----------------------------------------------

def paths(obj_id, name, parent=None, parent_id=None):
    """(id_path, name_path) of an object under ``parent`` (a stored
    object), or rooted at ``parent_id`` when the parent is not known."""
    name = name or obj_id
    if parent is not None:
        return (f'{parent["id_path"]}/{obj_id}',
                f'{parent["name_path"]}/{name}')
    if parent_id:
        return f'/{parent_id}/{obj_id}', f'/{parent_id}/{name}'
    return f'/{obj_id}', f'/{name}'


def make_object(type, id, last_event_at, name=None, project_id=None,
                parent_id=None, parent_type=None, host=None, state=None,
                attributes=None, environment=None, created_at=None,
                resource_ids=None, link_targets=None):
    """A valid inventory object (ValueError when it cannot be one).

    ``link_targets``: {link type: [target ids]}, what the event says the
    object's links of these types lead to: its other links of these types
    older than the event are closed, whenever they arrive."""
    if parent_id and parent_type is None:
        parent_type = PARENT_TYPES.get(type)
    id_path, name_path = paths(id, name, parent_id=parent_id)
    last = timestamp(last_event_at)
    obj = _Valid(id=id, type=type, name=name if name else id,
                 project_id=project_id, parent_id=parent_id or None,
                 parent_type=parent_type if parent_id else None,
                 id_path=id_path, name_path=name_path,
                 environment=environment, host=host,
                 state=state_of(state) if state != DELETED else DELETED,
                 attributes=dict(attributes or {}),
                 created_at=timestamp(created_at), updated_at=last,
                 deleted_at=last if state == DELETED else None,
                 deleted_by=None, last_event_at=last)
    if resource_ids:
        obj['resource_ids'] = sorted(set(resource_ids))
    if link_targets is not None:
        obj['link_targets'] = {k: sorted(set(v))
                               for k, v in link_targets.items()}
    # The timestamps are canonical already, attributes and link_targets
    # made here: the text fields are checked (the precise error, when one
    # is wrong, is _check_object's).
    if last is None or not (
            id.__class__ is str and id and type in _TYPE_SET
            and _texts_or_none(obj['project_id'], obj['parent_id'],
                               obj['parent_type'], host, obj['name'])):
        what = _check_object(obj, f'inventory object {id!r}')
        if last is None:
            raise ValueError(f'{what}: last_event_at is missing')
    return obj


def _texts_or_none(*values):
    """Whether each of ``values`` is None or a non-empty string."""
    for value in values:
        if value is not None and (value.__class__ is not str or not value):
            return False
    return True


class _Valid(dict):
    """An object or link made by a builder here: valid as made (``apply``
    does not check it again unless it was changed: a copy is a dict)."""


def tombstone(type, id, last_event_at, **fields):
    """The object ``id`` deleted at ``last_event_at``."""
    return make_object(type, id, last_event_at, state=DELETED, **fields)


def is_deleted(item):
    return item.get('state') == DELETED


def make_link(source_type, source_id, target_type, target_id,
              last_event_at, project_id=None, attributes=None,
              state=ACTIVE):
    """A valid link, of type ``<source_type>-<target_type>``."""
    last = timestamp(last_event_at)
    link = _Valid(source_id=source_id, target_id=target_id,
                  link_type=f'{source_type}-{target_type}',
                  source_type=source_type, target_type=target_type,
                  state=(state if state == ACTIVE or state == DELETED
                         else state_of(state)),
                  project_id=project_id,
                  attributes=dict(attributes) if attributes else {},
                  created_at=None, updated_at=last,
                  deleted_at=last if state == DELETED else None,
                  deleted_by=None, last_event_at=last)
    if last is None:
        raise ValueError(f'{_link_what(link)}: last_event_at is missing')
    if not (source_id.__class__ is str and source_id
            and target_id.__class__ is str and target_id
            and source_type.__class__ is str and source_type
            and target_type.__class__ is str and target_type
            and _texts_or_none(project_id)):
        bad = _bad_text(link, ('source_id', 'target_id', 'source_type',
                               'target_type'), ('project_id',))
        if bad is not None:
            raise _text_error(f'link {link!r}', link, bad)
    return link


def closed_link(source_type, source_id, target_type, target_id,
                last_event_at, **fields):
    """The link closed at ``last_event_at`` (a detach, an interface
    removed)."""
    return make_link(source_type, source_id, target_type, target_id,
                     last_event_at, state=DELETED, **fields)


def _bad_text(item, fields, optional=()):
    """The first of ``fields`` that is not a non-empty string (of
    ``optional`` fields: not None and not one), or None."""
    for field in fields:
        value = item.get(field)
        if value.__class__ is not str or not value:
            if not isinstance(value, str) or not value:
                return field
    for field in optional:
        value = item.get(field)
        if value is not None and (value.__class__ is not str or not value):
            if not isinstance(value, str) or not value:
                return field
    return None


def _text_error(what, item, field):
    return ValueError(f'{what}: {field} {item.get(field)!r} is not a '
                      'non-empty string')


_TYPE_SET = frozenset(TYPES)
_OPTIONAL_TEXT = ('project_id', 'parent_id', 'parent_type', 'host', 'name')
_TIMES = ('created_at', 'updated_at', 'deleted_at')


def validate_object(obj):
    """``obj`` with its timestamps canonical, or ValueError saying what is
    wrong."""
    if not isinstance(obj, dict):
        raise ValueError(f'inventory object {obj!r} is not a mapping')
    what = _check_object(obj, 'inventory object')
    return _canonical_times(obj, what)


def _check_object(obj, what):
    """What ``obj`` is called in errors; ValueError when a field but the
    timestamps is wrong."""
    bad = _bad_text(obj, ('id', 'type'), _OPTIONAL_TEXT)
    if bad == 'id':
        raise _text_error(what, obj, 'id')
    what = f'inventory object {obj["id"]}'
    if bad is not None:
        raise _text_error(what, obj, bad)
    if obj['type'] not in _TYPE_SET:
        raise ValueError(f'{what}: type {obj["type"]!r} is not one of '
                         f'{", ".join(TYPES)}')
    if not isinstance(obj.get('attributes', {}), dict):
        raise ValueError(f'{what}: attributes is not a mapping')
    targets = obj.get('link_targets')
    if targets is not None and not (isinstance(targets, dict) and all(
            isinstance(v, list) for v in targets.values())):
        raise ValueError(f'{what}: link_targets is not a mapping of lists')
    return what


def validate_link(link):
    """``link`` with its timestamps canonical, or ValueError."""
    if not isinstance(link, dict):
        raise ValueError(f'link {link!r} is not a mapping')
    bad = _bad_text(link, ('source_id', 'target_id', 'link_type'))
    if bad is not None:
        raise _text_error(f'link {link!r}', link, bad)
    if not isinstance(link.get('attributes', {}), dict):
        raise ValueError(f'link {link["source_id"]} {link["link_type"]} '
                         f'{link["target_id"]}: attributes is not a mapping')
    return _canonical_times(link, None)


def _canonical_times(item, what):
    for field in ('last_event_at',) + _TIMES:
        value = item.get(field)
        if value is None:
            if field == 'last_event_at':
                raise ValueError(f'{what or _link_what(item)}: '
                                 'last_event_at is missing')
            continue
        if value.__class__ is str and _CANONICAL.match(value):
            continue
        try:
            item[field] = timestamp(value)
        except ValueError as exc:
            raise ValueError(f'{what or _link_what(item)}: {field}: {exc}')
    return item


def _link_what(link):
    return (f'link {link["source_id"]} {link["link_type"]} '
            f'{link["target_id"]}')


# --- the store's side -------------------------------------------------------

class InventoryBatch(metaclass=abc.ABCMeta):
    """What a storage driver gives ``apply``: reads and one write, inside
    one transaction where the store has them."""

    @abc.abstractmethod
    def objects(self, ids):
        """The stored objects of these ids (an iterable of dicts)."""

    @abc.abstractmethod
    def children(self, parent_ids):
        """The stored objects whose parent_id is one of these."""

    @abc.abstractmethod
    def links_from(self, source_ids):
        """The stored links from one of these ids."""

    @abc.abstractmethod
    def links_of(self, ids):
        """The stored links from or to one of these ids."""

    @abc.abstractmethod
    def write(self, objects, links):
        """Store these objects and links (replacing by id / by triple)."""


def _own_deleted(item):
    """Deleted by its own event (not marked by a parent's deletion)."""
    return item.get('state') == DELETED and not item.get('deleted_by')


def _content(item):
    """The text of what an event said of an item."""
    content = {k: v for k, v in item.items()
               if k not in _DERIVED_OBJECT_FIELDS}
    if item.get('deleted_by') and 'reported_state' in item:
        content['state'] = item['reported_state']
    return json.dumps(content, sort_keys=True, default=str)


def newer(item, stored):
    """Whether ``item`` (from an event) replaces ``stored``: a later
    ``last_event_at``; at the same instant a deletion, then the greater
    content (so any arrival order ends the same). Equal content: no."""
    a, b = item['last_event_at'], stored.get('last_event_at') or ''
    if a != b:
        return a > b
    if _own_deleted(item) != _own_deleted(stored):
        return _own_deleted(item)
    return _digest(item) > _digest(stored)


def _digest(item):
    return hashlib.sha1(_content(item).encode()).hexdigest()


#: What a tombstone without them takes from the object it replaces, or
#: from an older event arriving after it (a delete event often names
#: only the id): never its state.
_DESCRIPTION_FIELDS = ('name', 'project_id', 'parent_id', 'parent_type',
                       'host', 'attributes')


def describe(item, source):
    """``item`` (a tombstone) with the description fields it lacks taken
    from ``source`` (an older or equal event, or the object it replaces),
    unless it took them from a greater one already (``described_from``:
    which event, and the fields): any arrival order ends the same."""
    done = item.get('described_from')
    if done:
        missing = done['fields']
    else:
        missing = [f for f in _DESCRIPTION_FIELDS if not item.get(f) or (
            f == 'name' and item[f] == item['id'])]
    if not missing or (_own_deleted(source)
                       and not source.get('described_from')):
        return item
    if source.get('described_from'):
        # A tombstone described already: rank it as its source.
        rank = source['described_from']['event']
    else:
        rank = f'{source.get("last_event_at") or ""}|{_digest(source)}'
    if done and done['event'] >= rank:
        return item
    described = dict(item, described_from={'event': rank,
                                           'fields': missing})
    for field in missing:
        described[field] = source.get(field)
    if not described.get('name'):
        described['name'] = item['id']
    if not isinstance(described.get('attributes'), dict):
        described['attributes'] = {}
    return described


def _earliest(*values):
    values = [v for v in values if v]
    return min(values) if values else None


def _stored(item):
    """A stored item with canonical timestamps (rows written before this
    code may hold other spellings)."""
    for field in ('last_event_at', 'created_at', 'updated_at',
                  'deleted_at'):
        value = item.get(field)
        if value is not None and not _CANONICAL.match(value):
            try:
                item[field] = timestamp(value)
            except ValueError:
                item[field] = None
    if item.get('last_event_at') is None:
        item['last_event_at'] = ''
    return item


def derive_object(obj, parent):
    """``obj`` with the fields the tree gives it: paths, a vNIC's host,
    and the deletion a parent's deletion marks it with."""
    derived = dict(obj)
    derived['id_path'], derived['name_path'] = paths(
        obj['id'], obj.get('name'), parent, obj.get('parent_id'))
    if parent is not None and obj['type'] in HOST_FROM_PARENT and parent.get(
            'host'):
        derived['host'] = parent['host']
    if (parent is not None and not _own_deleted(obj)
            and is_deleted(parent)
            and obj['type'] in CASCADE_DELETE.get(parent['type'], ())
            and (parent.get('deleted_at') or '') >= obj['last_event_at']):
        if not obj.get('deleted_by'):
            derived['reported_state'] = obj.get('state')
        derived['state'] = DELETED
        derived['deleted_at'] = parent['deleted_at']
        derived['deleted_by'] = parent['id']
    if derived.get('deleted_at'):
        derived['updated_at'] = max(derived['last_event_at'],
                                    derived['deleted_at'])
    else:
        derived['updated_at'] = derived['last_event_at']
    return derived


def derive_link(link, objects, siblings):
    """``link`` with the state its endpoints and exclusive siblings give
    it: closed when an endpoint was deleted at or after its event, or
    when a newer live link of an exclusive type leaves the same source.
    ``objects``: id → object; ``siblings``: the other links of the same
    source and type."""
    derived = dict(link)
    if _own_deleted(link):
        derived['deleted_at'] = link.get('deleted_at') or link[
            'last_event_at']
        derived['deleted_by'] = None
    else:
        causes = []
        for end in ('source_id', 'target_id'):
            obj = objects.get(link[end])
            if obj is not None and is_deleted(obj) and (
                    obj.get('deleted_at') or '') >= link['last_event_at']:
                causes.append((obj['deleted_at'], obj['id']))
        source = objects.get(link['source_id'])
        targets = ((source or {}).get('link_targets') or {}).get(
            link['link_type'])
        if targets is not None and link['target_id'] not in targets and (
                source['last_event_at'] >= link['last_event_at']):
            causes.append((source['last_event_at'], source['id']))
        if link['link_type'] in EXCLUSIVE_LINK_TYPES:
            mine = (link['last_event_at'], link['target_id'])
            for other in siblings:
                if not _own_deleted(other) and (
                        other['last_event_at'], other['target_id']) > mine:
                    causes.append((other['last_event_at'],
                                   other['target_id']))
        if causes:
            derived['state'] = DELETED
            derived['deleted_at'], derived['deleted_by'] = min(causes)
        else:
            derived['state'] = (link.get('state') if link.get('state')
                                != DELETED else ACTIVE)
            derived['deleted_at'] = None
            derived['deleted_by'] = None
    derived['updated_at'] = max(derived['last_event_at'],
                                derived['deleted_at'] or '')
    return derived


_MAX_LEVELS = 16


def _follows(child, moved_ids, order):
    """Whether ``child`` is to be derived again: its parent moved and it
    was not derived after its parent at this level (``order``)."""
    parent_id = child.get('parent_id')
    return parent_id in moved_ids and order.get(
        child['id'], -1) < order[parent_id]


def apply(batch, objects=(), links=()):
    """Merge objects and links from events into the store behind
    ``batch`` by the rules of this module; return how many objects and
    links were written. ValueError (nothing written) when one is not
    valid."""
    # What a builder made is valid and not changed here (the kept ones
    # are copied before they are): only the others are copied and checked.
    incoming = {}
    for obj in objects:
        if type(obj) is not _Valid:
            obj = validate_object(dict(obj))
            obj.setdefault('deleted_by', None)
        kept = incoming.get(obj['id'])
        if kept is None or newer(obj, kept):
            kept, obj = obj, kept
        if obj is not None and _own_deleted(kept):
            kept = describe(kept, obj)
        incoming[kept['id']] = kept
    incoming_links = {}
    for link in links:
        if type(link) is not _Valid:
            link = validate_link(dict(link))
            link.setdefault('deleted_by', None)
        key = link_key(link)
        kept = incoming_links.get(key)
        if kept is None or newer(link, kept):
            incoming_links[key] = link

    view = {}      # id -> object as it will be (stored or new)
    absent = set()  # ids known to be in neither

    def load(ids):
        wanted = [i for i in ids if i and i not in view and i not in absent]
        if not wanted:
            return
        for obj in batch.objects(wanted):
            view[obj['id']] = _stored(obj)
        absent.update(i for i in wanted if i not in view)

    load(set(incoming) | {o['parent_id'] for o in incoming.values()})
    before = {i: view.get(i) for i in incoming}
    write = set()
    frontier = set()
    for oid, obj in incoming.items():
        stored = view.get(oid)
        # The source's creation time, else the first event applied.
        created = obj.get('created_at') or obj['last_event_at']
        if stored is not None:
            created = _earliest(created, stored.get('created_at'))
        if stored is not None and not newer(obj, stored):
            if _own_deleted(stored):
                described = describe(stored, obj)
                if described is not stored:
                    view[oid] = described
                    frontier.add(oid)
            continue
        obj = dict(obj)
        if stored is not None and _own_deleted(obj):
            obj = describe(obj, stored)
        if stored is not None and stored.get('resource_ids') and (
                'resource_ids' not in obj):
            obj['resource_ids'] = stored['resource_ids']
        obj['created_at'] = created
        view[oid] = obj
        absent.discard(oid)
        frontier.add(oid)

    deletion_changed = set()
    for _ in range(_MAX_LEVELS):
        if not frontier:
            break
        load({view[i].get('parent_id') for i in frontier})
        moved = []
        # Where each object of this level was derived: a child derived
        # after its parent saw the parent as it is now.
        order = {}
        for oid in sorted(frontier, key=lambda i: DEPTH.get(
                view[i]['type'], 9)):
            order[oid] = len(order)
            current = view[oid]
            parent = view.get(current.get('parent_id'))
            derived = derive_object(current, parent)
            old = before.get(oid) if oid in incoming else current
            if oid not in before:
                before[oid] = current
            if derived != old:
                write.add(oid)
            view[oid] = derived
            stored = before.get(oid)
            if derived['type'] in PARENT_OF_SOME and (
                    stored is None or any(
                        derived.get(f) != stored.get(f) for f in (
                            'id_path', 'name_path', 'host', 'state',
                            'deleted_at'))):
                moved.append(oid)
            if is_deleted(derived) and (
                    stored is None or not is_deleted(stored)
                    or derived.get('deleted_at') != stored.get('deleted_at')):
                deletion_changed.add(oid)
        frontier = set()
        if moved:
            moved_ids = set(moved)
            # Children not stored yet (in this batch) follow too.
            frontier.update(i for i in view
                            if _follows(view[i], moved_ids, order))
            for child in batch.children(moved):
                child = _stored(child)
                cid = child['id']
                if cid not in view:
                    view[cid] = child
                    absent.discard(cid)
                if _follows(view[cid], moved_ids, order):
                    frontier.add(cid)
    else:
        raise ValueError('the inventory tree is deeper than '
                         f'{_MAX_LEVELS} levels (a parent cycle?)')

    # Links: the incoming ones, those of objects whose deletion changed,
    # and the exclusive siblings of both.
    link_view = {}
    sources = ({k[0] for k in incoming_links}
               | {i for i in write if view[i].get('link_targets')})
    for stored in batch.links_from(sources - deletion_changed):
        link_view[link_key(stored)] = _stored(stored)
    if deletion_changed:
        for stored in batch.links_of(deletion_changed):
            link_view[link_key(stored)] = _stored(stored)
    link_before = dict(link_view)
    touched = set()
    for key, link in incoming_links.items():
        stored = link_view.get(key)
        created = link.get('created_at') or link['last_event_at']
        if stored is not None:
            created = _earliest(created, stored.get('created_at'))
        if stored is not None and not newer(link, stored):
            continue
        link = dict(link, created_at=created)
        link_view[key] = link
        touched.add(key)
    for key in link_view:
        if key[0] in deletion_changed or key[1] in deletion_changed or (
                key[0] in write and key[2] in (
                    view[key[0]].get('link_targets') or ())):
            touched.add(key)
    exclusive = {(k[0], k[2]) for k in touched
                 if k[2] in EXCLUSIVE_LINK_TYPES}
    unloaded = {k[0] for k in exclusive} - sources - deletion_changed
    if unloaded:
        for stored in batch.links_from(unloaded):
            key = link_key(stored)
            if key not in link_view:
                link_view[key] = link_before[key] = _stored(stored)
    groups = {}
    for key, link in link_view.items():
        if (key[0], key[2]) in exclusive:
            groups.setdefault((key[0], key[2]), []).append(link)
            touched.add(key)
    load({k[0] for k in touched} | {k[1] for k in touched})
    written_links = []
    for key in sorted(touched):
        link = link_view[key]
        siblings = [s for s in groups.get((key[0], key[2]), ())
                    if s['target_id'] != key[1]]
        derived = derive_link(link, view, siblings)
        if derived != link_before.get(key):
            written_links.append(derived)
    written_objects = [view[i] for i in sorted(write)]
    if written_objects or written_links:
        batch.write(written_objects, written_links)
    return len(written_objects) + len(written_links)
