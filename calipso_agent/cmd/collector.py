"""calipso-collector: samples from the bus (notifier://) into the store."""

import sys

from calipso_agent import collector, service, storage
from calipso_agent.storage import base as storage_base


def check_database(conf):
    """Exit with a reason when ``[database] connection`` names no usable
    driver; an unreachable store is left to the workers, which retry."""
    url = storage.database_url(conf)
    try:
        storage.get_connection(conf).close()
    except storage_base.StorageError:
        pass
    except Exception as exc:
        sys.exit(f'calipso-collector: cannot use the database '
                 f'{storage.safe_url(url)} ([database] connection): '
                 f'{type(exc).__name__}: {exc}')


def main(argv=None):
    conf = service.prepare_service(
        argv, before_parse=service.limit_executor_threads)
    check_database(conf)
    service.run_workers(conf, collector.CollectorService,
                        conf.collector.workers)


if __name__ == '__main__':
    main()
