"""What a caller may see of the inventory graph.

An admin sees everything. Anyone else sees the objects and links of its
projects (a member: its token's project; a channel proxy's reader: the
channel's declared projects). Infrastructure objects (no project: hosts,
agents, availability zones, regions) are admin-only: a tenant cannot
read or list them, but a traversal from one of its objects goes through
them and shows them as opaque nodes, type and state only, under a token
that is stable for the same projects and means nothing elsewhere (HMAC
of ``[api] opaque_id_key``, the projects and the id), so a tenant sees
its VM sits on a DOWN host without learning the host's name. Objects of
other projects are neither shown nor traversed.
"""

import hashlib
import hmac
import logging
import re
import secrets

LOG = logging.getLogger(__name__)

OPAQUE_PREFIX = 'opaque-'
# What an opaque node and a link between infrastructure objects keep.
OPAQUE_NODE_FIELDS = ('id', 'type', 'state')
BARE_LINK_FIELDS = ('source_id', 'target_id', 'link_type', 'state')
# What impact and path add to each node they list (traversal.py).
STEP_FIELDS = ('depth', 'path', 'via', 'first_failure')

INFRASTRUCTURE_TYPES = frozenset(('region', 'availability_zone', 'host',
                                  'vservice', 'vedge'))
# Source fields naming where an object runs (nova's host, node and
# OS-EXT-SRV-ATTR:*, neutron's binding:host_id, availability zones):
# left out of a tenant's view of its own objects, at any depth.
PLACEMENT_KEY = re.compile(r'host|node|hypervisor|OS-EXT-SRV-ATTR|'
                           r'availability_zone', re.IGNORECASE)

# The fields of its own objects a tenant sees: the contract's, not the
# store's bookkeeping (link_targets, described_from, reported_state and
# deleted_by name other objects, maybe infrastructure or another
# project's).
TENANT_OBJECT_FIELDS = ('id', 'type', 'name', 'project_id', 'parent_id',
                        'parent_type', 'id_path', 'name_path', 'environment',
                        'host', 'state', 'attributes', 'created_at',
                        'updated_at', 'deleted_at', 'last_event_at',
                        'resource_ids')

_process_key = None


def _without_placement(value):
    if isinstance(value, dict):
        return {k: _without_placement(v) for k, v in value.items()
                if not (isinstance(k, str) and PLACEMENT_KEY.search(k))}
    if isinstance(value, list):
        return [_without_placement(v) for v in value]
    return value


def _key(configured):
    global _process_key
    if configured:
        return configured.encode('utf-8')
    if _process_key is None:
        LOG.warning('[api] opaque_id_key is not set: the opaque tokens of '
                    'infrastructure objects change with each process')
        _process_key = secrets.token_bytes(32)
    return _process_key


class Visibility:
    """The projects a caller sees (None: every one, an admin's)."""

    def __init__(self, projects=None, key=None):
        self.projects = None if projects is None else frozenset(projects)
        self._key = None if projects is None else _key(key)
        self._scope = ','.join(sorted(self.projects or ()))

    @property
    def is_admin(self):
        return self.projects is None

    def owns(self, obj):
        """Whether ``obj`` (object or link) is of a visible project."""
        return self.is_admin or obj.get('project_id') in self.projects

    def traversable(self, obj):
        """Whether a traversal may reach and go through ``obj``: visible,
        or infrastructure (shown opaque)."""
        return self.is_admin or self.owns(obj) or obj.get(
            'project_id') is None

    def token(self, object_id):
        message = f'{self._scope}\0{object_id}'.encode()
        digest = hmac.new(self._key, message, hashlib.sha256).hexdigest()
        return OPAQUE_PREFIX + digest[:32]

    def shown_id(self, obj):
        """The id a caller sees for ``obj``."""
        if self.owns(obj):
            return obj['id']
        return self.token(obj['id'])

    def node(self, obj):
        """``obj`` as shown: whole (to a tenant without what names its
        placement), or opaque. An admin's is ``obj`` itself, not a copy
        (the traversals' results are read-only)."""
        if self.is_admin:
            return obj
        if self.owns(obj):
            return self._own_object(obj)
        return {'id': self.token(obj['id']), 'type': obj.get('type'),
                'state': obj.get('state'), 'opaque': True}

    def _own_object(self, obj):
        """A tenant's own object: its host, an infrastructure parent's id
        (made a token) and tree paths starting outside its projects (the
        region → zone → host tree) are placement, not its data."""
        shown = _without_placement({field: obj[field]
                                    for field in TENANT_OBJECT_FIELDS
                                    if field in obj})
        if 'host' in obj:
            shown['host'] = None
        infrastructure_parent = (
            obj.get('parent_type') in INFRASTRUCTURE_TYPES
            or obj.get('type') == 'instance')
        if infrastructure_parent and obj.get('parent_id') is not None:
            shown['parent_id'] = self.token(obj['parent_id'])
        id_path = obj.get('id_path')
        root = id_path.strip('/').split('/')[0] if isinstance(
            id_path, str) else None
        if root not in self.projects:
            for field in ('id_path', 'name_path'):
                if field in obj:
                    shown[field] = None
        return shown

    def link(self, link, objects):
        """``link`` as shown given the ``objects`` by id it joins, or None
        when it may not be shown (an end or the link itself is of another
        project, or an end is unknown to a tenant)."""
        if self.is_admin:
            return link
        ends = [objects.get(link['source_id']), objects.get(link['target_id'])]
        if any(end is None or not self.traversable(end) for end in ends):
            return None
        if not self.owns(link) and link.get('project_id') is not None:
            return None
        if self.owns(link) and all(self.owns(end) for end in ends):
            shown = _without_placement(link)
        else:
            # An end is opaque: the link's own fields could name it.
            shown = {field: link.get(field) for field in BARE_LINK_FIELDS}
        shown['source_id'] = self.shown_id(ends[0])
        shown['target_id'] = self.shown_id(ends[1])
        return shown
