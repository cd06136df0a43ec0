"""calipso-agent-polling: the polling agent daemon (doc/polling.md)."""

import os
import sys

from calipso_agent import service
from calipso_agent.pollsters import manager


def main(argv=None):
    conf = service.prepare_service(argv)
    for path, option in ((manager.polling_path(conf), '[polling] cfg_file'),
                         (manager.pipeline_path(conf),
                          '[notification] pipeline_cfg_file')):
        if not os.path.isfile(path):
            sys.exit(f'calipso-agent-polling: {path} not found ({option})')
    service.run_workers(conf, manager.PollingService, 1,
                        (conf.polling.metrics_host,
                         conf.polling.metrics_port))


if __name__ == '__main__':
    main()
