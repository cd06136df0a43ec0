"""/v2/inventory and /v2/topology: the live inventory graph, read
(doc/inventory-api.md).

Tenancy is the Visibility's (inventory_graph/visibility.py): an admin
sees everything; a member its project, a channel proxy's reader the
projects its request declares; infrastructure objects are admin-only and
opaque nodes inside a tenant's clique, impact, path and topology. An id
a caller may not see is not found (404), a filter naming a project it
may not see refused (403).
"""

import os
import threading

from calipso_agent.api import query as api_query
from calipso_agent.api.v2 import models
from calipso_agent.inventory_graph import clique_types as clique_mod
from calipso_agent.inventory_graph import traversal
from calipso_agent.inventory_graph import visibility as visibility_mod
from calipso_agent.storage import base as storage_base
from calipso_agent.wsgi import errors

# Filters of GET /v2/inventory besides type and project_id: one value
# each, compared for equality.
EQUALITY_FILTERS = ('parent_id', 'host', 'name', 'state')

_rules_lock = threading.Lock()
_rules_cache = {}


class RulesUnavailable(errors.APIError):
    code = 503


def rules_of(conf):
    """The clique types file's Rules, read again when it changes."""
    path = clique_mod.path_of(conf)
    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError:
        stamp = None
    with _rules_lock:
        cached = _rules_cache.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            rules = clique_mod.load(path)
        except clique_mod.CliqueTypesError as exc:
            raise RulesUnavailable(str(exc))
        _rules_cache[path] = (stamp, rules)
        return rules


def visibility_of(ctx):
    identity = ctx.identity
    if identity.is_admin:
        return visibility_mod.Visibility()
    if identity.is_reader:
        projects = identity.reader_scope()
    else:
        projects = [identity.own_project()]
    return visibility_mod.Visibility(projects, ctx.conf.api.opaque_id_key)


def _last(params, name):
    """The last value of a parameter (None when absent or empty)."""
    values = params.getall(name)
    if not values or values[-1] == '':
        return None
    return values[-1]


def _listed(params, name):
    """Every value of a repeatable, comma-separated parameter (None when
    absent)."""
    values = [item.strip() for value in params.getall(name)
              for item in value.split(',') if item.strip()]
    return values or None


def _project_filter(visibility, named):
    """The projects a list or topology reads: the named ones, each of
    which the caller must see (403), else the caller's own (None: an
    admin's every project)."""
    if named is None:
        return None if visibility.is_admin else sorted(visibility.projects)
    if not visibility.is_admin:
        for project in named:
            if project not in visibility.projects:
                raise errors.ForbiddenError(
                    f'Not Authorized to access project {project}')
    return named


def _not_found(object_id):
    return errors.NotFoundError(f'Inventory object {object_id} Not Found')


def _visible_object(ctx, visibility, object_id):
    """The object of ``object_id`` if the caller may see it, else 404
    (the same for an object that does not exist). A tombstone is read
    too: its state says it was deleted."""
    found = ctx.storage.list_inventory(ids=[object_id], deleted=True)
    if not found or not visibility.owns(found[0]):
        raise _not_found(object_id)
    return found[0]


def list_objects(ctx):
    params = ctx.params
    visibility = visibility_of(ctx)
    limit = api_query.parse_limit(params,
                                  ctx.conf.api.default_api_return_limit)
    deleted = api_query.parse_bool(params, 'deleted', False)
    project_ids = _project_filter(visibility, _listed(params, 'project_id'))
    filters = {name: _last(params, name) for name in EQUALITY_FILTERS}
    if not visibility.is_admin:
        if filters['host'] is not None:
            raise errors.ForbiddenError('The host filter is for admins '
                                        'only (hosts are infrastructure)')
        parent = filters['parent_id']
        if parent is not None and parent not in visibility.projects and \
                not ctx.storage.list_inventory(
                    ids=[parent], project_ids=project_ids, deleted=True):
            # Only a parent the caller sees has children it sees; the
            # answer must not tell whether an infrastructure id exists.
            return []
    objects = ctx.storage.list_inventory(
        types=_listed(params, 'type'), project_ids=project_ids,
        limit=limit, marker=_last(params, 'marker'), deleted=deleted,
        **filters)
    return [visibility.node(obj) for obj in objects]


def get_object(ctx, object_id):
    """The object with the meters recorded for it: those whose
    resource_id is its id or one of its ``resource_ids``."""
    visibility = visibility_of(ctx)
    obj = _visible_object(ctx, visibility, object_id)
    resource_ids = [object_id] + [
        rid for rid in obj.get('resource_ids') or ()
        if isinstance(rid, str) and rid]
    sample_filter = storage_base.SampleFilter(
        resource_id=resource_ids,
        project_id=(None if visibility.is_admin
                    else sorted(visibility.projects)))
    shown = visibility.node(obj)
    shown['meters'] = [models.meter(item) for item in
                       ctx.storage.get_meters(sample_filter)]
    return shown


def get_links(ctx, object_id):
    """The links from and to the object (closed ones with
    ``deleted=true``), as the caller may see them."""
    visibility = visibility_of(ctx)
    obj = _visible_object(ctx, visibility, object_id)
    deleted = api_query.parse_bool(ctx.params, 'deleted', False)
    links = ctx.storage.adjacent_links([object_id], deleted=deleted)
    others = {i for link in links for i in (link['source_id'],
                                            link['target_id'])}
    objects = {o['id']: o for o in ctx.storage.list_inventory(
        ids=others - {object_id}, deleted=True)}
    objects[object_id] = obj
    if visibility.is_admin:
        return links
    shown = (visibility.link(link, objects) for link in links)
    return [link for link in shown if link is not None]


def get_clique(ctx, object_id):
    visibility = visibility_of(ctx)
    obj = _visible_object(ctx, visibility, object_id)
    rules = rules_of(ctx.conf)
    name = _last(ctx.params, 'clique_type')
    if name is None:
        candidates = rules.clique_types_of(obj['type'])
        if not candidates:
            raise errors.NotFoundError(
                f'No clique type has the focal point type {obj["type"]}')
        clique_type = candidates[0]
    else:
        clique_type = rules.clique_type(name)
        if clique_type is None:
            raise errors.InvalidParameterError(
                'clique_type', f'{name!r} is not a clique type')
        if clique_type.focal_point_type != obj['type']:
            raise errors.InvalidParameterError(
                'clique_type', f'{name!r} has focal points of type '
                               f'{clique_type.focal_point_type}, not '
                               f'{obj["type"]}')
    return traversal.clique(ctx.storage, visibility, obj, clique_type)


def get_impact(ctx, object_id):
    depth = api_query.parse_int(ctx.params, 'depth', traversal.MAX_DEPTH)
    if not 1 <= depth <= traversal.MAX_DEPTH:
        raise errors.InvalidParameterError(
            'depth', f'{depth} is not between 1 and {traversal.MAX_DEPTH}')
    visibility = visibility_of(ctx)
    obj = _visible_object(ctx, visibility, object_id)
    return traversal.impact(ctx.storage, visibility, rules_of(ctx.conf),
                            obj, depth)


def get_path(ctx, object_id):
    visibility = visibility_of(ctx)
    obj = _visible_object(ctx, visibility, object_id)
    return traversal.path(ctx.storage, visibility, rules_of(ctx.conf), obj)


def get_topology(ctx):
    visibility = visibility_of(ctx)
    named = _listed(ctx.params, 'project_id')
    if named is None and visibility.is_admin:
        raise errors.InvalidParameterError(
            'project_id', 'an admin names the project(s) of the topology')
    project_ids = _project_filter(visibility, named)
    return traversal.topology(ctx.storage, visibility, set(project_ids))
