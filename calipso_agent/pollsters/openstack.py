"""OpenStack API pollsters: what the cloud's APIs list, as samples.

They call the services of the catalog with a keystoneauth1 session of
``[service_credentials]`` (the inventory scan's: its region and
interface; a user with the admin role, to list every project's
resources). The discoveries list the resources, so several agents split
them like any other (one image, volume, floating IP or project per
resource); the pollsters turn each into its sample.

============================  =======  =========  ===========================
meter                         type     unit       resource (discovery)
============================  =======  =========  ===========================
image.size                    gauge    B          image (``images``)
volume.size                   gauge    GB         volume (``volumes``)
ip.floating                   gauge    ip         floating IP, volume 1
                                                  (``floating_ips``)
network.count                 gauge    network    project: its networks
                                                  (``network_projects``)
network.port.count            gauge    port       project: its ports
network.router.count          gauge    router     project: its routers
inventory.scan                gauge    object     region: the objects the
                                                  scan found (``scan_region``)
============================  =======  =========  ===========================

Ceilometer's ``network.services.lb/vpn/fw`` meters read neutron's LBaaS
v1, VPNaaS and FWaaS APIs, gone from most clouds: instead, the three
per-project counts above come from the core network API.

``inventory.scan`` runs the inventory scan (calipso_agent/scan) into the
store of ``[database]``, the source's interval being the scan period: the
``scan_region`` discovery gives one resource, the region, so among agents
sharing a coordination backend one runs it per cycle. Its sample counts
the objects found; its metadata says which services answered and what
was written.
"""

import abc
import logging
import threading

from calipso_agent import sample as sample_mod
from calipso_agent import storage
from calipso_agent.pollsters import base
from calipso_agent.scan import client as client_mod
from calipso_agent.scan import scanner

LOG = logging.getLogger(__name__)

GAUGE = sample_mod.TYPE_GAUGE


class _Sessions:
    """The keystoneauth1 session of each configuration, made once (it
    keeps its token until it expires) and shared by the plugins."""

    def __init__(self):
        self._lock = threading.Lock()
        self._sessions = {}

    def get(self, conf):
        with self._lock:
            # A ConfigOpts cannot be hashed: kept by id, with itself.
            known, session = self._sessions.get(id(conf), (None, None))
            if known is not conf:
                try:
                    session = client_mod.load_session(conf)
                except Exception as exc:
                    raise base.PollsterError(
                        f'[service_credentials] unusable: {exc}')
                self._sessions[id(conf)] = (conf, session)
            return session


SESSIONS = _Sessions()


def catalog_client(conf):
    credentials = conf.service_credentials
    return client_mod.CatalogClient(
        SESSIONS.get(conf), region_name=credentials.region_name,
        interface=credentials.interface,
        page_size=conf.inventory_scan.page_size)


def _listing(service, call):
    try:
        return call()
    except client_mod.ServiceError as exc:
        raise base.PollsterError(str(exc))


# --- discoveries -------------------------------------------------------------

class Images(base.Discovery):
    """Every image glance lists (``image`` in the catalog)."""

    def discover(self, context, param=None):
        client = catalog_client(self.conf)

        def call():
            url = client.endpoint('image', param or 'image') + '/v2/images'
            return client.list('image', url, 'images')
        return _listing('image', call)


class Volumes(base.Discovery):
    """Every project's volumes (``volumev3``, or the type of ``param``)."""

    def discover(self, context, param=None):
        client = catalog_client(self.conf)

        def call():
            url = client.endpoint('volume', param or 'volumev3')
            return client.list('volume', url + '/volumes/detail', 'volumes',
                               {'all_tenants': 1})
        return _listing('volume', call)


def _network_list(conf, name, param):
    client = catalog_client(conf)

    def call():
        url = client.endpoint('network', param or 'network')
        return client.list('network', f'{url}/v2.0/{name}', name)
    return _listing('network', call)


class FloatingIPs(base.Discovery):
    """Every floating IP neutron lists."""

    def discover(self, context, param=None):
        return _network_list(self.conf, 'floatingips', param)


def _project_of(item):
    return item.get('project_id') or item.get('tenant_id')


class NetworkProjects(base.Discovery):
    """One resource per project owning networks, ports or routers:
    ``{'id': project, 'networks': n, 'ports': n, 'routers': n}``."""

    COUNTED = ('networks', 'ports', 'routers')

    def discover(self, context, param=None):
        projects = {}
        for name in self.COUNTED:
            for item in _network_list(self.conf, name, param):
                project = _project_of(item)
                if not project:
                    continue
                counts = projects.setdefault(
                    project, dict.fromkeys(self.COUNTED, 0))
                counts[name] += 1
        return [dict(projects[project], id=project)
                for project in sorted(projects)]


class ScanRegion(base.Discovery):
    """The region scanned, as one resource: ``{'id': 'region-<name>',
    'region': <name>}``."""

    def discover(self, context, param=None):
        region = self.conf.service_credentials.region_name or 'default'
        return [{'id': f'region-{region}', 'region': region}]


# --- pollsters ---------------------------------------------------------------

class _ItemPollster(base.Pollster):
    """One sample per listed item (a dict of its API)."""

    meter_type = GAUGE
    #: Keys of the item copied into the resource metadata.
    metadata_keys = ()

    def get_samples(self, context, cache, resources):
        for item in resources:
            if not isinstance(item, dict) or not item.get('id'):
                LOG.warning('%s: resource %r is not an item of the %s '
                            'discovery', self.meter, item,
                            self.default_discovery)
                continue
            volume = self.volume_of(item)
            if volume is None:
                continue
            yield self.make_sample(
                context, item['id'], volume,
                user_id=item.get('user_id'), project_id=self.project_of(item),
                metadata=self.metadata_of(item))

    def project_of(self, item):
        return _project_of(item)

    def metadata_of(self, item):
        return {key: item.get(key) for key in self.metadata_keys}

    @abc.abstractmethod
    def volume_of(self, item):
        """The sample's volume for ``item``; None: no sample."""


def _size(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


class ImageSizePollster(_ItemPollster):
    default_discovery = 'images'
    unit = 'B'
    metadata_keys = ('name', 'status', 'disk_format', 'container_format',
                     'visibility', 'min_disk', 'min_ram', 'protected')

    def project_of(self, item):
        return item.get('owner')

    def volume_of(self, item):
        # An image being created has no size yet (null): no sample.
        return _size(item.get('size'))


class VolumeSizePollster(_ItemPollster):
    default_discovery = 'volumes'
    unit = 'GB'
    metadata_keys = ('name', 'status', 'volume_type', 'availability_zone',
                     'bootable', 'multiattach', 'created_at')

    def project_of(self, item):
        return item.get('os-vol-tenant-attr:tenant_id') or _project_of(item)

    def volume_of(self, item):
        return _size(item.get('size'))

    def metadata_of(self, item):
        metadata = super().metadata_of(item)
        # Where it is attached: the servers' ids.
        metadata['instance_ids'] = sorted(
            a['server_id'] for a in item.get('attachments') or ()
            if isinstance(a, dict) and a.get('server_id'))
        return metadata


class FloatingIPPollster(_ItemPollster):
    default_discovery = 'floating_ips'
    unit = 'ip'
    metadata_keys = ('floating_ip_address', 'fixed_ip_address', 'status',
                     'router_id', 'port_id', 'floating_network_id',
                     'description')

    def volume_of(self, item):
        return 1


class _ProjectCountPollster(base.Pollster):
    default_discovery = 'network_projects'
    meter_type = GAUGE
    counted = None

    def get_samples(self, context, cache, resources):
        for project in resources:
            if not isinstance(project, dict) or self.counted not in project:
                continue
            yield self.make_sample(context, project['id'],
                                   project[self.counted],
                                   project_id=project['id'])


class NetworkCountPollster(_ProjectCountPollster):
    unit = 'network'
    counted = 'networks'


class PortCountPollster(_ProjectCountPollster):
    unit = 'port'
    counted = 'ports'


class RouterCountPollster(_ProjectCountPollster):
    unit = 'router'
    counted = 'routers'


class InventoryScanPollster(base.Pollster):
    """Runs the inventory scan; its sample counts the objects found."""

    default_discovery = 'scan_region'
    unit = 'object'

    def __init__(self, conf):
        super().__init__(conf)
        self._store = None
        self._lock = threading.Lock()

    def _connection(self):
        with self._lock:
            if self._store is None:
                self._store = storage.get_connection(self.conf)
            return self._store

    def get_samples(self, context, cache, resources):
        for region in resources:
            result = scanner.scan(self.conf, self._connection(),
                                  session=SESSIONS.get(self.conf))
            if not result.answered:
                raise base.PollsterError(
                    f'inventory scan of {region["region"]}: no service '
                    f'answered ({", ".join(result.failed)})')
            yield self.make_sample(context, region['id'],
                                   result.found_objects, metadata={
                                       'region': result.region,
                                       'started_at': result.started_at,
                                       'services_answered': result.answered,
                                       'services_failed': result.failed,
                                       'found_links': result.found_links,
                                       'deleted_objects':
                                           result.deleted_objects,
                                       'closed_links': result.closed_links,
                                       'written': result.written,
                                       'requests': result.requests})
