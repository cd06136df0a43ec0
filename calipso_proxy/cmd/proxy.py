"""calipso-proxy: one monitoring channel's proxy under gunicorn.

Reads only the files given with --config-file (never calipso.conf: a
proxy holds no database credentials), normally the one the channel
controller generated.
"""

import logging
import sys

from calipso_agent import metrics, service
from calipso_agent.wsgi import server
from calipso_proxy import opts
from calipso_proxy.proxy import app, liveness

LOG = logging.getLogger(__name__)


def prepare(argv=None, log_setup=True):
    """The proxy's options (its own only) parsed from ``argv``."""
    return service.prepare_service(argv, config_files=[],
                                   log_setup=log_setup,
                                   register_opts=opts.register_proxy_opts)


def main(argv=None):
    conf = prepare(argv)
    try:
        if not conf.proxy.channel_id:
            raise ValueError('[proxy] channel_id is not set')
        app.load_app(conf)
    except Exception as exc:
        sys.exit(f'calipso-proxy: cannot start: {type(exc).__name__}: '
                 f'{exc}')
    LOG.info('calipso-proxy of channel %s (projects %s) serving on %s:%s, '
             'backend %s', conf.proxy.channel_id,
             ','.join(conf.proxy.authorized_projects), conf.proxy.host,
             conf.proxy.port, conf.proxy.backend_url)
    metrics.setup(f'calipso-proxy-{conf.proxy.channel_id}')
    server.serve(lambda: app.load_app(conf), conf.proxy.host,
                 conf.proxy.port, workers=conf.proxy.workers,
                 threads=conf.proxy.threads,
                 proc_name=f'calipso-proxy-{conf.proxy.channel_id}',
                 **liveness_hooks(conf.proxy.liveness_socket))


def liveness_hooks(name):
    """gunicorn hooks serving the liveness socket from the arbiter."""
    if not name:
        return {}
    listener = None

    def when_ready(arbiter):
        nonlocal listener
        listener = liveness.LivenessListener(name, arbiter)
        listener.start()

    def post_fork(arbiter, worker):
        if listener is not None:
            listener.close()

    return {'when_ready': when_ready, 'post_fork': post_fork}


if __name__ == '__main__':
    main()
