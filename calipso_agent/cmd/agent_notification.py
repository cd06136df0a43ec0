"""calipso-agent-notification: the notification agent daemon."""

import os
import sys

from calipso_agent import service, shipped
from calipso_agent.notification import manager, meters


def definitions_problem(conf):
    """Why the meter endpoint would make no sample at all (None when it
    has definitions, is not enabled, or may run without them)."""
    if ('meter' not in conf.notification.endpoints
            or conf.meter.allow_no_definitions):
        return None
    definitions = meters.MeterDefinitions.from_conf(conf)
    if definitions.definitions:
        return None
    places = ', '.join(list(conf.meter.meter_definitions_dirs)
                       + list(conf.meter.meter_definitions_paths)) or 'none'
    return (f'no meter definition loaded from {places} ([meter] '
            f'meter_definitions_dirs, meter_definitions_paths); the package '
            f'ships its definitions in {shipped.meter_definitions_dir()} '
            f'(set [meter] allow_no_definitions = true to run without)')


def main(argv=None):
    conf = service.prepare_service(
        argv, before_parse=service.limit_executor_threads)
    pipeline = manager.pipeline_path(conf)
    if not os.path.isfile(pipeline):
        sys.exit(f'calipso-agent-notification: pipeline file {pipeline} '
                 'not found ([notification] pipeline_cfg_file)')
    problem = definitions_problem(conf)
    if problem:
        sys.exit(f'calipso-agent-notification: {problem}')
    service.run_workers(conf, manager.NotificationService,
                        conf.notification.workers,
                        (conf.notification.metrics_host,
                         conf.notification.metrics_port))


if __name__ == '__main__':
    main()
