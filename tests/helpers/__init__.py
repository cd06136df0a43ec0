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
"""
