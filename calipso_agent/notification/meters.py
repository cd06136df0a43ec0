"""Declarative meters: meters.yaml definitions turn notifications into samples.

The format is Ceilometer's ``meters.yaml``: a ``metric:`` list whose entries
name a meter, the event types it is built from, and JSONPath fields for
volume, resource, user, project, timestamp and metadata (see ``fields``).
Definitions come from the ``*.yaml`` files of ``[meter]
meter_definitions_dirs`` (each directory's files sorted by name), then from
``[meter] meter_definitions_paths``; a later definition of a meter name
replaces an earlier one.

Behaviour kept from Ceilometer 27, so the same file gives the same samples:
event types are shell wildcards or regular expressions matched at the start
(``compute.instance.(?!update).*``); a meter with no ``metadata:`` mapping
(or one whose every value is empty) carries the whole payload plus
``event_type`` and ``host``; ``user_metadata`` copies reserved instance
metadata. Deliberate differences: user_id and project_id fall back to the
request context (``ctxt.user_id`` then ``ctxt.user``; ``ctxt.project_id``
then ``ctxt.tenant_id``) as Ceilometer documents but never did, and a
sample without a resource id or a numeric volume is not built: the reason
is reported instead.
"""

import glob
import itertools
import logging
import math
import os

import yaml
from stevedore import extension

from calipso_agent import delivery, envelope
from calipso_agent import sample as sample_mod
from calipso_agent.notification import base, fields

LOG = logging.getLogger(__name__)

PLUGIN_NAMESPACE = 'calipso.meter.plugin'

REQUIRED_FIELDS = ('name', 'type', 'event_type', 'unit', 'volume',
                   'resource_id')
SAMPLE_ATTRIBUTES = ('name', 'type', 'volume', 'unit', 'timestamp',
                     'user_id', 'project_id', 'resource_id')

# Keys of the notification dict oslo.messaging's dispatcher builds: a key
# chain starting elsewhere can never select anything.
NOTIFICATION_KEYS = frozenset(('ctxt', 'publisher_id', 'event_type',
                               'payload', 'metadata', 'priority'))

USER_ID_FALLBACK = fields.FieldDefinition(
    'user_id', ['$.ctxt.user_id', '$.ctxt.user'])
PROJECT_ID_FALLBACK = fields.FieldDefinition(
    'project_id', ['$.ctxt.project_id', '$.ctxt.tenant_id'])


# A meter's failure in the log line of its notification is cut to this.
REASON_LENGTH = 300

# Memo key of a NotificationView: why its user metadata was left out.
IGNORED_USER_METADATA = ('user_metadata', 'ignored')


class MeterDefinitionError(ValueError):
    """A meter definition that cannot be loaded; says where and why."""

    def __init__(self, origin, reason):
        super().__init__(f'{origin}: {reason}')
        self.origin = origin
        self.reason = reason


class SampleBuildError(Exception):
    """A definition matched but could not build its sample from this
    notification (a field selected nothing, a value of the wrong kind)."""


def _never_selects(field):
    """True for a literal such as ``gauge`` read the JSONPath way."""
    return (not field.is_constant and all(
        p.keys is not None and (not p.keys or
                                p.keys[0] not in NOTIFICATION_KEYS)
        for p in field.paths))


class ReservedMetadata:
    """Which user metadata (``user_metadata:``) goes into the sample."""

    def __init__(self, namespaces=('metering.',), keys=(), limit=256):
        self.namespaces = tuple(namespaces)
        self.keys = tuple(keys)
        self.limit = limit

    @classmethod
    def from_conf(cls, conf):
        return cls(conf.reserved_metadata_namespace,
                   conf.reserved_metadata_keys,
                   conf.reserved_metadata_length)

    def _clip(self, value):
        return value[:self.limit] if isinstance(value, str) else value

    def add_to(self, user_meta, metadata):
        if not isinstance(user_meta, dict):
            return
        selected = {}
        for prefix in self.namespaces:
            for key, value in user_meta.items():
                if key.startswith(prefix):
                    short = key[len(prefix):].replace('.', '_')
                    if short not in metadata:
                        selected[short] = self._clip(value)
        for key in self.keys:
            if key in user_meta:
                short = key.replace('.', '_')
                if short not in metadata:
                    selected[short] = self._clip(user_meta[key])
        if selected:
            metadata['user_metadata'] = selected


class NotificationView:
    """One notification, with the values several definitions share.

    Definitions of one event type mostly read the same fields (the nova
    meters share one metadata mapping); ``value`` computes each field once.
    """

    __slots__ = ('message', 'memo', 'message_id', 'key')

    def __init__(self, message):
        self.message = message
        self.memo = {}
        self.message_id = envelope.message_id(message)
        self.key = base.message_key(message)

    def value(self, field):
        memo = self.memo
        if field in memo:
            return memo[field]
        value = memo[field] = field.first(self.message)
        return value

    def notification_timestamp(self):
        return envelope.timestamp(self.message)


def _volume(value, where):
    if value is None:
        raise SampleBuildError(f'volume: {where} selected nothing')
    if isinstance(value, bool):
        raise SampleBuildError(f'volume: {value!r} is a boolean, not a '
                               'number')
    number = None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
    if number is None:
        raise SampleBuildError(f'volume: {value!r} is not a number')
    if not math.isfinite(number):
        raise SampleBuildError(f'volume: {value!r} is not a finite number')
    return number


_timestamp_cache = {}


def _timestamp(value):
    try:
        return _timestamp_cache[value]
    except (KeyError, TypeError):
        pass
    try:
        normalized = sample_mod.normalize_timestamp(value)
    except (ValueError, TypeError):
        raise SampleBuildError(f'timestamp: {value!r} is not an ISO 8601 '
                               'timestamp')
    if len(_timestamp_cache) > 4096:
        _timestamp_cache.clear()
    _timestamp_cache[value] = normalized
    return normalized


class MeterDefinition:
    """One ``metric:`` entry of a meters.yaml file."""

    def __init__(self, cfg, plugins, origin='<definition>',
                 reserved_metadata=None, source='openstack',
                 field_cache=None):
        self.origin = origin
        self._field_cache = {} if field_cache is None else field_cache
        if not isinstance(cfg, dict):
            raise MeterDefinitionError(origin, 'an entry must be a mapping, '
                                       f'not {type(cfg).__name__}')
        self.cfg = cfg
        missing = [f for f in REQUIRED_FIELDS if not cfg.get(f)]
        if missing:
            raise MeterDefinitionError(
                origin, f'required fields {", ".join(missing)} not given')
        self.name = cfg['name']
        self.source = source
        self.reserved_metadata = reserved_metadata or ReservedMetadata()
        lookup = cfg.get('lookup') or []
        if isinstance(lookup, str):
            lookup = [lookup]
        if not isinstance(lookup, list) or not all(
                isinstance(x, str) for x in lookup):
            raise MeterDefinitionError(origin, 'lookup must be a list of '
                                       f'field names, not {lookup!r}')
        unknown = sorted(set(lookup) - set(SAMPLE_ATTRIBUTES))
        if unknown:
            raise MeterDefinitionError(
                origin, f'lookup names unknown fields {unknown}')
        self.lookup = lookup
        if 'type' not in lookup and cfg['type'] not in sample_mod.TYPES:
            raise MeterDefinitionError(
                origin, f'invalid type {cfg["type"]!r} (one of '
                f'{", ".join(sample_mod.TYPES)})')
        try:
            self.matches_event_type = base.EventTypeMatcher(
                cfg['event_type'], regex=True)
        except (ValueError, TypeError) as exc:
            raise MeterDefinitionError(origin, f'event_type: {exc}')
        metadata = cfg.get('metadata') or {}
        if not isinstance(metadata, dict):
            raise MeterDefinitionError(origin, 'metadata must be a mapping')
        try:
            self.attributes = {}
            for attr in SAMPLE_ATTRIBUTES:
                spec = cfg.get(attr)
                if spec:
                    self.attributes[attr] = self._field(
                        attr, spec, plugins,
                        literal_fallback=attr in ('name', 'type', 'unit'))
            self.metadata = tuple(
                (key, self._field(key, spec, plugins))
                for key, spec in metadata.items())
            self._metadata_key = self._field_cache.setdefault(
                ('metadata', repr(metadata), repr(cfg.get('user_metadata'))),
                object())
            user_meta = cfg.get('user_metadata')
            self.user_metadata = (self._field(
                'user_metadata', user_meta, plugins) if user_meta else None)
        except fields.FieldSpecError as exc:
            raise MeterDefinitionError(origin, str(exc))
        self._literals = {
            attr: cfg[attr] for attr in ('name', 'type', 'unit')
            if _never_selects(self.attributes[attr])}

    def __repr__(self):
        return f'<MeterDefinition {self.name} ({self.origin})>'

    def _field(self, name, spec, plugins, literal_fallback=False):
        """A FieldDefinition, shared by every definition with the same
        spec so that a notification evaluates it once (NotificationView)."""
        key = (repr(spec), literal_fallback)
        field = self._field_cache.get(key)
        if field is None:
            field = fields.FieldDefinition(name, spec, plugins,
                                           literal_fallback)
            self._field_cache[key] = field
        return field

    def _metadata(self, view):
        memo = view.memo
        key = self._metadata_key
        if key in memo:
            return dict(memo[key])
        metadata = {}
        for name, field in self.metadata:
            value = view.value(field)
            if value:
                metadata[name] = value
        if self.user_metadata is not None:
            user_meta = view.value(self.user_metadata)
            if isinstance(user_meta, dict):
                self.reserved_metadata.add_to(user_meta, metadata)
            elif user_meta:
                view.memo[IGNORED_USER_METADATA] = (
                    f'user_metadata {self.cfg["user_metadata"]!r} is a '
                    f'{type(user_meta).__name__}, not a mapping: left out')
        if not metadata:
            message = view.message
            payload = message.get('payload')
            metadata = dict(payload) if isinstance(payload, dict) else {}
            metadata['event_type'] = message.get('event_type')
            metadata['host'] = message.get('publisher_id')
        memo[key] = metadata
        return dict(metadata)

    def _value(self, view, attr, fallback=None):
        field = self.attributes.get(attr)
        value = None if field is None else view.value(field)
        if value is None and fallback is not None:
            return view.value(fallback)
        return value

    def to_samples(self, view):
        """The samples of this definition for one notification, or raise
        SampleBuildError saying why there are none."""
        if self.lookup:
            return self._lookup_samples(view)
        literals = self._literals
        return [self._build(
            view,
            literals.get('name') or self._value(view, 'name')
            or self.cfg['name'],
            literals.get('type') or self._value(view, 'type')
            or self.cfg['type'],
            literals.get('unit') or self._value(view, 'unit')
            or self.cfg['unit'],
            self._value(view, 'volume'),
            self._value(view, 'resource_id'),
            self._value(view, 'user_id', USER_ID_FALLBACK),
            self._value(view, 'project_id', PROJECT_ID_FALLBACK),
            self._value(view, 'timestamp'),
            self._metadata(view))]

    def _build(self, view, name, sample_type, unit, volume, resource_id,
               user_id, project_id, timestamp, metadata, index=0):
        if resource_id is None:
            raise SampleBuildError(
                f'resource_id: {self.cfg["resource_id"]!r} selected nothing')
        if sample_type not in sample_mod.TYPES:
            raise SampleBuildError(f'type: {sample_type!r} is not one of '
                                   f'{", ".join(sample_mod.TYPES)}')
        message_id = view.message_id
        return sample_mod.Sample(
            name=name, type=sample_type, unit=unit,
            volume=_volume(volume, self.cfg['volume']),
            user_id=user_id, project_id=project_id,
            resource_id=resource_id,
            timestamp=_timestamp(timestamp or
                                 view.notification_timestamp()),
            resource_metadata=metadata, source=self.source,
            message_id=message_id,
            id=sample_mod.sample_id(view.key, name, resource_id, index))

    def _lookup_samples(self, view):
        message = view.message
        columns = {
            'name': [self.cfg['name']], 'type': [self.cfg['type']],
            'unit': [self.cfg['unit']], 'volume': [None],
            'timestamp': [None],
            'user_id': [view.value(USER_ID_FALLBACK)],
            'project_id': [view.value(PROJECT_ID_FALLBACK)],
            'resource_id': [None], 'metadata': [self._metadata(view)],
        }
        try:
            for attr, field in self.attributes.items():
                values = field.all(message)
                if not isinstance(values, list):
                    values = [values]
                if attr in self.lookup or attr == 'name' or values:
                    columns[attr] = values
        except fields.FieldSpecError as exc:
            raise SampleBuildError(str(exc))
        count = len(columns['name'])
        if not count:
            return []
        rows = []
        for attr, values in columns.items():
            if len(values) == count:
                rows.append(values)
            elif len(values) == 1 and attr not in self.lookup:
                rows.append(itertools.repeat(values[0], count))
            else:
                raise SampleBuildError(
                    f'lookup: {len(values)} values of {attr} for {count} '
                    'meters')
        samples = []
        seen = {}
        for (name, sample_type, unit, volume, timestamp, user_id,
             project_id, resource_id, metadata) in zip(*rows, strict=False):
            key = (name, resource_id)
            index = seen[key] = seen.get(key, -1) + 1
            samples.append(self._build(
                view, name, sample_type, unit, volume, resource_id,
                user_id, project_id, timestamp, metadata, index))
        return samples


class DefinitionLoadReport:
    """What loading definitions found wrong: (origin, reason) pairs."""

    def __init__(self):
        self.errors = []

    def add(self, origin, reason):
        self.errors.append((origin, reason))
        LOG.error('Meter definition %s skipped: %s', origin, reason)


def load_plugins():
    manager = extension.ExtensionManager(PLUGIN_NAMESPACE)
    return {ext.name: ext.plugin for ext in manager}


def definition_files(dirs, paths):
    """The definition files of ``dirs`` (sorted *.yaml) then ``paths``."""
    files = []
    for directory in dirs:
        if not os.path.isdir(directory):
            LOG.warning('Meter definitions directory %s does not exist',
                        directory)
            continue
        files.extend(sorted(glob.glob(os.path.join(directory, '*.yaml'))))
    files.extend(paths)
    return files


def _read_yaml(path, report):
    try:
        with open(path) as handle:
            content = yaml.safe_load(handle)
    except OSError as exc:
        report.add(path, f'cannot be read: {exc.strerror}')
        return None
    except yaml.YAMLError as exc:
        mark = getattr(exc, 'problem_mark', None)
        where = (f'{path}:{mark.line + 1}:{mark.column + 1}' if mark
                 else path)
        report.add(where, f'invalid YAML: {getattr(exc, "problem", exc)}')
        return None
    if content is None:
        return []
    if not isinstance(content, dict) or not isinstance(
            content.get('metric'), list):
        report.add(path, "the file must be a mapping with a 'metric' list")
        return None
    return content['metric']


class MeterDefinitions:
    """The loaded definitions, indexed by the event types they match."""

    def __init__(self, definitions, report=None):
        self.definitions = tuple(definitions)
        self.report = report or DefinitionLoadReport()
        self._by_event_type = {}

    @classmethod
    def from_files(cls, files, reserved_metadata=None, source='openstack'):
        plugins = load_plugins()
        report = DefinitionLoadReport()
        field_cache = {}
        by_name = {}
        for path in files:
            entries = _read_yaml(path, report)
            for position, entry in enumerate(entries or ()):
                name = entry.get('name') if isinstance(entry, dict) else None
                origin = f'{path}: metric[{position}]'
                if name is not None:
                    origin += f' ({name})'
                try:
                    definition = MeterDefinition(
                        entry, plugins, origin, reserved_metadata, source,
                        field_cache)
                except MeterDefinitionError as exc:
                    report.add(exc.origin, exc.reason)
                    continue
                if name in by_name:
                    LOG.info('%s replaces the definition of %s in %s',
                             origin, name, by_name[name].origin)
                    del by_name[name]
                by_name[name] = definition
        return cls(by_name.values(), report)

    @classmethod
    def from_conf(cls, conf):
        files = definition_files(conf.meter.meter_definitions_dirs,
                                 conf.meter.meter_definitions_paths)
        definitions = cls.from_files(files,
                                     ReservedMetadata.from_conf(conf),
                                     conf.sample_source)
        if not definitions.definitions:
            LOG.warning('No meter definitions loaded from %s', files)
        return definitions

    def for_event_type(self, event_type):
        try:
            return self._by_event_type[event_type]
        except (KeyError, TypeError):
            pass
        if not isinstance(event_type, str):
            return ()
        matching = tuple(d for d in self.definitions
                         if d.matches_event_type(event_type))
        if len(self._by_event_type) < 10000:
            self._by_event_type[event_type] = matching
        return matching

    def build_samples(self, message):
        """(samples, failures) for one notification dict; a failure is a
        (definition, reason) pair; a remark about the samples made is a
        (None, remark) pair."""
        definitions = self.for_event_type(message.get('event_type'))
        if not definitions:
            return [], []
        view = NotificationView(message)
        samples, failures = [], []
        for definition in definitions:
            try:
                samples.extend(definition.to_samples(view))
            except SampleBuildError as exc:
                failures.append((definition, str(exc)))
            except Exception as exc:
                failures.append((definition, f'{type(exc).__name__}: '
                                             f'{exc}'))
        remark = view.memo.get(IGNORED_USER_METADATA)
        if remark:
            failures.append((None, remark))
        return samples, failures


class MeterEndpoint(base.NotificationEndpoint):
    """Builds samples from the declarative meter definitions."""

    def __init__(self, conf, definitions=None):
        super().__init__(conf)
        self.definitions = (definitions if definitions is not None
                            else MeterDefinitions.from_conf(conf))

    def process_notification(self, notification):
        samples, failures = self.definitions.build_samples(notification)
        if failures:
            # One line per notification, however many meters it fails.
            LOG.warning('Notification %s (%s): %s', delivery.text_of(
                envelope.message_id(notification)),
                delivery.text_of(notification.get('event_type')),
                '; '.join(delivery.one_line(
                    f'meter {d.name} not built: {reason}' if d is not None
                    else reason, REASON_LENGTH) for d, reason in failures))
        return samples
