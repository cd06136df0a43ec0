"""The contract every publisher implements."""

import abc
import urllib.parse

from oslo_utils import strutils


class PublisherError(Exception):
    """Samples could not be handed over now (the receiver is away, slow,
    failing): the batch is requeued and retried after a backoff."""


class PublisherDataError(PublisherError):
    """The receiver refuses these samples and always will (a value it
    cannot hold, a size limit): retrying them cannot help. The agent
    splits the batch to find the notifications at fault, hands the others
    over and dead-letters those.

    ``refused`` lists the (sample, reason) pairs the receiver named, when
    it could: the agent then sets their notifications aside at once
    instead of bisecting.
    """

    def __init__(self, message, refused=()):
        super().__init__(message)
        self.refused = list(refused)


class PublisherConfigError(ValueError):
    """A publisher URL that cannot work (bad host, option, value)."""


class Publisher(metaclass=abc.ABCMeta):
    """Sends samples somewhere.

    ``publish_samples`` returns only once the samples are handed over
    durably (written and flushed, accepted by the broker, the HTTP server
    answered 2xx); otherwise it raises

    * ``PublisherDataError`` when the receiver refused the samples
      themselves: the agent bisects the batch and dead-letters the
      notifications whose samples are refused;
    * ``PublisherError`` when it failed for now: the agent requeues the
      notifications they came from, with a backoff.

    It may return how many of the samples the receiver had already (a
    redelivery after a crash or a requeue), when it can tell: the agent
    counts and logs them. Any other exception is taken for a fault of the
    input too, but a
    notification isolated with one is retried up to ``[notification]
    max_delivery_attempts`` times before it is dead-lettered. It must be
    safe to call ``publish_samples`` again with the same samples: sample
    ids make retries idempotent for the receivers that keep them.
    """

    def __init__(self, conf, parsed_url):
        self.conf = conf
        self.url = parsed_url
        self.options = dict(urllib.parse.parse_qsl(parsed_url.query))

    def option(self, name, default, convert=str):
        """A query-string option of the URL, converted, or ConfigError."""
        raw = self.options.get(name)
        if raw is None:
            return default
        try:
            if convert is bool:
                return strutils.bool_from_string(raw, strict=True)
            return convert(raw)
        except ValueError:
            raise PublisherConfigError(
                f'{name}={raw!r} is not a valid {convert.__name__}')

    @abc.abstractmethod
    def publish_samples(self, samples):
        """Hand ``samples`` (a list of Sample) over, or raise; optionally
        return how many of them the receiver had already."""

    def probe(self):
        """During an outage: True once the receiver answers again, False
        while it does not, None when this publisher cannot tell (then
        only the backoff decides when the batch is retried)."""
        return None

    def close(self):  # noqa: B027 - most publishers hold nothing to close
        """Release connections and files."""
