"""The contract every publisher implements."""

import abc
import urllib.parse

from oslo_utils import strutils


class PublisherError(Exception):
    """Samples could not be handed over; the batch must be retried."""


class PublisherConfigError(ValueError):
    """A publisher URL that cannot work (bad host, option, value)."""


class Publisher(metaclass=abc.ABCMeta):
    """Sends samples somewhere.

    ``publish_samples`` returns only once the samples are handed over
    durably (written and flushed, accepted by the broker, the HTTP server
    answered 2xx); it raises ``PublisherError`` otherwise, and the agent
    then requeues the notifications they came from. It must be safe to
    call again with the same samples: sample ids make retries idempotent
    for the receivers that keep them.
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
        """Hand ``samples`` (a list of Sample) over, or raise."""

    def close(self):  # noqa: B027 - most publishers hold nothing to close
        """Release connections and files."""
