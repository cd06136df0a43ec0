"""calipso-agent-notification: the notification agent daemon."""

import os
import sys

import cotyledon
from cotyledon import oslo_config_glue

from calipso_agent import service
from calipso_agent.notification import manager


def main(argv=None):
    conf = service.prepare_service(
        argv, before_parse=service.limit_executor_threads)
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
