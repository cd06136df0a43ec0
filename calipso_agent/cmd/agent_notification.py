"""calipso-agent-notification: the notification agent daemon."""

import os
import sys

import cotyledon
from cotyledon import oslo_config_glue
from oslo_messaging import opts as messaging_opts

from calipso_agent import service
from calipso_agent.notification import manager

# Batches are processed under the GIL: a few executor threads keep one batch
# going while another waits on a publisher. oslo.messaging's default of 64
# only adds a malloc arena per thread (resident memory grows by ~40 MiB).
EXECUTOR_THREADS = 4


def _executor_defaults(conf):
    for group, options in messaging_opts.list_opts():
        if group is None:
            conf.register_opts([o for o in options
                                 if o.name == 'executor_thread_pool_size'])
    messaging_opts.set_defaults(
        conf, executor_thread_pool_size=EXECUTOR_THREADS)


def main(argv=None):
    conf = service.prepare_service(argv, before_parse=_executor_defaults)
    pipeline = manager.pipeline_path(conf)
    if not os.path.isfile(pipeline):
        sys.exit(f'calipso-agent-notification: pipeline file {pipeline} '
                 'not found ([notification] pipeline_cfg_file)')
    services = cotyledon.ServiceManager()
    services.add(manager.NotificationService,
                 workers=conf.notification.workers, args=(conf,))
    oslo_config_glue.setup(services, conf)
    services.run()


if __name__ == '__main__':
    main()
