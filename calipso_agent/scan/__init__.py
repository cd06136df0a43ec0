"""The inventory scan: the cloud as its APIs list it, merged into the graph.

* ``client``: a keystoneauth1 session on ``[service_credentials]``, the
  catalog lookup (service type, region, interface) and the paging of each
  API (``limit``/``marker`` and the ``next`` links);
* ``collectors``: what each service lists (compute, network, volume,
  identity), as the APIs' bodies;
* ``mapping``: those bodies made into inventory objects and links
  (``calipso_agent.inventory``'s builders);
* ``reconcile``: what the store has and the cloud no longer has, inside the
  scanned scope, as tombstones and closed links;
* ``scanner``: ``scan(conf, store)``, one run of it all, called by
  ``calipso-inventory-scan`` and by a pollster.

doc/inventory-scan.md describes the mapping and the scope of deletions.
"""
