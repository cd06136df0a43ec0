"""Value plugins of meter definitions (``plugin:`` under a field).

Loaded from the ``calipso.meter.plugin`` namespace; the names match the
plugins of Ceilometer's meters.yaml. A plugin gets the (path, value) pairs
its field's paths matched and returns the values to use.
"""

import abc
import logging

from oslo_utils import timeutils

LOG = logging.getLogger(__name__)


class MeterPlugin(metaclass=abc.ABCMeta):
    #: Whether the plugin can give one value per lookup entry.
    supports_all_values = False

    @abc.abstractmethod
    def values(self, matches):
        """The values for ``matches``, a list of (path, value) pairs."""


class TimedeltaPlugin(MeterPlugin):
    """Seconds between the two timestamps the field's two paths select."""

    def values(self, matches):
        if len(matches) != 2:
            LOG.debug('timedelta needs two timestamps, got %d', len(matches))
            return [None]
        (start_path, start), (end_path, end) = matches
        try:
            delta = (timeutils.parse_isotime(end)
                     - timeutils.parse_isotime(start))
        except Exception as exc:
            LOG.debug('timedelta: %s or %s is not a timestamp: %s',
                      start_path, end_path, exc)
            return [None]
        return [abs(delta.total_seconds())]


class MapPlugin(MeterPlugin):
    """Maps values through a table (``values``), with a default."""

    supports_all_values = True

    def __init__(self, values=None, default=None, case_sensitive=True):
        self.case_sensitive = case_sensitive
        self.default = default
        self.table = {self._key(k): v for k, v in (values or {}).items()}

    def _key(self, value):
        if not self.case_sensitive and isinstance(value, str):
            return value.lower()
        return value

    def values(self, matches):
        return [self.table.get(self._key(v), self.default)
                for _, v in matches]


class SplitPlugin(MeterPlugin):
    """One segment of a string split on ``separator``."""

    supports_all_values = True

    def __init__(self, separator='-', segment=0, max_split=None):
        self.separator = separator
        self.segment = segment
        self.max_split = -1 if max_split is None else max_split

    def values(self, matches):
        out = []
        for _, value in matches:
            parts = str(value).split(self.separator, self.max_split)
            out.append(parts[self.segment]
                       if -len(parts) <= self.segment < len(parts) else None)
        return out
