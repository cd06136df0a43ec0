"""polling.yaml: which meters are polled, how often, for which resources.

The format is Ceilometer's (an existing polling.yaml works)::

    sources:
      - name: host_source
        interval: 60            # seconds
        meters: ["*", "!load.*"] # names, shell wildcards, !exclusions
        resources: [...]         # optional: the resources polled
        discovery: [local_host]  # optional: discovery plugins finding them

A source that is broken (no name, a bad interval or meter pattern, a name
used twice) is reported with the file, the source and the field, and
skipped: the other sources run. A file that cannot be read or is not a
mapping with a ``sources`` list is refused as a whole (``PollingFileError``)
and the agent keeps its previous definition.

An **override** (``PUT /v2/polling/sources/{name}``, kept by the store) may
change a source's ``interval``, ``meters`` and ``enabled`` without editing
the file; ``validate_override`` checks one, ``SourceDefinition.overridden``
applies it.
"""

import logging
import numbers

import yaml

from calipso_agent import pipeline

LOG = logging.getLogger(__name__)

OVERRIDE_FIELDS = ('interval', 'meters', 'enabled')
# Keys of a source the agent reads; 'sinks' is tolerated for the files of
# Ceilometer releases where polling sources were in pipeline.yaml.
SOURCE_FIELDS = frozenset(('name', 'interval', 'meters', 'resources',
                           'discovery', 'sinks'))


class PollingFileError(ValueError):
    """The polling file as a whole cannot be used."""


class SourceError(ValueError):
    """One field of one source (or of an override) is invalid."""

    def __init__(self, field, reason):
        super().__init__(f'{field}: {reason}')
        self.field = field
        self.reason = reason


def check_interval(value, field='interval'):
    """A positive number of seconds, or SourceError."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not value > 0 or value != value):
        raise SourceError(field, f'must be a positive number of seconds, '
                                 f'not {value!r}')
    return int(value) if float(value).is_integer() else float(value)


def check_meters(value, field='meters'):
    """A list of meter names or patterns (the selector is made to check
    them), or SourceError."""
    if isinstance(value, str):
        value = [value]
    try:
        pipeline.MeterSelector(value)
    except ValueError as exc:
        raise SourceError(field, str(exc))
    return list(value)


def check_enabled(value, field='enabled'):
    if not isinstance(value, bool):
        raise SourceError(field, f'must be true or false, not {value!r}')
    return value


def _check_list_of_names(value, field):
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(
            isinstance(item, str) and item for item in value):
        raise SourceError(field, f'must be a list of names, not {value!r}')
    return list(value)


def _check_resources(value, field='resources'):
    if not isinstance(value, list):
        raise SourceError(field, f'must be a list, not {value!r}')
    return list(value)


class SourceDefinition:
    """One polling source, as the file (and maybe an override) says."""

    def __init__(self, name, interval, meters, resources=None,
                 discovery=None, enabled=True, overrides=()):
        self.name = name
        self.interval = interval
        self.meters = list(meters)
        self.selects = pipeline.MeterSelector(self.meters)
        self.resources = list(resources or ())
        self.discovery = list(discovery or ())
        self.enabled = enabled
        #: The fields an override set (shown as such by the API).
        self.overrides = tuple(overrides)

    @classmethod
    def from_dict(cls, entry):
        """A SourceDefinition of one entry of ``sources``, or SourceError."""
        if not isinstance(entry, dict):
            raise SourceError('source', f'must be a mapping, not {entry!r}')
        name = entry.get('name')
        if not isinstance(name, str) or not name.strip():
            raise SourceError('name', 'a source needs a name')
        if 'interval' not in entry:
            raise SourceError('interval', 'a source needs an interval')
        interval = check_interval(entry['interval'])
        if 'meters' not in entry:
            raise SourceError('meters', 'a source needs meters')
        meters = check_meters(entry['meters'])
        resources = _check_resources(entry.get('resources') or [])
        discovery = _check_list_of_names(entry.get('discovery') or [],
                                         'discovery')
        unknown = sorted(set(entry) - SOURCE_FIELDS)
        if unknown:
            LOG.warning('Polling source %s: ignoring %s', name,
                        ', '.join(unknown))
        return cls(name, interval, meters, resources, discovery)

    def overridden(self, override):
        """This source with ``override`` (a dict from the store: interval,
        meters, enabled, any of them; other keys ignored) applied."""
        if not override:
            return self
        fields = [f for f in OVERRIDE_FIELDS if override.get(f) is not None]
        values = {f: override[f] for f in fields}
        return SourceDefinition(
            self.name, values.get('interval', self.interval),
            values.get('meters', self.meters), self.resources,
            self.discovery, values.get('enabled', self.enabled), fields)

    def as_dict(self):
        return {'name': self.name, 'interval': self.interval,
                'meters': list(self.meters),
                'resources': list(self.resources),
                'discovery': list(self.discovery), 'enabled': self.enabled}

    def __eq__(self, other):
        return (isinstance(other, SourceDefinition)
                and self.as_dict() == other.as_dict()
                and self.overrides == other.overrides)

    def __repr__(self):
        return (f'<SourceDefinition {self.name} every {self.interval}s '
                f'{self.meters}>')


class PollingDefinition:
    """The sources of a polling file, and what was wrong in it."""

    def __init__(self, sources, errors=(), origin='<polling>'):
        self.sources = sources
        self.errors = list(errors)
        self.origin = origin

    def __iter__(self):
        return iter(self.sources)

    def names(self):
        return [source.name for source in self.sources]


def parse(content, origin='<polling>'):
    """The PollingDefinition of a loaded YAML document; PollingFileError
    when it is not a mapping with a list of sources. Each broken source
    is logged and listed in ``errors`` as ``<origin>: source <name or
    position>: <field>: <reason>``."""
    if not isinstance(content, dict):
        raise PollingFileError(f'{origin}: must be a mapping with a list '
                               f'of sources')
    entries = content.get('sources')
    if not isinstance(entries, list):
        raise PollingFileError(f'{origin}: sources: must be a list of '
                               f'sources, not {entries!r}')
    errors = []
    sources = []
    seen = set()
    for position, entry in enumerate(entries):
        name = entry.get('name') if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            name = position
        where = f'source {name}'
        try:
            source = SourceDefinition.from_dict(entry)
            if source.name in seen:
                raise SourceError('name', f'{source.name!r} is used by an '
                                          f'earlier source')
        except SourceError as exc:
            message = f'{origin}: {where}: {exc.field}: {exc.reason}'
            errors.append(message)
            LOG.error('Polling source skipped: %s', message)
            continue
        seen.add(source.name)
        sources.append(source)
    if not sources:
        LOG.warning('Polling file %s polls nothing: no usable source', origin)
    return PollingDefinition(sources, errors, origin)


def load_file(path):
    """The PollingDefinition of the file at ``path``, or PollingFileError
    saying why the file cannot be used."""
    try:
        with open(path) as handle:
            content = yaml.safe_load(handle)
    except OSError as exc:
        raise PollingFileError(f'{path}: cannot be read: {exc.strerror}')
    except yaml.YAMLError as exc:
        raise PollingFileError(f'{path}: invalid YAML: '
                               f'{" ".join(str(exc).split())}')
    return parse(content, origin=path)


def validate_override(body):
    """The override ``body`` checked and normalized (a dict with some of
    ``interval``, ``meters``, ``enabled``), or SourceError naming the
    field at fault."""
    if not isinstance(body, dict):
        raise SourceError('body', 'must be an object with interval, meters '
                                  'or enabled')
    unknown = sorted(set(body) - set(OVERRIDE_FIELDS))
    if unknown:
        raise SourceError(unknown[0], 'unknown field (interval, meters and '
                                      'enabled may be set)')
    checks = {'interval': check_interval, 'meters': check_meters,
              'enabled': check_enabled}
    override = {}
    for field in OVERRIDE_FIELDS:
        if body.get(field) is not None:
            override[field] = checks[field](body[field])
    if not override:
        raise SourceError('body', 'sets none of interval, meters, enabled')
    return override
