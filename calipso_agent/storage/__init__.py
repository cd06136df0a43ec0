"""Storage drivers: samples, resources, inventory, channels.

``get_connection(conf)`` returns the driver for ``[database] connection``,
loaded from the ``calipso.storage`` namespace by the URL's scheme.
"""

import logging
import urllib.parse

from stevedore import driver
from stevedore import exception as stevedore_exception

from calipso_agent.storage import base

LOG = logging.getLogger(__name__)

NAMESPACE = 'calipso.storage'


class UnknownDatabase(ValueError):  # noqa: N818
    """No storage driver for the scheme of a database URL."""


def get_connection_from_url(conf, url):
    scheme = urllib.parse.urlsplit(url).scheme.split('+', 1)[0]
    try:
        manager = driver.DriverManager(NAMESPACE, scheme, invoke_on_load=True,
                                       invoke_args=(conf, url))
    except stevedore_exception.NoMatches:
        raise UnknownDatabase(
            f'no storage driver for {scheme!r} (database URL schemes: '
            'sqlite, postgresql, mongodb)')
    return manager.driver


def get_connection(conf):
    return get_connection_from_url(conf, database_url(conf))


def safe_url(url):
    """A database URL without its password, for messages."""
    parts = urllib.parse.urlsplit(url)
    credentials, at, location = parts.netloc.rpartition('@')
    if not at or ':' not in credentials:
        return url
    user = credentials.split(':', 1)[0]
    return parts._replace(netloc=f'{user}:***@{location}').geturl()


def database_url(conf):
    """``[database] connection``, or the embedded SQLite file."""
    return (conf.database.connection or
            f'sqlite:///{conf.state_path}/calipso.sqlite')


def inventory_url(conf):
    """``[inventory] connection``, or the sample store's database: where
    the inventory endpoint and the inventory scan write."""
    return conf.inventory.connection or database_url(conf)


def startup_problem(conf):
    """Connect once, as a service starts. None when the database answers
    or is only unreachable for now (logged: the service answers or retries
    until it is back); otherwise what is wrong with ``[database]
    connection`` (no driver, a bad URL), for the service to exit with."""
    url = database_url(conf)
    try:
        get_connection(conf).close()
    except base.StorageError as exc:
        LOG.warning('Database %s unreachable for now: %s', safe_url(url),
                    exc)
    except Exception as exc:
        return (f'cannot use the database {safe_url(url)} ([database] '
                f'connection): {type(exc).__name__}: {exc}')
    return None
