"""The web pieces of a service over the store (the v2 API, the channel
controller; never a channel's proxy): ``StoreApp``, the base of their
applications, with the store connected on first use, so that the service
starts (and answers 503) while the database is down, and every failure
answered as a JSON error; ``StoreHealthcheck``, their /healthcheck."""

import logging
import threading

import webob.dec

from calipso_agent import storage
from calipso_agent.storage import base as storage_base
from calipso_agent.wsgi import errors, middleware, paste_app, router

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


class StoreHealthcheck(middleware.Healthcheck):
    """/healthcheck of a service over the store (the API, the controller):
    200 ``OK`` while the store answers, 503 (JSON, with the reason) while
    it does not, so a load balancer takes the node out of rotation."""

    def __init__(self, application, conf):
        super().__init__(application)
        self.conf = conf
        self._store = None
        self._lock = threading.Lock()

    @classmethod
    def factory(cls, global_conf, **local_conf):
        conf = paste_app.required_conf(global_conf, 'StoreHealthcheck')
        return lambda application: cls(application, conf)

    def _store_problem(self):
        try:
            with self._lock:
                if self._store is None:
                    self._store = storage.get_connection(self.conf)
            self._store.ping()
        except storage_base.StorageError as exc:
            return ' '.join(str(exc).split())
        return None

    @webob.dec.wsgify
    def __call__(self, request):
        if request.environ.get('PATH_INFO', '').rstrip('/') != self.PATH:
            return request.get_response(self.application)
        problem = (request.method in ('GET', 'HEAD')
                   and self._store_problem())
        if problem:
            LOG.warning('Healthcheck: the store does not answer: %s',
                        problem)
            return errors.error_response(
                503, f'The store does not answer: {problem}')
        return super().__call__(request)
