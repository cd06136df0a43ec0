"""What a notification endpoint plugin is.

Endpoints are loaded from the ``calipso.notification`` namespace. The agent
hands each one the notifications whose event type it declares, one at a
time, as the dict oslo.messaging's dispatcher builds::

    {'ctxt': {...}, 'publisher_id': ..., 'event_type': ...,
     'payload': {...}, 'metadata': {'message_id': ..., 'timestamp': ...}}

An endpoint returns samples; it raises ``NotificationError`` (or anything
else) when this one notification cannot be processed, and the agent logs it
with the message id and drops that notification alone.

An endpoint with ``makes_inventory`` also returns inventory changes
(``inventory_changes``: object and link dicts of ``calipso_agent.inventory``);
the agent applies those of a batch to the inventory store in one write
before the batch is acknowledged. A notification whose changes cannot be
made is logged with its message id and its changes dropped; its samples
still go.
"""

import abc
import fnmatch
import hashlib
import re

import orjson

from calipso_agent import envelope as envelope_mod


class NotificationError(Exception):
    """This notification cannot yield samples (bad or missing fields)."""


class EventTypeMatcher:
    """Matches event types against patterns, with a per-type cache.

    A pattern is a shell-style wildcard (``volume.create.*``); ``!pattern``
    excludes. With ``regex=True`` (meters.yaml, for Ceilometer
    compatibility) a pattern also matches when, read as a regular
    expression, it matches the start of the event type
    (``compute.instance.(?!update).*``).
    """

    def __init__(self, patterns, regex=False):
        self.regex = regex
        if isinstance(patterns, str):
            patterns = [patterns]
        self.patterns = list(patterns)
        include, exclude = [], []
        for pattern in self.patterns:
            if not isinstance(pattern, str) or not pattern.strip('!'):
                raise ValueError(f'event type pattern {pattern!r} is not a '
                                 'non-empty string')
            target = exclude if pattern.startswith('!') else include
            target.append(self._compile(pattern.lstrip('!')))
        self._include = include
        self._exclude = exclude
        self._cache = {}

    def _compile(self, pattern):
        readings = [re.compile(fnmatch.translate(pattern))]
        if self.regex:
            try:
                readings.append(re.compile(pattern))
            except re.error:
                pass
        return readings

    def _matches(self, compiled, event_type):
        return any(r.match(event_type) for readings in compiled
                   for r in readings)

    def __call__(self, event_type):
        try:
            return self._cache[event_type]
        except (KeyError, TypeError):
            pass
        if not isinstance(event_type, str):
            return False
        result = (self._matches(self._include, event_type)
                  if self._include else True)
        if result and self._exclude:
            result = not self._matches(self._exclude, event_type)
        if len(self._cache) < 10000:
            self._cache[event_type] = result
        return result


#: Priorities whose notifications carry measurements (as in Ceilometer).
SAMPLE_PRIORITIES = ('info', 'sample')


def from_envelope(envelope):
    """(priority, notification dict) of an oslo.messaging envelope.

    The envelope is what a service puts on the bus (and what the fixtures
    hold): ``event_type, publisher_id, priority, timestamp, message_id,
    payload`` with the request context in ``ctxt`` or in ``_context_*``
    keys. Raises ValueError when it is not a notification at all.
    """
    if not isinstance(envelope, dict):
        raise ValueError('a notification must be a JSON object')
    if not isinstance(envelope.get('event_type'), str):
        raise ValueError('the notification has no event_type string')
    ctxt = envelope.get('ctxt')
    if not isinstance(ctxt, dict):
        ctxt = envelope_mod.split_context(envelope)[0]
    priority = str(envelope.get('priority') or '').lower()
    return priority, {
        'ctxt': ctxt,
        'publisher_id': envelope.get('publisher_id'),
        'event_type': envelope['event_type'],
        'payload': envelope.get('payload'),
        'metadata': {'message_id': envelope.get('message_id'),
                     'timestamp': envelope.get('timestamp')},
    }


def message_key(notification):
    """What sample ids are derived from: the notification's message_id or,
    when it has none, a digest of its content, so that a redelivery keeps
    its ids and two different notifications never share them."""
    message_id = envelope_mod.message_id(notification)
    if message_id:
        return message_id
    content = orjson.dumps(
        [notification.get(k) for k in ('event_type', 'publisher_id',
                                       'metadata', 'payload', 'ctxt')],
        option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)
    return 'sha1:' + hashlib.sha1(content).hexdigest()


class NotificationEndpoint(metaclass=abc.ABCMeta):
    """A plugin that turns notifications into samples."""

    #: Event type patterns this endpoint handles (see EventTypeMatcher).
    event_types = ()

    def __init__(self, conf):
        self.conf = conf
        self.handles = EventTypeMatcher(self.event_types)

    #: Whether ``inventory_changes`` says anything.
    makes_inventory = False

    @abc.abstractmethod
    def process_notification(self, notification):
        """Return the list of samples ``notification`` yields."""

    def inventory_changes(self, notification):
        """The inventory objects and links ``notification`` changes."""
        return []

    def inventory_subject(self, notification):
        """None, or (subject, instant): what the changes of
        ``notification`` are about (a hashable tuple, its ids) and their
        ``last_event_at``. Two notifications of one subject make changes
        of the same objects and links, and neither is a deletion: of a
        batch's notifications of one subject, the agent makes the changes
        of the newest alone (the store would keep those alone)."""
        return None
