"""Serving a WSGI application with gunicorn (gthread workers).

Reusable by any calipso HTTP service: ``serve(load_app, host, port,
workers, threads)`` runs until a signal stops it. ``load_app`` is called
in each worker process after the fork, so connections (database, HTTP
sessions) are never shared between processes.
"""

import gc

from gunicorn.app import base as gunicorn_base


class WSGIServer(gunicorn_base.BaseApplication):
    """gunicorn's arbiter over ``load_app()``, with ``options`` (gunicorn
    settings by name) instead of gunicorn's command line."""

    def __init__(self, load_app, options):
        self._load_app = load_app
        self._options = options
        super().__init__()

    def load_config(self):
        for name, value in self._options.items():
            # A setting this gunicorn does not know is left out.
            if value is not None and name in self.cfg.settings:
                self.cfg.set(name, value)

    def load(self):
        return self._load_app()


def _freeze_loaded_objects(worker):
    """gunicorn ``post_worker_init``: what importing and loading the
    application allocated is never garbage, so the collector stops walking
    it on every full collection (large answers trigger many)."""
    gc.freeze()


def bind_address(host, port):
    if ':' in host and not host.startswith('['):
        host = f'[{host}]'
    return f'{host}:{port}'


def serve(load_app, host, port, workers=1, threads=1, **options):
    """Serve ``load_app()`` on host:port until SIGTERM/SIGINT (SIGHUP
    reloads the workers)."""
    settings = {'bind': bind_address(host, port), 'workers': workers,
                'threads': threads, 'worker_class': 'gthread',
                # gunicorn's control socket (recent versions) has one
                # default path per user: every server of a host (the API,
                # a proxy per channel) would take the same one.
                'control_socket_disable': True,
                'post_worker_init': _freeze_loaded_objects}
    settings.update(options)
    WSGIServer(load_app, settings).run()
