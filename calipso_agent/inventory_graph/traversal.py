"""Clique, impact, path and topology of the inventory graph.

Each is a breadth-first walk whose frontier is expanded in one store
round trip (``adjacent_links``), whatever its size; the objects reached
are read in one more per level for a tenant (a tenant's walk stops at
objects of other projects), once at the end for an admin. What the
caller may see of the result is the Visibility's.
"""

from calipso_agent.inventory_graph import clique_types as clique_mod

# Deepest walk of impact and path (a guard against a cyclic
# configuration; real chains are a handful of links long).
MAX_DEPTH = 64


def _triple(link):
    return (link['source_id'], link['target_id'], link['link_type'])


def _placeholder(object_id, object_type):
    """An object a link names that the store does not have (yet): an
    admin sees it so, a tenant does not see it."""
    return {'id': object_id, 'type': object_type, 'state': None,
            'project_id': None, 'unknown': True}


class Walk:
    """The objects and links reached so far from a start object."""

    def __init__(self, storage, visibility, start):
        self.storage = storage
        self.visibility = visibility
        self.start = start
        self.objects = {start['id']: start}
        self.types = {start['id']: start['type']}
        self.links = {}
        self._shown = {}

    def _resolve(self, ids):
        """Read the objects of ``ids`` (types from their links until
        then); a tenant's unknown or foreign ones are dropped."""
        ids = [i for i in ids if i not in self.objects]
        if not ids:
            return
        found = {o['id']: o for o in self.storage.list_inventory(ids=ids)}
        for object_id in ids:
            obj = found.get(object_id)
            if obj is None and self.visibility.is_admin:
                obj = _placeholder(object_id, self.types[object_id])
            if obj is None or not self.visibility.traversable(obj):
                self.types.pop(object_id, None)
                continue
            self.objects[object_id] = obj

    def add(self, links, accept):
        """Take ``links``; ``accept(link)`` names the end it reaches
        (or None). Returns the ids newly reached, in link order."""
        reached = []
        for link in links:
            new = accept(link)
            if new is None:
                continue
            self.links[_triple(link)] = link
            if new not in self.types:
                source_type, target_type = clique_mod.link_type_ends(
                    link['link_type'])
                self.types[new] = (target_type if new == link['target_id']
                                   else source_type)
                reached.append(new)
        if not self.visibility.is_admin:
            self._resolve(reached)
            reached = [i for i in reached if i in self.objects]
        return reached

    def finish(self):
        """The (id, node) pairs in the order reached (an iterator) and
        the edges, as the caller sees them."""
        if self.visibility.is_admin:
            self._resolve(list(self.types))
        node = self.visibility.node
        objects = self.objects
        pairs = ((i, node(objects[i])) for i in self.types if i in objects)
        return pairs, self.edges()

    def edges(self):
        ordered = [self.links[key] for key in sorted(self.links)]
        if self.visibility.is_admin:
            return ordered
        shown = (self.shown_link(link) for link in ordered)
        return [link for link in shown if link is not None]

    def node(self, object_id):
        return self.visibility.node(self.objects[object_id])

    def shown_link(self, link):
        """``link`` as shown (computed once per link: impact repeats the
        links near the start in every path)."""
        if self.visibility.is_admin:
            return link
        key = _triple(link)
        if key not in self._shown:
            self._shown[key] = self.visibility.link(link, self.objects)
        return self._shown[key]


def clique(storage, visibility, start, clique_type):
    """The focal point's topology: for each link type in turn, the
    objects linked by it (either direction) to those gathered so far."""
    walk = Walk(storage, visibility, start)
    for link_type in clique_type.link_types:
        source_type, target_type = clique_mod.link_type_ends(link_type)
        ends = {i for i, t in walk.types.items()
                if t in (source_type, target_type)}
        if not ends:
            continue
        # A link leaves an object of its source type and enters one of
        # its target type: a direction none of the ends can take is not
        # asked for (usually only one is: instances found, vNICs not).
        has_types = {walk.types[i] for i in ends}
        links = storage.adjacent_links(
            ends,
            outgoing=[link_type] if source_type in has_types else [],
            incoming=[link_type] if target_type in has_types else [])

        def accept(link):
            if link['source_id'] in walk.types:
                return link['target_id']
            return link['source_id']
        walk.add(links, accept)
    pairs, edges = walk.finish()
    return {'focal_point': walk.node(start['id']),
            'clique_type': clique_type.name,
            'nodes': [node for _, node in pairs],
            'edges': edges}


def _expansion(members, forward, reverse, reached, level):
    """The ``accept`` of one level of a breadth-first walk: the end a
    link leads to from ``members`` in its direction, if not reached
    yet (then recorded in ``reached``)."""
    depths, vias = reached.depths, reached.vias

    def accept(link):
        if link['source_id'] in members and link['link_type'] in forward:
            other = link['target_id']
        elif link['target_id'] in members and \
                link['link_type'] in reverse:
            other = link['source_id']
        else:
            return None
        if other in depths:
            return None
        depths[other] = level
        vias[other] = link
        return other
    return accept


class Reached:
    """Per object reached by a breadth-first walk, its depth and the
    link it was reached by (None for the start): two dicts, not a tuple
    per object (thousands of objects that live as long as the walk make
    the garbage collector run)."""

    def __init__(self, start_id):
        self.depths = {start_id: 0}
        self.vias = {start_id: None}

    def keep_only(self, ids):
        for dropped in set(self.depths) - set(ids):
            del self.depths[dropped]
            del self.vias[dropped]


def _breadth_first(storage, visibility, start, forward, reverse, depth):
    """The walk along ``forward`` link types (source to target) and
    ``reverse`` ones (target to source), at most ``depth`` links deep;
    with, per object reached, its depth and the link it was reached
    by."""
    walk = Walk(storage, visibility, start)
    reached = Reached(start['id'])
    frontier, previous = [start['id']], []
    level = 0
    while frontier and level < depth and (forward or reverse):
        level += 1
        members = set(frontier)
        # Links back to the previous level lead nowhere new (breadth
        # first) and were recorded when it was reached.
        links = storage.adjacent_links(members, outgoing=forward,
                                       incoming=reverse, exclude=previous)
        previous = frontier

        frontier = walk.add(links, _expansion(
            members, forward, reverse, reached, level))
        if not visibility.is_admin:
            # A tenant's walk dropped what it may not go through.
            reached.keep_only(walk.types)
    return walk, reached


def _previous(link, object_id):
    """The end of ``link`` (by which ``object_id`` was reached) it was
    reached from."""
    return (link['source_id'] if link['target_id'] == object_id
            else link['target_id'])


def _chain(walk, reached, object_id):
    """The links from the start to ``object_id``, as shown."""
    chain = []
    while True:
        link = reached.vias[object_id]
        if link is None:
            break
        chain.append(walk.shown_link(link))
        object_id = _previous(link, object_id)
    chain.reverse()
    return chain


def impact(storage, visibility, rules, start, depth=MAX_DEPTH):
    """Every object that depends on ``start``, each with the links from
    the start to it."""
    forward, reverse = rules.following('impact')
    walk, reached = _breadth_first(storage, visibility, start, forward,
                                   reverse, depth)
    pairs, edges = walk.finish()
    dependents = []
    # Breadth first: the path to the object a link was followed from is
    # known when the link's far end comes (one list per object).
    paths = {start['id']: []}
    for object_id, node in pairs:
        if object_id == start['id']:
            continue
        link = reached.vias[object_id]
        before = paths.get(_previous(link, object_id))
        if before is None:
            path = _chain(walk, reached, object_id)
        else:
            path = before.copy()
            path.append(walk.shown_link(link))
        paths[object_id] = path
        # The node is the walk's own (read for it, or made by the
        # Visibility): given its depth and path in place.
        node['depth'] = reached.depths[object_id]
        node['path'] = path
        dependents.append(node)
    return {'focal_point': walk.node(start['id']),
            'dependents': dependents, 'edges': edges}


def path(storage, visibility, rules, start):
    """The chain up from ``start`` through what it depends on, each
    object with its state; the first object (breadth first) that is not
    ACTIVE is marked ``first_failure``."""
    forward, reverse = rules.following('path')
    walk, reached = _breadth_first(storage, visibility, start, forward,
                                   reverse, MAX_DEPTH)
    pairs, edges = walk.finish()
    chain, first = [], None
    for object_id, node in pairs:
        level, link = reached.depths[object_id], reached.vias[object_id]
        step = {**node, 'depth': level,
                'via': None if link is None else walk.shown_link(link),
                'first_failure': False}
        if first is None and node.get('state') != 'ACTIVE' and not \
                node.get('unknown'):
            step['first_failure'] = True
            first = node['id']
        chain.append(step)
    return {'focal_point': walk.node(start['id']), 'chain': chain,
            'first_failure': first, 'edges': edges}


def topology(storage, visibility, project_ids):
    """The objects and links of ``project_ids`` as one graph, with the
    infrastructure objects they link to (opaque to a tenant)."""
    objects = {o['id']: o for o in storage.list_inventory(
        project_ids=project_ids)}
    links = [link for link in storage.adjacent_links(list(objects))
             if link.get('project_id') is None
             or link.get('project_id') in project_ids]
    others = {i for link in links for i in (link['source_id'],
                                            link['target_id'])} - set(objects)
    if others:
        for obj in storage.list_inventory(ids=others):
            if obj.get('project_id') is None or \
                    obj.get('project_id') in project_ids:
                objects[obj['id']] = obj
    nodes = [visibility.node(objects[i]) for i in sorted(objects)]
    edges = []
    for link in links:
        if link['source_id'] in objects and link['target_id'] in objects:
            shown = visibility.link(link, objects)
            if shown is not None:
                edges.append(shown)
    return {'project_ids': sorted(project_ids), 'nodes': nodes,
            'edges': edges}
