"""calipso-api: the Ceilometer v2-compatible query API under gunicorn."""

import logging
import sys

from calipso_agent import metrics, service, storage
from calipso_agent.api import app
from calipso_agent.wsgi import server

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
    problem = storage.startup_problem(conf)
    if problem:
        sys.exit(f'calipso-api: {problem}')


def main(argv=None):
    conf = service.prepare_service(argv)
    check_config(conf)
    metrics.setup('calipso-api')
    LOG.info('calipso-api serving on %s:%s (%s pipeline, %d workers of %d '
             'threads)', conf.api.host, conf.api.port,
             conf.api.auth_strategy, conf.api.workers, conf.api.threads)
    server.serve(lambda: app.load_app(conf), conf.api.host, conf.api.port,
                 workers=conf.api.workers, threads=conf.api.threads,
                 proc_name='calipso-api')


if __name__ == '__main__':
    main()
