"""calipso-dbsync and calipso-expirer: one-shot storage maintenance.

Both make one attempt: an unreachable store ends them with a non-zero
status and the reason on stderr, so deployment scripts can retry them.
Their outcome goes to stdout, logs to stderr.
"""

import sys

from calipso_agent import service, storage


def _fail(tool, conf, action, exc):
    url = storage.safe_url(storage.database_url(conf))
    reason = ' '.join(str(exc).split())
    sys.exit(f'{tool}: cannot {action} the database {url}: '
             f'{type(exc).__name__}: {reason}')


def sync(conf):
    """Create or upgrade the schema and indexes (idempotent)."""
    try:
        store = storage.get_connection(conf)
        try:
            done = store.upgrade()
            done = store.created_on_connect or done
        finally:
            store.close()
    except Exception as exc:
        _fail('calipso-dbsync', conf, 'upgrade', exc)
    embedded = ('' if conf.database.connection else
                ' (no [database] connection configured: the embedded SQLite '
                'file)')
    print(f'calipso-dbsync: database '
          f'{storage.safe_url(storage.database_url(conf))}{embedded}: '
          f'{done}')


def expire(conf):
    """Delete the samples older than ``[database] metering_time_to_live``.
    """
    ttl = conf.database.metering_time_to_live
    if ttl <= 0:
        print(f'calipso-expirer: nothing to do: [database] '
              f'metering_time_to_live is {ttl}, samples are kept forever')
        return
    try:
        store = storage.get_connection(conf)
        try:
            deleted = store.clear_expired_samples(ttl)
        finally:
            store.close()
    except Exception as exc:
        _fail('calipso-expirer', conf, 'expire samples in', exc)
    print(f'calipso-expirer: {deleted} samples older than {ttl}s deleted')


def dbsync(argv=None):
    sync(service.prepare_service(argv, log_to_stderr=True))


def expirer(argv=None):
    expire(service.prepare_service(argv, log_to_stderr=True))
