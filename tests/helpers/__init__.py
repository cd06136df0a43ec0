"""Helpers of the tests and benchmarks, one module per kind:

* ``basics``: A parsed configuration, samples, publishers, waiting, ports
  and files: what most tests need.
* ``fixtures``: The shared notification fixtures (../shared/fixtures) and
  the comparison of samples with what Ceilometer made of them.
* ``bus``: The real RabbitMQ: queues, publishing notifications with
  oslo.messaging's Notifier, raw messages, dead letters.
* ``receivers``: What publishers send to: a UDP socket and an HTTP server
  that collect samples, an HTTP server that never answers.
* ``pubsub``: Tenant subscriptions: channels and subscriptions in a
  store, the queue of an amqp:// subscription read back.
* ``daemons``: The daemons as processes of their own (agent, collector, API,
  proxy) with the configuration the tests give them.
* ``oracle``: The test oracle of the storage contract: ordering, complex
  queries and statistics computed in plain Python over samples.
* ``databases``: Databases of a test of its own: a private PostgreSQL
  server, a database on the shared one.
* ``identity``: a real Keystone on a loopback port.
* ``openstack_cloud``: a fake OpenStack cloud (compute, network, volume,
  image APIs answering like the real ones) for a real Keystone's catalog.
* ``libvirt_node``: a node of libvirt's test driver holding nova
  instances (``test:///<path>``), for the compute pollsters.
* ``inventory``: inventory graphs as the contract has them
  (doc/inventory.md): a small two-project cloud with its
  infrastructure, and a host with many instances (the benchmark's).
"""
