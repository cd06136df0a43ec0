"""One inventory scan: list every configured service, map what answered,
mark deleted what is gone inside the scope of what answered, and merge it
all into the store in one ``apply_inventory``.

``scan(conf, store)`` is the whole of it, for ``calipso-inventory-scan``
and for a pollster that runs it on a schedule.
"""

import dataclasses
import datetime
import logging

from calipso_agent import inventory
from calipso_agent.scan import client as client_mod
from calipso_agent.scan import collectors, mapping, reconcile

LOG = logging.getLogger(__name__)

SERVICES = tuple(collectors.COLLECTORS)
DEFAULT_SERVICE_TYPES = {'identity': 'identity', 'compute': 'compute',
                         'network': 'network', 'volume': 'volumev3'}


@dataclasses.dataclass
class ScanResult:
    """What a scan did. ``services`` maps each service scanned to None
    (listed in full) or the reason it could not be."""

    started_at: str
    region: str
    services: dict = dataclasses.field(default_factory=dict)
    found_objects: int = 0
    found_links: int = 0
    deleted_objects: int = 0
    closed_links: int = 0
    written: int = 0
    requests: int = 0

    @property
    def failed(self):
        return sorted(name for name, reason in self.services.items()
                      if reason is not None)

    @property
    def answered(self):
        return sorted(name for name, reason in self.services.items()
                      if reason is None)


def _now():
    return datetime.datetime.now(datetime.UTC)


def scan(conf, store, session=None, services=None, now=_now):
    """Scan the cloud of ``[service_credentials]`` into ``store``.

    ``session``: a keystoneauth1 Session (default: one loaded from
    ``[service_credentials]``); ``services``: the services to scan
    (default ``[inventory_scan] services``). A service that fails is
    reported in the result and logged; the others are scanned and merged
    all the same. Returns a ``ScanResult``.
    """
    options = conf.inventory_scan
    credentials = conf.service_credentials
    stamp = inventory.timestamp(now())
    region_name = credentials.region_name or 'default'
    result = ScanResult(started_at=stamp, region=region_name)
    client = client_mod.CatalogClient(
        session or client_mod.load_session(conf),
        region_name=credentials.region_name,
        interface=credentials.interface, page_size=options.page_size)
    service_types = dict(DEFAULT_SERVICE_TYPES, **options.service_types)
    bodies = {}
    for service in services or options.services:
        try:
            bodies[service] = collectors.COLLECTORS[service](
                client, service_types[service])
            result.services[service] = None
        except client_mod.ServiceError as exc:
            result.services[service] = exc.reason
            LOG.error('Inventory scan: %s not scanned, its objects are '
                      'kept as they are: %s', service, exc.reason)
    result.requests = client.requests
    if not bodies:
        LOG.error('Inventory scan of region %s: no service could be '
                  'scanned, nothing written', region_name)
        return result

    found = mapping.Mapped(objects=[mapping.region(region_name, stamp)])
    hosts = None
    if 'compute' in bodies:
        compute = mapping.compute(bodies['compute'], stamp, region_name)
        hosts = mapping.compute_hosts(compute)
        found.extend(compute)
    if 'network' in bodies:
        found.extend(mapping.network(bodies['network'], stamp, region_name,
                                     compute_hosts=hosts))
    if 'volume' in bodies:
        found.extend(mapping.volume(bodies['volume'], stamp))
    if 'identity' in bodies:
        found.extend(mapping.identity(bodies['identity'], stamp))
    unread = [server_id for server_id, interfaces in bodies.get(
        'compute', {}).get('interfaces', {}).items() if interfaces is None]

    types, link_types = reconcile.scope(result.answered)
    gone = reconcile.deletions(store, found, types, link_types, stamp,
                               unread=unread)
    result.found_objects = len(found.objects)
    result.found_links = len(found.links)
    result.deleted_objects = len(gone.objects)
    result.closed_links = len(gone.links)
    result.written = store.apply_inventory(found.objects + gone.objects,
                                           found.links + gone.links)
    LOG.info('Inventory scan of region %s from %s: %d objects and %d links '
             'found, %d objects marked deleted, %d links closed, %d '
             'written; %d requests; failed: %s', region_name, stamp,
             result.found_objects, result.found_links,
             result.deleted_objects, result.closed_links, result.written,
             result.requests, ', '.join(result.failed) or 'none')
    return result
