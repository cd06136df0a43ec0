"""pipeline.yaml: which samples go to which publishers.

The format is Ceilometer's::

    sources:
      - name: meter_source
        meters: ["*", "!disk.*"]
        sinks: [meter_sink]
    sinks:
      - name: meter_sink
        publishers: ["file:///var/log/calipso/samples.jsonl"]

A source selects meters by name (shell wildcards; ``!name`` excludes; only
exclusions means everything else) and feeds its sinks; a sink hands the
samples to each of its publishers. A broken source, sink or publisher URL
is reported with the file, the entry and the reason, and skipped: the rest
of the pipeline runs.
"""

import fnmatch
import logging
import urllib.parse

import yaml
from stevedore import driver
from stevedore import exception as stevedore_exception

from calipso_agent import metrics
from calipso_agent.publisher import base as publisher_base

LOG = logging.getLogger(__name__)

PUBLISHER_NAMESPACE = 'calipso.publisher'


class PipelineError(ValueError):
    """The pipeline file as a whole cannot be used."""


class MeterSelector:
    """Meter name patterns of a source: ``*`` wildcards, ``!`` exclusions."""

    def __init__(self, patterns):
        if isinstance(patterns, str):
            patterns = [patterns]
        if not isinstance(patterns, list) or not patterns or not all(
                isinstance(p, str) and p.strip('!') for p in patterns):
            raise ValueError(f'meters must be a non-empty list of names or '
                             f'patterns, not {patterns!r}')
        self.include = [p for p in patterns if not p.startswith('!')]
        self.exclude = [p[1:] for p in patterns if p.startswith('!')]

    def __call__(self, name):
        if any(fnmatch.fnmatchcase(name, p) for p in self.exclude):
            return False
        if not self.include:
            return True
        return any(fnmatch.fnmatchcase(name, p) for p in self.include)


class Sink:
    def __init__(self, name, publishers):
        self.name = name
        self.publishers = publishers

    def publish_samples(self, samples):
        """How many of ``samples`` a publisher of the sink had already."""
        known = 0
        for publisher in self.publishers:
            known = max(known, publisher.publish_samples(samples) or 0)
            metrics.published(self.name, publisher, len(samples))
        return known


class Source:
    def __init__(self, name, selects, sinks):
        self.name = name
        self.selects = selects
        self.sinks = sinks


def load_publisher(conf, url):
    """The publisher plugin for ``url``, chosen by its scheme."""
    if not isinstance(url, str) or not url:
        raise publisher_base.PublisherConfigError(
            f'publisher {url!r} is not a URL')
    parsed = urllib.parse.urlparse(url)
    if not parsed.scheme:
        raise publisher_base.PublisherConfigError(
            f'publisher {url!r} has no scheme (file://, udp://, ...)')
    try:
        manager = driver.DriverManager(
            PUBLISHER_NAMESPACE, parsed.scheme, invoke_on_load=True,
            invoke_args=(conf, parsed))
    except publisher_base.PublisherConfigError:
        raise
    except stevedore_exception.NoMatches:
        raise publisher_base.PublisherConfigError(
            f'no publisher for scheme {parsed.scheme!r}')
    except Exception as exc:
        raise publisher_base.PublisherConfigError(
            f'publisher {url!r}: {exc}')
    return manager.driver


class Pipeline:
    """Routes samples from sources to the publishers of their sinks."""

    def __init__(self, sources, sinks, errors=()):
        self.sources = sources
        self.sinks = sinks
        self.errors = list(errors)
        self._routes = {}

    @classmethod
    def from_file(cls, conf, path):
        try:
            with open(path) as handle:
                content = yaml.safe_load(handle)
        except OSError as exc:
            raise PipelineError(f'{path}: cannot be read: {exc.strerror}')
        except yaml.YAMLError as exc:
            raise PipelineError(f'{path}: invalid YAML: {exc}')
        return cls.from_dict(conf, content, origin=path)

    @classmethod
    def from_dict(cls, conf, content, origin='<pipeline>'):
        if not isinstance(content, dict):
            raise PipelineError(f'{origin}: must be a mapping with sources '
                                'and sinks')
        errors = []

        def skip(where, reason):
            errors.append(f'{origin}: {where}: {reason}')
            LOG.error('Pipeline %s: %s skipped: %s', origin, where, reason)

        sinks = {}
        for position, entry in enumerate(content.get('sinks') or ()):
            name = entry.get('name') if isinstance(entry, dict) else None
            where = f'sink {name or position}'
            if not isinstance(name, str) or not name:
                skip(where, 'a sink needs a name')
                continue
            urls = entry.get('publishers')
            if not isinstance(urls, list) or not urls:
                skip(where, 'a sink needs a list of publishers')
                continue
            publishers = []
            for url in urls:
                try:
                    publishers.append(load_publisher(conf, url))
                except publisher_base.PublisherConfigError as exc:
                    skip(f'{where}: publisher {url!r}', str(exc))
            if publishers:
                sinks[name] = Sink(name, publishers)
            else:
                skip(where, 'no usable publisher')

        sources = []
        for position, entry in enumerate(content.get('sources') or ()):
            name = entry.get('name') if isinstance(entry, dict) else None
            where = f'source {name or position}'
            if not isinstance(name, str) or not name:
                skip(where, 'a source needs a name')
                continue
            try:
                selects = MeterSelector(entry.get('meters'))
            except ValueError as exc:
                skip(where, str(exc))
                continue
            sink_names = entry.get('sinks')
            if not isinstance(sink_names, list) or not sink_names:
                skip(where, 'a source needs a list of sinks')
                continue
            unknown = [s for s in sink_names if s not in sinks]
            for sink_name in unknown:
                skip(f'{where}: sink {sink_name!r}',
                     'no such sink (or it was skipped)')
            known = [sinks[s] for s in sink_names if s in sinks]
            if known:
                sources.append(Source(name, selects, known))
        if not sources:
            LOG.warning('Pipeline %s publishes nothing: no usable source',
                        origin)
        return cls(sources, list(sinks.values()), errors)

    def sinks_for(self, meter_name):
        try:
            return self._routes[meter_name]
        except KeyError:
            pass
        sinks = []
        for source in self.sources:
            if source.selects(meter_name):
                sinks.extend(s for s in source.sinks if s not in sinks)
        sinks = tuple(sinks)
        if len(self._routes) < 10000:
            self._routes[meter_name] = sinks
        return sinks

    def publish_samples(self, samples):
        """Send each sample to the sinks of the sources selecting it.

        Returns when every publisher accepted its samples (with how many
        of them some publisher had already, a redelivery); raises the
        first publisher's error otherwise (see ``delivery``).
        """
        by_sink = {}
        for sample in samples:
            for sink in self.sinks_for(sample.name):
                by_sink.setdefault(sink, []).append(sample)
        known = 0
        for sink, sink_samples in by_sink.items():
            known = max(known, sink.publish_samples(sink_samples))
        return known

    def close(self):
        for sink in self.sinks:
            for publisher in sink.publishers:
                publisher.close()
