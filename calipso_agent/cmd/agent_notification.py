"""calipso-agent-notification: the notification agent daemon."""

import os
import sys

from calipso_agent import service
from calipso_agent.notification import manager


def main(argv=None):
    conf = service.prepare_service(
        argv, before_parse=service.limit_executor_threads)
    pipeline = manager.pipeline_path(conf)
    if not os.path.isfile(pipeline):
        sys.exit(f'calipso-agent-notification: pipeline file {pipeline} '
                 'not found ([notification] pipeline_cfg_file)')
    service.run_workers(conf, manager.NotificationService,
                        conf.notification.workers)


if __name__ == '__main__':
    main()
