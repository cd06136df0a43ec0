"""calipso-proxy-controller: the monitoring channel API under gunicorn and
the reconciler keeping one proxy running per stored channel.

SIGTERM (or SIGINT) stops the API and the reconciler, not the proxies:
they are processes of their own sessions that go on serving their
tenants, and the next controller adopts them (their pid files are in
``[controller] proxy_state_dir``).
"""

import logging
import os
import sys

from gunicorn import config as gunicorn_config

from calipso_agent import metrics, service, storage
from calipso_agent.wsgi import server
from calipso_proxy import launcher, opts
from calipso_proxy.controller import app, channels
from calipso_proxy.controller import reconciler as reconciler_mod
from calipso_proxy.launcher import base as launcher_base

LOG = logging.getLogger(__name__)
STOP_TIMEOUT = 10


def _fail(message):
    sys.exit(f'calipso-proxy-controller: {message}')


def check_config(conf):
    """The launcher; exit with a reason when the configuration cannot be
    used (an unreachable store is only logged: the API answers 503 and
    the reconciler retries meanwhile)."""
    controller = conf.controller
    if controller.proxy_port_min > controller.proxy_port_max:
        _fail(f'[controller] proxy_port_min ({controller.proxy_port_min}) '
              f'is above proxy_port_max ({controller.proxy_port_max})')
    try:
        os.makedirs(launcher_base.state_dir(conf), mode=0o700,
                    exist_ok=True)
    except OSError as exc:
        _fail(f'cannot create [controller] proxy_state_dir: {exc}')
    try:
        # Registers the auth plugin's options of [service_credentials]
        # here, before gunicorn forks, and checks they can be copied.
        channels.render_config(conf, {
            'id': 'check', 'tenant_list': [], 'token_hash': '',
            'port': controller.proxy_port_min})
    except Exception as exc:
        _fail(f'cannot copy [service_credentials] into the proxies\' '
              f'configuration: {type(exc).__name__}: {exc}')
    try:
        proxy_launcher = launcher.get_launcher(conf)
    except Exception as exc:
        _fail(f'cannot load [controller] launcher {controller.launcher!r}: '
              f'{type(exc).__name__}: {exc}')
    try:
        app.load_app(conf)
    except Exception as exc:
        _fail(f'cannot load the paste pipeline ([controller] '
              f'paste_config, auth_strategy): {type(exc).__name__}: {exc}')
    problem = storage.startup_problem(conf)
    if problem:
        _fail(problem)
    return proxy_launcher


def server_options():
    """gunicorn settings of the controller beyond serve()'s."""
    options = {'proc_name': 'calipso-proxy-controller'}
    # Newer gunicorns open a control socket, one path per user: the
    # proxies' gunicorns would take it over.
    if any(s.name == 'control_socket_disable'
           for s in gunicorn_config.KNOWN_SETTINGS):
        options['control_socket_disable'] = True
    return options


def prepare(argv=None, log_setup=True):
    """The controller's options (its own, [database] and [api]
    scope_signing_key) parsed from ``argv``."""
    return service.prepare_service(
        argv, log_setup=log_setup,
        register_opts=opts.register_controller_opts)


def main(argv=None):
    conf = prepare(argv)
    proxy_launcher = check_config(conf)
    metrics.setup('calipso-proxy-controller')
    controller = conf.controller
    reconciler = reconciler_mod.Reconciler(conf, proxy_launcher)
    reconciler.start()
    LOG.info('calipso-proxy-controller serving on %s:%s (%s pipeline, %d '
             'workers of %d threads), proxies on %s:%s-%s', controller.host,
             controller.port, controller.auth_strategy, controller.workers,
             controller.threads, controller.proxy_host,
             controller.proxy_port_min, controller.proxy_port_max)
    server.serve(lambda: app.load_app(conf), controller.host,
                 controller.port, workers=controller.workers,
                 threads=controller.threads,
                 on_exit=lambda arbiter: reconciler.stop(STOP_TIMEOUT),
                 **server_options())


if __name__ == '__main__':
    main()
