"""The outbox: retried publishes store each polled sample once."""

import urllib.parse

from calipso_agent import storage
from calipso_agent.pollsters import outbox
from calipso_agent.publisher import base as publisher_base
from calipso_agent.publisher import database
from tests.helpers import polling
from tests.helpers.basics import make_conf


class FailingOnceDatabase(database.DatabasePublisher):
    """database:// that stores half of its first batches, then fails."""

    failures = 2

    def publish_samples(self, samples):
        if self.failures:
            self.failures -= 1
            super().publish_samples(samples[:len(samples) // 2])
            raise publisher_base.PublisherError('store went away')
        return super().publish_samples(samples)


def test_retried_publish_stores_each_sample_once(tmp_path):
    conf = make_conf(database__connection=f'sqlite:///{tmp_path}/s.sqlite')
    store = storage.get_connection(conf)
    store.upgrade()
    publisher = FailingOnceDatabase(conf, urllib.parse.urlparse(
        'database://'))
    box = outbox.Outbox(publisher.publish_samples, batch_size=6,
                        backoff=(0.01, 0.05))
    box.start()
    polled = [polling.make_polled('load.1', f'host-{i}',
                                  '2026-12-06T06:00:00+00:00', volume=i)
              for i in range(10)]
    box.put(polled)
    assert box.wait_idle(20)
    box.stop(1)
    stored = list(store.get_samples())
    assert sorted(s.resource_id for s in stored) == sorted(
        s.resource_id for s in polled)
    assert publisher.failures == 0


def test_refused_sample_is_isolated_the_others_published():
    kept = []

    def publish(samples):
        if any(s.resource_id == 'bad' for s in samples):
            raise publisher_base.PublisherDataError('refused')
        kept.extend(samples)

    box = outbox.Outbox(publish, batch_size=8, backoff=(0.01, 0.05))
    box.start()
    polled = [polling.make_polled('cpu', r, '2026-12-06T06:00:00+00:00')
              for r in ('a', 'b', 'bad', 'c', 'd')]
    box.put(polled)
    assert box.wait_idle(20)
    box.stop(1)
    assert sorted(s.resource_id for s in kept) == ['a', 'b', 'c', 'd']
