"""Fields of a meter definition: how a value is read from a notification.

A field spec is what meters.yaml puts after a key: a constant number, a
JSONPath string (with the jsonpath-rw-ext extensions Ceilometer's file uses:
filters, ``split``/``sub``, arithmetic between paths), a list of paths (the
first that yields a value wins), or ``{fields: ..., plugin: ...}``.

Parsing is done once by jsonpath-rw-ext, the library Ceilometer uses, so
every expression means what it means there. Plain key chains
(``$.payload.instance_id``), by far the most common, are then compiled into
direct dict look-ups: evaluating them is the agent's hot path.
"""

import contextlib
import io

import jsonpath_rw
from jsonpath_rw_ext import parser as jsonpath_parser

_PARSER = jsonpath_parser.ExtentedJsonPathParser()
_PARSE_CACHE = {}


class FieldSpecError(ValueError):
    """A field spec that cannot be used (bad JSONPath, unknown plugin)."""


def parse_path(expression):
    """The jsonpath-rw-ext tree of ``expression`` (cached), or raise."""
    try:
        return _PARSE_CACHE[expression]
    except KeyError:
        pass
    try:
        # jsonpath-rw-ext prints some nodes while parsing; keep stdout ours.
        with contextlib.redirect_stdout(io.StringIO()):
            tree = _PARSER.parse(expression)
    except Exception as exc:
        raise FieldSpecError(
            f'invalid JSONPath {expression!r}: {exc}') from None
    _PARSE_CACHE[expression] = tree
    return tree


def _key_chain(node):
    """The dict keys a tree walks from the root, if it is only that."""
    if isinstance(node, jsonpath_rw.Root):
        return ()
    if (type(node) is jsonpath_rw.Fields and len(node.fields) == 1
            and node.fields[0] != '*'):
        return (node.fields[0],)
    if type(node) is jsonpath_rw.Child:
        if isinstance(node.right, jsonpath_rw.Root):
            return None
        left = _key_chain(node.left)
        right = _key_chain(node.right)
        if left is not None and right is not None:
            return left + right
    return None


def _digger(keys):
    """A function reading ``keys`` down nested dicts (None if absent)."""
    if len(keys) == 1:
        (k1,) = keys

        def dig(obj):
            return obj.get(k1) if isinstance(obj, dict) else None
    elif len(keys) == 2:
        k1, k2 = keys

        def dig(obj):
            if isinstance(obj, dict):
                obj = obj.get(k1)
                if isinstance(obj, dict):
                    return obj.get(k2)
            return None
    elif len(keys) == 3:
        k1, k2, k3 = keys

        def dig(obj):
            if isinstance(obj, dict):
                obj = obj.get(k1)
                if isinstance(obj, dict):
                    obj = obj.get(k2)
                    if isinstance(obj, dict):
                        return obj.get(k3)
            return None
    else:
        def dig(obj):
            for key in keys:
                if not isinstance(obj, dict):
                    return None
                obj = obj.get(key)
            return obj
    return dig


class Path:
    """A compiled JSONPath expression."""

    __slots__ = ('expression', 'tree', 'keys', 'first')

    def __init__(self, expression):
        self.expression = expression
        self.tree = parse_path(expression)
        self.keys = _key_chain(self.tree)
        #: The first non-null value the path selects in an object, or None.
        self.first = (_digger(self.keys) if self.keys is not None
                      else self._find_first)

    def _find_first(self, obj):
        for match in self.tree.find(obj):
            if match.value is not None:
                return match.value
        return None

    def matches(self, obj):
        """Every match, as (path, value) pairs, nulls included."""
        return [(_full_path(m), m.value) for m in self.tree.find(obj)]


def _full_path(match):
    """The dotted path of a match, as Ceilometer's plugins receive it."""
    parts = []
    while match is not None and match.context is not None:
        parts.append(str(match.path))
        match = match.context
    return '.'.join(reversed(parts))


class FieldDefinition:
    """How one attribute of a sample is read from a notification.

    ``first`` gives one value (or None); ``all`` gives every value, nulls
    included, for ``lookup`` definitions that build several samples from
    one notification.
    """

    __slots__ = ('name', 'spec', 'constant', 'paths', 'plugin',
                 'is_constant', 'first')

    def __init__(self, name, spec, plugins=None, literal_fallback=False):
        self.name = name
        self.spec = spec
        self.plugin = None
        self.constant = None
        self.paths = ()
        self.is_constant = False
        self.first = self._first
        fields = spec
        if isinstance(spec, dict):
            if 'fields' not in spec:
                raise FieldSpecError(f"{name}: 'fields' is required when "
                                     'a field is given as a mapping')
            fields = spec['fields']
            if 'plugin' in spec:
                self.plugin = _load_plugin(name, spec['plugin'],
                                           plugins or {})
        if isinstance(fields, bool) or fields is None:
            raise FieldSpecError(f'{name}: {fields!r} is neither a number '
                                 'nor a JSONPath')
        if isinstance(fields, (int, float)):
            self._set_constant(fields)
            return
        if isinstance(fields, str):
            fields = [fields]
        if not isinstance(fields, list) or not fields or not all(
                isinstance(f, str) for f in fields):
            raise FieldSpecError(f'{name}: {fields!r} is not a JSONPath or '
                                 'a list of JSONPaths')
        try:
            self.paths = tuple(Path(f) for f in fields)
        except FieldSpecError as exc:
            if literal_fallback and len(fields) == 1:
                self._set_constant(fields[0])
                return
            raise FieldSpecError(f'{name}: {exc}') from None
        if self.plugin is None and len(self.paths) == 1:
            self.first = self.paths[0].first

    def _set_constant(self, value):
        self.constant = value
        self.is_constant = True
        self.first = lambda obj: value

    def _first(self, obj):
        if self.is_constant:
            return self.constant
        if self.plugin is not None:
            values = self.plugin.values(
                [m for m in self._matches(obj) if m[1] is not None])
            values = [v for v in values if v is not None]
            return values[0] if values else None
        for path in self.paths:
            value = path.first(obj)
            if value is not None:
                return value
        return None

    def all(self, obj):
        if self.is_constant:
            return self.constant
        matches = self._matches(obj)
        if self.plugin is not None:
            if not self.plugin.supports_all_values:
                raise FieldSpecError(f'{self.name}: plugin '
                                     f'{type(self.plugin).__name__} gives '
                                     'one value, not one per lookup entry')
            return [v for v in self.plugin.values(matches) if v is not None]
        return [value for _, value in matches]

    def _matches(self, obj):
        matches = []
        for path in self.paths:
            matches.extend(path.matches(obj))
        return matches


def _load_plugin(name, plugin_cfg, plugins):
    if isinstance(plugin_cfg, str):
        plugin_name, params = plugin_cfg, {}
    elif isinstance(plugin_cfg, dict) and 'name' in plugin_cfg:
        plugin_name = plugin_cfg['name']
        params = plugin_cfg.get('parameters') or {}
    else:
        raise FieldSpecError(f'{name}: plugin {plugin_cfg!r} names no '
                             'plugin')
    try:
        plugin_class = plugins[plugin_name]
    except (KeyError, TypeError):
        raise FieldSpecError(f'{name}: no plugin named {plugin_name!r} '
                             f'(known: {", ".join(sorted(plugins))})')
    try:
        return plugin_class(**params)
    except TypeError as exc:
        raise FieldSpecError(f'{name}: plugin {plugin_name!r}: {exc}')
