"""notifier://[user:password@host:port/vhost]?topic=T&driver=D&retry=N

Samples go back on the bus as a 'sample' priority notification whose
payload is the list of signed meter messages, as Ceilometer's notifier
publisher sends them. Without a host in the URL the configured
notification transport is used; with one, ``rabbit://<host part>``.

``driver`` is the notification driver (``messagingv2`` or ``messaging``,
default [publisher_notifier] telemetry_driver); a transport driver name
(``rabbit``, ``kafka``...) is also accepted, as in Ceilometer's URLs, and
then names the scheme of the transport URL. ``retry`` (default 3) bounds
the reconnection attempts before a batch fails.
"""

import importlib.metadata
import urllib.parse
import uuid

import oslo_messaging
from oslo_utils import strutils, timeutils

from calipso_agent.publisher import base, utils

PRIORITY = 'SAMPLE'
DEFAULT_RETRY = 3
DEFAULT_TRANSPORT = 'rabbit'

# Notification driver -> message format version it sends.
MESSAGE_VERSIONS = {'messagingv2': 2.0, 'messaging': 1.0}

# Ceilometer's bound on its local retry queue, which does not exist here:
# only its 'policy=default' behaviour is kept (failures go to the agent).
_CEILOMETER_IGNORED = frozenset({'max_queue_length'})


def _entry_point_names(group):
    return {ep.name for ep in importlib.metadata.entry_points(group=group)}


def _transport_drivers():
    return _entry_point_names('oslo.messaging.drivers')


def _notification_drivers():
    return _entry_point_names('oslo.messaging.notify.drivers')


class NotifierPublisher(base.Publisher):

    def __init__(self, conf, parsed_url):
        super().__init__(conf, parsed_url)
        params = urllib.parse.parse_qs(parsed_url.query,
                                       keep_blank_values=True)
        self.topics = params.pop(
            'topic', [conf.publisher_notifier.metering_topic])
        if not all(self.topics):
            raise base.PublisherConfigError('notifier topic is empty')
        scheme, driver = self._drivers(params.pop('driver', [None])[-1])
        self.version = MESSAGE_VERSIONS[driver]
        self.retry = self._retry(params)
        if params.pop('policy', ['default'])[-1] != 'default':
            raise base.PublisherConfigError(
                'notifier policy other than "default" is not supported: a '
                'failed batch is raised to the agent, which requeues it')
        per_meter = params.pop('per_meter_topic', ['0'])[-1]
        try:
            per_meter = strutils.bool_from_string(per_meter, strict=True)
        except ValueError:
            per_meter = True
        if per_meter:
            raise base.PublisherConfigError(
                'notifier per_meter_topic is not supported')
        for name in _CEILOMETER_IGNORED:
            params.pop(name, None)
        self.event_type = conf.publisher_notifier.metering_topic
        self.publisher_id = f'telemetry.publisher.{conf.host}'
        self.secret = conf.publisher.telemetry_secret

        url = None
        if parsed_url.netloc:
            url = urllib.parse.urlunsplit((
                scheme, parsed_url.netloc, parsed_url.path,
                urllib.parse.urlencode(params, doseq=True), ''))
        elif params:
            raise base.PublisherConfigError(
                f'unknown notifier option(s): {", ".join(sorted(params))} '
                f'(transport options need a host in the URL)')
        try:
            self.transport = oslo_messaging.get_notification_transport(
                conf, url=url)
        except (oslo_messaging.InvalidTransportURL, ValueError):
            # The exception text holds the URL, password included.
            where = parsed_url.netloc.rpartition('@')[2] or 'configured'
            raise base.PublisherConfigError(
                f'notifier transport URL ({where}) is invalid')
        except oslo_messaging.DriverLoadFailure as exc:
            raise base.PublisherConfigError(
                f'notifier transport driver: {exc}')

    def _drivers(self, name):
        """(transport scheme, notification driver) from ``driver=``."""
        transports = _transport_drivers()
        if name in transports:
            scheme, name = name, None
        else:
            scheme = DEFAULT_TRANSPORT
        driver = self.conf.publisher_notifier.telemetry_driver
        if name is not None:
            driver = name
        if driver in MESSAGE_VERSIONS:
            return scheme, driver
        if driver in _notification_drivers():
            raise base.PublisherConfigError(
                f'notification driver {driver!r} cannot report delivery '
                f'failures; use one of {", ".join(sorted(MESSAGE_VERSIONS))}')
        raise base.PublisherConfigError(
            f'notifier driver={driver!r} is neither a notification driver '
            f'({", ".join(sorted(MESSAGE_VERSIONS))}) nor a transport '
            f'driver ({", ".join(sorted(transports))})')

    @staticmethod
    def _retry(params):
        ceilometer_name = params.pop('max_retry', [None])
        raw = params.pop('retry', ceilometer_name)[-1]
        if raw is None:
            return DEFAULT_RETRY
        try:
            retry = int(raw)
        except ValueError:
            retry = -1
        if retry < 0:
            raise base.PublisherConfigError(
                f'retry={raw!r} is not a number of attempts (0 or more)')
        return retry

    def publish_samples(self, samples):
        if not samples:
            return
        message = {
            'message_id': str(uuid.uuid4()),
            'publisher_id': self.publisher_id,
            'event_type': self.event_type,
            'priority': PRIORITY,
            'payload': [utils.meter_message(sample, self.secret,
                                            metadata=metadata)
                        for sample, metadata in zip(
                            samples, utils.shared_metadata(samples),
                            strict=True)],
            'timestamp': str(timeutils.utcnow()),
        }
        for topic in self.topics:
            target = oslo_messaging.Target(
                topic=f'{topic}.{PRIORITY.lower()}')
            # oslo_messaging.Notifier and its drivers log delivery failures
            # and return, so the transport is called the way they call it.
            try:
                self.transport._send_notification(
                    target, {}, message, version=self.version,
                    retry=self.retry)
            except Exception as exc:
                raise base.PublisherError(
                    f'cannot notify {len(samples)} samples on topic '
                    f'{topic}: {exc}')

    def close(self):
        self.transport.cleanup()
