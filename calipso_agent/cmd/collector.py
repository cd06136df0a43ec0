"""calipso-collector: samples from the bus (notifier://) into the store."""

import sys

from calipso_agent import collector, service, storage


def check_database(conf):
    """Exit with a reason when ``[database] connection`` names no usable
    driver; an unreachable store is left to the workers, which retry."""
    problem = storage.startup_problem(conf)
    if problem:
        sys.exit(f'calipso-collector: {problem}')


def main(argv=None):
    conf = service.prepare_service(
        argv, before_parse=service.limit_executor_threads)
    check_database(conf)
    service.run_workers(conf, collector.CollectorService,
                        conf.collector.workers,
                        (conf.collector.metrics_host,
                         conf.collector.metrics_port))


if __name__ == '__main__':
    main()
