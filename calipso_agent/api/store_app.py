"""The base of the WSGI applications over the store (the v2 API, the
channel controller): the store connected on first use, so that the
service starts (and answers 503) while the database is down, and every
failure answered as a JSON error."""

import logging
import threading

import webob.dec

from calipso_agent import storage
from calipso_agent.api import errors, router
from calipso_agent.storage import base as storage_base

LOG = logging.getLogger(__name__)


class StoreApp:
    """Subclasses define ``_dispatch(request)``, which answers; what it
    raises becomes a JSON error: 4xx for APIError and InvalidQuery, 503 for
    a failing store, 500 (logged with its traceback) for anything else."""

    def __init__(self, conf, storage_connection=None):
        self.conf = conf
        self._storage = storage_connection
        self._storage_lock = threading.Lock()

    def storage(self):
        if self._storage is None:
            with self._storage_lock:
                if self._storage is None:
                    self._storage = storage.get_connection(self.conf)
        return self._storage

    @webob.dec.wsgify
    def __call__(self, request):
        try:
            return self._dispatch(request)
        except errors.APIError as exc:
            return errors.response_of(exc)
        except storage_base.InvalidQuery as exc:
            return errors.error_response(400, str(exc))
        except storage_base.StorageError as exc:
            LOG.warning('Storage failed on %s: %s', router.describe(request),
                        exc)
            return errors.error_response(
                503, 'The store is unavailable, retry later')
        except Exception:
            LOG.exception('Internal error on %s', router.describe(request))
            return errors.error_response(500, 'Internal server error')
