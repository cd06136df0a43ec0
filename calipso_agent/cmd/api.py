"""calipso-api: the Ceilometer v2-compatible query API under gunicorn."""

import logging
import sys

from calipso_agent import service, storage
from calipso_agent.api import app, server
from calipso_agent.storage import base as storage_base

LOG = logging.getLogger(__name__)


def check_config(conf):
    """Exit with a reason when the paste pipeline or the database URL
    cannot be used; an unreachable store is answered 503 meanwhile."""
    try:
        app.load_app(conf)
    except Exception as exc:
        sys.exit(f'calipso-api: cannot load the paste pipeline ([api] '
                 f'paste_config, auth_strategy): {type(exc).__name__}: '
                 f'{exc}')
    url = storage.database_url(conf)
    try:
        storage.get_connection(conf).close()
    except storage_base.StorageError as exc:
        LOG.warning('Database %s unreachable for now: %s',
                    storage.safe_url(url), exc)
    except Exception as exc:
        sys.exit(f'calipso-api: cannot use the database '
                 f'{storage.safe_url(url)} ([database] connection): '
                 f'{type(exc).__name__}: {exc}')


def main(argv=None):
    conf = service.prepare_service(argv)
    check_config(conf)
    LOG.info('calipso-api serving on %s:%s (%s pipeline, %d workers of %d '
             'threads)', conf.api.host, conf.api.port,
             conf.api.auth_strategy, conf.api.workers, conf.api.threads)
    server.serve(lambda: app.load_app(conf), conf.api.host, conf.api.port,
                 workers=conf.api.workers, threads=conf.api.threads,
                 proc_name='calipso-api')


if __name__ == '__main__':
    main()
