"""CORD vSG pollsters: each vSG service instance's own stats, over HTTP.

The plugin example of doc/polling.md ("Writing a pollster"): a service is
instrumented with this module and its entry points only, nothing else of
the agent changes.

* The ``vsg_instances`` discovery lists the service instances: the
  ``[vsg] instances`` option (``<vcpe id>=<stats URL>`` entries), and the
  answer of ``[vsg] instances_url`` when set (an XOS-like endpoint: a JSON
  list, or ``{"items": [...]}``, of ``{"id", "stats_url", "tenant_id"?,
  "user_id"?}``). Each resource is ``{'id', 'url', 'project_id',
  'user_id'}``.
* Every pollster of this module is the one class ``VsgPollster``,
  registered once per meter in ``calipso.poll.vsg`` (its ``cpu_util``,
  ``memory.usage`` and ``network.*`` are CORD's names, shared with the
  host and compute pollsters, told apart by their discovery); the meter
  (the entry point's name) picks its line of ``METERS``. One GET
  of a vSG's URL per cycle serves them all (the cycle's cache).

A vSG's stats document holds the payloads of the notifications CORD's vSG
notifier sends (calipso_agent/notification/vsg.py), so the polled meters
have the same names, types, units and resource ids as the notified ones::

    {"vcpe_id": "...", "tenant_id": "...", "user_id": "...",
     "compute": {"cpu_util": 4.5, "memory": 512, "memory_usage": 130,
                 "network_stats": [{"intf": "eth0", "rx_bytes": 1,
                                    "tx_bytes": 2, "rx_packets": 3,
                                    "tx_packets": 4}]},
     "dns": {"cache_size": 150, "total_inserted_entries": 10,
             "replaced_unexpired_entries": 0, "queries_forwarded": 7,
             "queries_answered_locally": 3,
             "servers": [{"upstream_server": "8.8.8.8",
                          "queries_sent": 7, "queries_failed": 0}]}}

A missing key makes no sample of its meter; a vSG that does not answer
(or answers something else than such a document) is logged and skipped
for this cycle.
"""

import logging
import math

import requests

from calipso_agent import sample as sample_mod
from calipso_agent.pollsters import base

LOG = logging.getLogger(__name__)

GAUGE = sample_mod.TYPE_GAUGE
CUMULATIVE = sample_mod.TYPE_CUMULATIVE

# What one meter reads:
# (type, unit, section, keys (the first present), per)
# ``section``: None (the document itself), 'compute' or 'dns'; ``per``:
# None (one sample per vSG, resource id the vcpe id), 'network_stats'
# (per interface, ``<vcpe id>-<intf>``) or 'servers' (per upstream DNS
# server, ``<vcpe id>-<server>``).
METERS = {
    'vsg': (GAUGE, 'vsg', None, (), None),
    'cpu_util': (GAUGE, '%', 'compute', ('cpu_util',), None),
    'memory': (GAUGE, 'MB', 'compute', ('memory',), None),
    'memory.usage': (GAUGE, 'MB', 'compute', ('memory_usage',), None),
    'network.incoming.bytes': (CUMULATIVE, 'B', 'compute', ('rx_bytes',),
                               'network_stats'),
    'network.outgoing.bytes': (CUMULATIVE, 'B', 'compute', ('tx_bytes',),
                               'network_stats'),
    'network.incoming.packets': (CUMULATIVE, 'packet', 'compute',
                                 ('rx_packets',), 'network_stats'),
    'network.outgoing.packets': (CUMULATIVE, 'packet', 'compute',
                                 ('tx_packets',), 'network_stats'),
    'vsg.dns.cache.size': (GAUGE, 'entries', 'dns', ('cache_size',), None),
    # CORD's plugin spells the meter so; its notifier spells the key
    # either way.
    'vsg.dns.total_instered_entries': (
        CUMULATIVE, 'entries', 'dns',
        ('total_inserted_entries', 'total_instered_entries'), None),
    'vsg.dns.replaced_unexpired_entries': (
        CUMULATIVE, 'entries', 'dns', ('replaced_unexpired_entries',),
        None),
    'vsg.dns.queries_forwarded': (CUMULATIVE, 'queries', 'dns',
                                  ('queries_forwarded',), None),
    'vsg.dns.queries_answered_locally': (
        CUMULATIVE, 'queries', 'dns', ('queries_answered_locally',), None),
    'vsg.dns.server.queries_sent': (CUMULATIVE, 'queries', 'dns',
                                    ('queries_sent',), 'servers'),
    'vsg.dns.server.queries_failed': (CUMULATIVE, 'queries', 'dns',
                                      ('queries_failed',), 'servers'),
}
# The key naming the item of a ``per`` list.
_ITEM_KEYS = {'network_stats': 'intf', 'servers': 'upstream_server'}

_CACHE_KEY = 'vsg.stats'


class VsgError(base.PollsterError):
    """A vSG's stats or the list of instances could not be read."""


def _get_json(url, timeout):
    try:
        response = requests.get(url, timeout=timeout,
                                headers={'Accept': 'application/json'})
        response.raise_for_status()
        return response.json()
    except (requests.RequestException, ValueError) as exc:
        raise VsgError(f'{url}: {exc}')


def _parse_instance_option(entry):
    vcpe_id, sep, url = entry.partition('=')
    if not sep or not vcpe_id.strip() or not url.strip():
        raise VsgError(f'[vsg] instances entry {entry!r} is not '
                       f'<vcpe id>=<stats URL>')
    return {'id': vcpe_id.strip(), 'url': url.strip(), 'project_id': None,
            'user_id': None}


class VsgInstances(base.Discovery):
    """The vSG service instances and the URL of each one's stats."""

    def discover(self, context, param=None):
        options = self.conf.vsg
        found = {}
        for entry in options.instances:
            instance = _parse_instance_option(entry)
            found[instance['id']] = instance
        if options.instances_url:
            listed = _get_json(options.instances_url, options.http_timeout)
            if isinstance(listed, dict):
                listed = listed.get('items')
            if not isinstance(listed, list):
                raise VsgError(f'{options.instances_url}: not a list of '
                               f'service instances')
            for item in listed:
                if not (isinstance(item, dict) and item.get('id')
                        and item.get('stats_url')):
                    LOG.warning('vSG instance %r skipped: it needs id and '
                                'stats_url', item)
                    continue
                found[str(item['id'])] = {
                    'id': str(item['id']), 'url': item['stats_url'],
                    'project_id': item.get('tenant_id'),
                    'user_id': item.get('user_id')}
        return [found[key] for key in sorted(found)]


def _number(value):
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class VsgPollster(base.Pollster):
    """One vSG meter (``self.meter``, the entry point's name)."""

    default_discovery = 'vsg_instances'

    def _stats(self, cache, instance):
        """The instance's stats document of this cycle, or None."""
        known = cache.setdefault(_CACHE_KEY, {})
        if instance['id'] not in known:
            try:
                document = _get_json(instance['url'],
                                     self.conf.vsg.http_timeout)
                if not isinstance(document, dict):
                    raise VsgError(f'{instance["url"]}: not a stats '
                                   f'document')
            except VsgError as exc:
                LOG.warning('vSG %s not polled: %s', instance['id'], exc)
                document = None
            known[instance['id']] = document
        return known[instance['id']]

    def get_samples(self, context, cache, resources):
        meter_type, unit, section, keys, per = METERS[self.meter]
        for instance in resources:
            document = self._stats(cache, instance)
            if document is None:
                continue
            vcpe_id = str(document.get('vcpe_id') or instance['id'])
            owner = {
                'project_id': document.get('tenant_id')
                or instance.get('project_id'),
                'user_id': document.get('user_id') or instance.get(
                    'user_id')}
            if section is None:
                yield self._sample(context, vcpe_id, 1, meter_type, unit,
                                   owner, instance)
                continue
            part = document.get(section)
            if not isinstance(part, dict):
                continue
            items = ([(None, part)] if per is None else
                     [(item.get(_ITEM_KEYS[per]), item)
                      for item in part.get(per) or ()
                      if isinstance(item, dict)])
            for suffix, item in items:
                volume = next((_number(item[key]) for key in keys
                               if item.get(key) is not None), None)
                if volume is None or (per is not None and not suffix):
                    continue
                resource_id = (vcpe_id if suffix is None
                               else f'{vcpe_id}-{suffix}')
                yield self._sample(context, resource_id, volume,
                                   meter_type, unit, owner, instance)

    def _sample(self, context, resource_id, volume, meter_type, unit,
                owner, instance):
        return self.make_sample(
            context, resource_id, volume, meter_type=meter_type, unit=unit,
            metadata={'vcpe_id': instance['id'],
                      'stats_url': instance['url'], 'host': context.host},
            **owner)
