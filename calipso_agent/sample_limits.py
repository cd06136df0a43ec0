"""Bounds every sample meets before it reaches a publisher or the store.

What a notification (or a meter message from the bus) may put into a
sample is bounded here, once, for every publisher and store:

* id fields (``resource_id``, ``project_id``, ``user_id``, the meter
  ``name``) that are text of at most ``[sample_limits] max_id_length``
  characters (255, the width of Ceilometer's columns). A longer id cannot
  be shortened without merging resources, and an id that is not text (a
  number, a mapping) is not one: the sample is refused.
* a volume that is a number: not a boolean (``vcpus: true`` is not one
  vCPU), not NaN or infinite. Such a sample is refused.
* ``resource_metadata`` nested at most ``max_metadata_depth`` levels and
  at most ``max_metadata_bytes`` long as JSON. Metadata is descriptive:
  the sample is kept and the offending top-level fields are dropped: those
  nested too deeply (or that no JSON encoder can write), then the
  largest, until it fits.

``check`` says what is refused; ``bound_metadata`` trims in place and
names what it dropped. The callers log both once per notification, with
its message id.
"""

import collections
import json
import math

import orjson

# Checked for every sample: the JSON of usual metadata holds fewer
# brackets than the depth limit, so its depth is not walked.
_OPENERS = (b'{', b'[')


def _json(value):
    """JSON bytes of ``value``; ValueError when no encoder writes it."""
    try:
        return orjson.dumps(value, default=str,
                            option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        pass
    # Integers beyond 64 bits, nesting past orjson's 255 levels.
    try:
        return json.dumps(value, default=str).encode()
    except RecursionError:
        raise ValueError('nested too deeply to encode')


def depth(value, limit):
    """The nesting depth of ``value`` (a scalar is 0), counted up to
    ``limit + 1`` only; iterative, so any depth is safe."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


class SampleLimits:
    """The configured bounds; see the module docstring."""

    ID_FIELDS = ('name', 'resource_id', 'project_id', 'user_id')

    def __init__(self, max_id_length=255, max_metadata_bytes=65536,
                 max_metadata_depth=64):
        self.max_id_length = max_id_length
        self.max_metadata_bytes = max_metadata_bytes
        self.max_metadata_depth = max_metadata_depth

    @classmethod
    def from_conf(cls, conf):
        limits = conf.sample_limits
        return cls(limits.max_id_length, limits.max_metadata_bytes,
                   limits.max_metadata_depth)

    def check(self, sample):
        """Why ``sample`` is refused, or None."""
        # The usual sample in one expression: text ids, a float volume.
        limit = self.max_id_length
        user_id, project_id = sample.user_id, sample.project_id
        volume = sample.volume
        if (type(volume) is float and math.isfinite(volume)
                and type(sample.name) is str and len(sample.name) <= limit
                and type(sample.resource_id) is str
                and len(sample.resource_id) <= limit
                and (user_id is None or (type(user_id) is str
                                         and len(user_id) <= limit))
                and (project_id is None or (type(project_id) is str
                                            and len(project_id) <= limit))):
            return None
        for field in self.ID_FIELDS:
            value = getattr(sample, field, None)
            if value is None:
                continue
            if not isinstance(value, str):
                return f'{field} is a {type(value).__name__}, not text'
            if len(value) > self.max_id_length:
                return (f'{field} of {len(value)} characters is longer than '
                        f'{self.max_id_length}')
        volume = sample.volume
        if isinstance(volume, bool):
            return f'volume {volume!r} is a boolean, not a number'
        if isinstance(volume, float) and not math.isfinite(volume):
            return f'volume {volume!r} is not a finite number'
        return None

    def bound_samples(self, samples):
        """``bound_metadata`` of each sample: a Counter of the fields
        dropped."""
        dropped = collections.Counter()
        for sample in samples:
            fields = self.bound_metadata(sample)
            if fields:
                dropped.update(fields)
        return dropped

    def bound_metadata(self, sample):
        """Drop the fields of ``sample.resource_metadata`` that break the
        bounds; the names of those dropped (empty: nothing changed)."""
        metadata = sample.resource_metadata
        if not isinstance(metadata, dict) or not metadata:
            return []
        try:
            text = _json(metadata)
        except (TypeError, ValueError):
            text = None
        if (text is not None and len(text) <= self.max_metadata_bytes
                and sum(text.count(o) for o in _OPENERS)
                <= self.max_metadata_depth):
            return []
        limit = self.max_metadata_depth
        dropped = [key for key, value in metadata.items()
                   if depth(value, limit) + 1 > limit]
        sizes = {}
        for key, value in metadata.items():
            if key in dropped:
                continue
            try:
                sizes[key] = len(_json(value)) + len(str(key)) + 4
            except (TypeError, ValueError):
                dropped.append(key)
        total = sum(sizes.values()) + 2
        for key in sorted(sizes, key=sizes.get, reverse=True):
            if total <= self.max_metadata_bytes:
                break
            dropped.append(key)
            total -= sizes[key]
        if dropped:
            sample.resource_metadata = {
                k: v for k, v in metadata.items() if k not in dropped}
        return [str(k) for k in dropped]
