"""Tenant subscriptions in tests: a channel and its subscriptions in a
store, and the durable queue of an amqp:// subscription read back."""

import json
import uuid

import kombu

from calipso_agent import subscriptions
from tests.helpers.bus import AMQP_URL


def make_channel(store, projects, channel_id=None):
    """A channel of ``projects`` stored in ``store``; its id."""
    channel_id = channel_id or f'channel-{uuid.uuid4()}'
    store.create_channel({'id': channel_id, 'name': channel_id,
                          'tenant_list': list(projects),
                          'state': 'active'})
    return channel_id


def store_subscription(store, channel_id, projects, body):
    """What the API stores for the CORD ``body`` of a channel; the
    record."""
    parsed = subscriptions.parse_body(body, frozenset(projects))
    record = dict(parsed, channel_id=channel_id,
                  id=subscriptions.subscription_id(channel_id,
                                                   parsed['app_id']))
    store.delete_subscription(record['id'])
    store.create_subscription(record)
    return record


def read_queue(name, url=AMQP_URL, limit=100000):
    """The JSON bodies waiting on queue ``name`` (acked: taken)."""
    out = []
    with kombu.Connection(url) as connection:
        channel = connection.default_channel
        while len(out) < limit:
            message = channel.basic_get(name, no_ack=True)
            if message is None:
                break
            out.append(json.loads(message.body))
    return out
