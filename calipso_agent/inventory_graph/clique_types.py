"""clique_types.yaml: the focal-point topologies and the dependency
direction of each link type, operator-editable.

A broken entry is logged (file, entry, reason) and skipped; the rest
loads. A file that cannot be read or is not a YAML mapping is an error
(CliqueTypesError) naming the file.
"""

import collections
import functools
import logging
import os
import re

import yaml

from calipso_agent import shipped

LOG = logging.getLogger(__name__)

DIRECTIONS = ('forward', 'reverse', 'both', 'none')
# "<source_type>-<target_type>": lower-case words joined by underscores.
_LINK_TYPE = re.compile(r'^[a-z][a-z0-9_]*-[a-z][a-z0-9_]*$')
_OBJECT_TYPE = re.compile(r'^[a-z][a-z0-9_]*$')

CliqueType = collections.namedtuple('CliqueType',
                                    'name focal_point_type link_types')


class CliqueTypesError(Exception):
    """The file as a whole cannot be used."""


class Rules:
    """The loaded file: clique types and the link types followed by
    impact and path, per direction."""

    def __init__(self, clique_types=(), link_directions=None):
        self.clique_types = list(clique_types)
        self.link_directions = dict(link_directions or {})

    def clique_types_of(self, object_type):
        """The clique types whose focal point is ``object_type`` (the
        default first)."""
        return [c for c in self.clique_types
                if c.focal_point_type == object_type]

    def clique_type(self, name):
        for clique_type in self.clique_types:
            if clique_type.name == name:
                return clique_type
        return None

    def following(self, view):
        """(forward link types, reverse link types) of ``view`` ("impact"
        or "path"): the link types walked from source to target, and
        from target to source."""
        forward, reverse = set(), set()
        for link_type, directions in self.link_directions.items():
            direction = directions.get(view, 'none')
            if direction in ('forward', 'both'):
                forward.add(link_type)
            if direction in ('reverse', 'both'):
                reverse.add(link_type)
        return frozenset(forward), frozenset(reverse)


@functools.lru_cache(maxsize=1024)
def link_type_ends(link_type):
    """The (source type, target type) a link type names."""
    source, _, target = link_type.partition('-')
    return source, target


def _skip(path, entry, reason):
    LOG.error('Clique types file %s: entry %s skipped: %s', path, entry,
              reason)


def _clique_type(path, index, entry, seen):
    """The CliqueType of one clique_types entry, or None (logged)."""
    label = f'clique_types[{index}]'
    if not isinstance(entry, dict):
        _skip(path, label, 'not a mapping')
        return None
    name = entry.get('name')
    if isinstance(name, str) and name:
        label = f'{label} ({name})'
    unknown = set(entry) - {'name', 'focal_point_type', 'link_types'}
    if unknown:
        _skip(path, label, f'unknown keys {sorted(map(str, unknown))}')
        return None
    if not isinstance(name, str) or not name:
        _skip(path, label, 'name is missing or not a string')
        return None
    if name in seen:
        _skip(path, label, f'name {name!r} is already defined')
        return None
    focal = entry.get('focal_point_type')
    if not isinstance(focal, str) or not _OBJECT_TYPE.match(focal):
        _skip(path, label, f'focal_point_type {focal!r} is not an object '
                           'type (lower-case word)')
        return None
    link_types = entry.get('link_types')
    if not isinstance(link_types, list) or not link_types:
        _skip(path, label, 'link_types must be a non-empty list')
        return None
    for link_type in link_types:
        if not isinstance(link_type, str) or not _LINK_TYPE.match(
                link_type):
            _skip(path, label, f'link type {link_type!r} is not '
                               '"<source_type>-<target_type>"')
            return None
    if len(set(link_types)) != len(link_types):
        _skip(path, label, 'a link type is listed twice')
        return None
    return CliqueType(name, focal, tuple(link_types))


def _directions(path, link_type, entry):
    """The {view: direction} of one link_types entry, or None (logged)."""
    label = f'link_types.{link_type}'
    if not isinstance(link_type, str) or not _LINK_TYPE.match(link_type):
        _skip(path, label, 'the key is not "<source_type>-<target_type>"')
        return None
    if not isinstance(entry, dict):
        _skip(path, label, 'not a mapping of impact/path to a direction')
        return None
    unknown = set(entry) - {'impact', 'path'}
    if unknown:
        _skip(path, label, f'unknown keys {sorted(map(str, unknown))}')
        return None
    for view, direction in entry.items():
        if direction not in DIRECTIONS:
            _skip(path, label, f'{view}: {direction!r} is not one of '
                               f'{", ".join(DIRECTIONS)}')
            return None
    return dict(entry)


def parse(document, path='<string>'):
    """The Rules of a loaded YAML document (broken entries skipped)."""
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise CliqueTypesError(f'Clique types file {path}: the document '
                               'is not a mapping')
    unknown = set(document) - {'clique_types', 'link_types'}
    if unknown:
        LOG.error('Clique types file %s: unknown top-level keys %s '
                  'ignored', path, sorted(map(str, unknown)))
    clique_types = []
    entries = document.get('clique_types') or []
    if not isinstance(entries, list):
        LOG.error('Clique types file %s: clique_types is not a list; no '
                  'clique type loaded', path)
        entries = []
    seen = set()
    for index, entry in enumerate(entries):
        clique_type = _clique_type(path, index, entry, seen)
        if clique_type is not None:
            seen.add(clique_type.name)
            clique_types.append(clique_type)
    directions = {}
    entries = document.get('link_types') or {}
    if not isinstance(entries, dict):
        LOG.error('Clique types file %s: link_types is not a mapping; no '
                  'dependency direction loaded', path)
        entries = {}
    for link_type, entry in entries.items():
        parsed = _directions(path, link_type, entry)
        if parsed is not None:
            directions[link_type] = parsed
    return Rules(clique_types, directions)


def load(path):
    """The Rules of the file ``path``; CliqueTypesError when it cannot
    be read or parsed."""
    try:
        with open(path, encoding='utf-8') as handle:
            document = yaml.safe_load(handle)
    except OSError as exc:
        raise CliqueTypesError(f'Clique types file {path}: cannot be read: '
                               f'{exc.strerror or exc}')
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise CliqueTypesError(f'Clique types file {path}: not valid YAML: '
                               f'{exc}')
    return parse(document, path)


def path_of(conf):
    """The configured file: as given, or found in the configuration
    directories, else the shipped one's directory."""
    configured = conf.api.clique_types
    found = conf.find_file(configured)
    if found:
        return found
    if os.path.isabs(configured):
        return configured
    return os.path.join(shipped.etc_dir(), configured)
