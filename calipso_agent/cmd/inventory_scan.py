"""calipso-inventory-scan: list the cloud through its APIs into the inventory.

    calipso-inventory-scan [--config-file FILE ...]

Authenticates with ``[service_credentials]``, finds the services in the
catalog (``region_name``, ``interface``), lists ``[inventory_scan]
services`` and merges the result into the inventory's store
(``[inventory] connection``, by default ``[database] connection``;
doc/inventory-scan.md). Prints one line per service and the totals on
stdout; logs go to stderr. Exit status: 0 when every service was
scanned, 2 when some failed (the others were merged; the objects of the
failed ones were left as they were), 1 when nothing could be scanned or
stored (credentials, catalog, database).
"""

import sys

from calipso_agent import service, storage
from calipso_agent.scan import client, scanner

EXIT_PARTIAL = 2


def report(result, out):
    for name in sorted(result.services):
        reason = result.services[name]
        out.write(f'{name}: ' + ('scanned' if reason is None else
                                 f'FAILED: {reason}') + '\n')
    out.write(f'region {result.region}, scan of {result.started_at}: '
              f'{result.found_objects} objects and {result.found_links} '
              f'links found, {result.deleted_objects} objects marked '
              f'deleted, {result.closed_links} links closed, '
              f'{result.written} written ({result.requests} requests)\n')


def main(argv=None):
    conf = service.prepare_service(argv, log_to_stderr=True)
    try:
        session = client.load_session(conf)
    except Exception as exc:
        sys.exit(f'calipso-inventory-scan: [service_credentials]: '
                 f'{type(exc).__name__}: {exc}')
    # The inventory's store: the notification agent's inventory endpoint
    # writes the same one.
    url = storage.inventory_url(conf)
    try:
        store = storage.get_connection_from_url(conf, url)
    except Exception as exc:
        url = storage.safe_url(url)
        sys.exit(f'calipso-inventory-scan: cannot use the database {url}: '
                 f'{type(exc).__name__}: {exc}')
    try:
        result = scanner.scan(conf, store, session=session)
    except Exception as exc:
        sys.exit(f'calipso-inventory-scan: the scan failed: '
                 f'{type(exc).__name__}: {exc}')
    finally:
        store.close()
    report(result, sys.stdout)
    if not result.answered:
        return 1
    return EXIT_PARTIAL if result.failed else 0


if __name__ == '__main__':
    sys.exit(main())
