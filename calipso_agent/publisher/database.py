"""database:// — samples written straight into the configured store.

The store is the one of ``[database] connection`` (the embedded SQLite
file when unset); the URL takes no host, path or option. Writes are
idempotent by sample id, so a batch the agent retries stores nothing twice.
"""

import logging
import threading

from calipso_agent import delivery, metrics, storage
from calipso_agent.publisher import base
from calipso_agent.storage import base as storage_base

LOG = logging.getLogger(__name__)


class DatabasePublisher(base.Publisher):
    """Writes samples with the storage driver of ``[database]``.

    The connection is made on first use when the store cannot be reached
    at start, so the agent keeps the publisher (and requeues its batches)
    instead of dropping it as a broken pipeline entry.
    """

    def __init__(self, conf, parsed_url):
        super().__init__(conf, parsed_url)
        if parsed_url.netloc or parsed_url.path or parsed_url.query:
            raise base.PublisherConfigError(
                'database:// takes no host, path or option: it writes to '
                'the store of [database] connection')
        self._lock = threading.Lock()
        self._store = None
        self.already_stored = 0
        try:
            self._store = storage.get_connection(conf)
        except storage_base.StorageError as exc:
            LOG.warning('Database publisher: the store is unreachable (%s); '
                        'connecting on first publish', exc)
        except Exception as exc:
            raise base.PublisherConfigError(
                f'database:// cannot use [database] connection: '
                f'{type(exc).__name__}: {exc}')

    def _connection(self):
        with self._lock:
            if self._store is None:
                self._store = storage.get_connection(self.conf)
            return self._store

    def publish_samples(self, samples):
        if not samples:
            return
        try:
            result = metrics.record_samples(self._connection(), samples)
        except storage_base.StorageDataError as exc:
            raise base.PublisherDataError(
                f'the store refused {len(samples)} samples: {exc}')
        except storage_base.StorageError as exc:
            raise base.PublisherError(
                f'cannot store {len(samples)} samples: {exc}')
        duplicates = delivery.redelivered(samples, result)
        self.already_stored += duplicates
        if result.rejected:
            # The others are stored; the notifications of these are
            # set aside by the agent (retrying them would not help).
            raise base.PublisherDataError(
                f'{len(result.rejected)} of {len(samples)} samples '
                f'rejected by the store: '
                f'{delivery.describe_rejected(result.rejected)}',
                refused=result.rejected)
        return duplicates

    def probe(self):
        try:
            self._connection().ping()
        except storage_base.StorageError:
            return False
        return True

    def close(self):
        with self._lock:
            store, self._store = self._store, None
        if store is not None:
            store.close()
