"""The scan's HTTP side: a keystoneauth1 session of
``[service_credentials]``, endpoints found in the catalog by service type,
region and interface, and lists read page after page."""

import logging
import urllib.parse

from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import loading as ks_loading

from calipso_agent import opts

LOG = logging.getLogger(__name__)


class ServiceError(Exception):
    """A service could not be listed (not in the catalog, unreachable,
    an error status, an answer that is not what its API gives)."""

    def __init__(self, service, reason):
        super().__init__(f'{service}: {reason}')
        self.service = service
        self.reason = reason


def load_session(conf):
    """A keystoneauth1 Session of ``[service_credentials]``; ValueError
    when no auth plugin is configured."""
    group = opts.SERVICE_CREDENTIALS
    auth = ks_loading.load_auth_from_conf_options(conf, group)
    if auth is None:
        raise ValueError(f'[{group}] auth_type is not set: the scan needs '
                         'credentials with the admin role')
    return ks_loading.load_session_from_conf_options(conf, group, auth=auth)


def _query(href):
    """The query parameters of a next link (absolute or relative)."""
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(href).query))


def next_link(body, key):
    """The query of the page after this one, or None: ``<key>_links``
    (nova, neutron, cinder) or ``next`` (glance)."""
    for link in body.get(f'{key}_links') or ():
        if isinstance(link, dict) and link.get('rel') == 'next' and (
                link.get('href')):
            return _query(link['href'])
    if isinstance(body.get('next'), str):
        return _query(body['next'])
    return None


class CatalogClient:
    """GETs on the endpoints of one region and interface of the catalog.

    ``service`` names a scanned service for messages; ``service_type`` is
    its catalog type (``compute``, ``network``, ``volumev3`` ...)."""

    def __init__(self, session, region_name=None, interface='public',
                 page_size=500):
        self.session = session
        self.region_name = region_name
        self.interface = interface
        self.page_size = page_size
        self.requests = 0

    def endpoint(self, service, service_type):
        try:
            url = self.session.get_endpoint(
                service_type=service_type, interface=self.interface,
                region_name=self.region_name)
        except ks_exc.EndpointNotFound:
            url = None
        except ks_exc.ClientException as exc:
            raise ServiceError(service, f'no catalog: {exc}')
        if not url:
            raise ServiceError(
                service, f'no {self.interface} endpoint of type '
                f'{service_type!r} in region {self.region_name!r} of the '
                'catalog')
        return url.rstrip('/')

    def get(self, service, url, params=None, missing_ok=False):
        """The JSON body of GET ``url``; None on a 404 when
        ``missing_ok``; ServiceError on any other failure."""
        self.requests += 1
        try:
            resp = self.session.get(url, params=params, raise_exc=False,
                                    headers={'Accept': 'application/json'})
        except ks_exc.ClientException as exc:
            raise ServiceError(service, f'GET {url}: {type(exc).__name__}: '
                               f'{exc}')
        if resp.status_code == 404 and missing_ok:
            return None
        if resp.status_code != 200:
            raise ServiceError(service, f'GET {url} answered '
                               f'{resp.status_code}: {resp.text[:200]}')
        try:
            body = resp.json()
        except ValueError:
            raise ServiceError(service, f'GET {url}: the answer is not '
                               'JSON')
        if not isinstance(body, dict):
            raise ServiceError(service, f'GET {url}: the answer is not a '
                               'JSON object')
        return body

    def items(self, service, body, key, url):
        items = body.get(key)
        if not isinstance(items, list) or not all(
                isinstance(item, dict) for item in items):
            raise ServiceError(service, f'GET {url}: no list {key!r} in the '
                               'answer')
        return items

    def list(self, service, url, key, params=None, send_limit=True):
        """Every item of a list, following its next links page after
        page (``limit`` is ``page_size`` unless ``send_limit`` is false:
        for lists whose API takes no ``limit``); a marker seen twice is an
        error rather than a loop."""
        first = dict(params or {})
        if send_limit:
            first['limit'] = self.page_size
        params, result, seen = first, [], set()
        while True:
            body = self.get(service, url, params)
            if body.get('truncated') is True:
                # keystone's list_limit cut the list, with no next page.
                raise ServiceError(service, f'GET {url}: the list is '
                                   'truncated (the service\'s list limit)')
            page = self.items(service, body, key, url)
            result.extend(page)
            following = next_link(body, key) if page else None
            if following is None:
                return result
            marker = following.get('marker')
            if not marker or marker in seen:
                raise ServiceError(service, f'GET {url}: the next link '
                                   f'repeats or lacks a marker ({marker!r})')
            seen.add(marker)
            params = {**first, **following}
