"""What every calipso daemon and tool does first: options and logging."""

import logging
import os
import sys

import cotyledon
import oslo_messaging
from cotyledon import oslo_config_glue
from oslo_config import cfg
from oslo_log import log
from oslo_messaging import opts as messaging_opts

from calipso_agent import metrics, opts

LOG = logging.getLogger(__name__)

# Batches are processed under the GIL: a few executor threads keep one batch
# going while another waits on a publisher or the database. oslo.messaging's
# default of 64 only adds a malloc arena per thread (~40 MiB resident).
EXECUTOR_THREADS = 4


def limit_executor_threads(conf):
    """Default ``executor_thread_pool_size`` of a listening daemon."""
    for group, options in messaging_opts.list_opts():
        if group is None:
            conf.register_opts([o for o in options
                                 if o.name == 'executor_thread_pool_size'])
    messaging_opts.set_defaults(conf,
                                executor_thread_pool_size=EXECUTOR_THREADS)


def prepare_service(argv=None, config_files=None, log_setup=True,
                    conf=None, log_to_stderr=False, before_parse=None,
                    register_opts=opts.register_opts):
    """A ConfigOpts with every calipso option (or those ``register_opts``
    registers: a proxy's or controller's own), parsed from ``argv``.

    ``conf`` may bring command-line options of its own already registered;
    tools whose standard output is their result log to stderr;
    ``before_parse(conf)`` may change defaults of a daemon's own.
    """
    conf = conf if conf is not None else cfg.ConfigOpts()
    register_opts(conf)
    log.register_options(conf)
    if log_to_stderr:
        conf.set_default('use_stderr', True)
    if before_parse is not None:
        before_parse(conf)
    oslo_messaging.set_transport_defaults('calipso')
    try:
        conf(sys.argv[1:] if argv is None else argv, project='calipso',
             validate_default_values=True,
             default_config_files=config_files)
    except (cfg.ConfigFilesNotFoundError, cfg.ConfigFileParseError,
            cfg.ConfigFileValueError) as exc:
        sys.exit(f'{_program()}: {config_problem(exc)}')
    if log_setup:
        log.setup(conf, 'calipso')
    return conf


def _program():
    return os.path.basename(sys.argv[0]) or 'calipso'


def config_problem(exc):
    """One line saying what is wrong with the configuration files."""
    if isinstance(exc, cfg.ConfigFilesNotFoundError):
        names = ', '.join(exc.config_files)
        return (f'configuration file {names} not found: create it from '
                f'etc/calipso/calipso.conf.sample, or let "calipso run" '
                f'write a working one (README, "Install and run")')
    return ' '.join(str(exc).split())


def run_workers(conf, service_class, workers, metrics_address=None):
    """Run ``workers`` processes of ``service_class(worker_id, conf)``
    under cotyledon until a signal stops them (SIGHUP reloads options);
    with ``metrics_address`` (host, port), their metrics are served."""
    services = cotyledon.ServiceManager()
    services.add(service_class, workers=workers, args=(conf,))
    metrics.add_server(services, service_class.name, *(metrics_address
                                                        or (None, 0)))
    oslo_config_glue.setup(services, conf)
    services.run()
