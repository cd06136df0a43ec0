"""Inventory changes of the shared notification fixtures, and graphs of a
store to compare."""

import functools

from calipso_agent import inventory
from calipso_agent.notification import base
from calipso_agent.notification import inventory as endpoint_mod
from tests.helpers import basics, fixtures


@functools.cache
def endpoint():
    return endpoint_mod.InventoryEndpoint(basics.make_conf())


def handled_fixtures():
    """(name, notification) of every fixture the endpoint handles, in
    the order they were sent (their timestamps; name among equals)."""
    found = []
    for name in fixtures.fixture_names():
        envelope = fixtures.load_envelope(name)
        _, notification = base.from_envelope(envelope)
        if not endpoint().handles(notification['event_type']):
            continue
        try:
            at = inventory.timestamp(notification['metadata']['timestamp'])
        except ValueError:
            at = ''
        found.append((at, name, notification))
    return [(name, n) for _, name, n in sorted(found, key=lambda f: f[:2])]


def changes_of(notification):
    """The endpoint's changes of one notification; [] when it refuses it
    (a malformed one)."""
    try:
        return endpoint().inventory_changes(notification)
    except base.NotificationError:
        return []


def split(changes):
    """(objects, links) of a list of changes."""
    objects = [c for c in changes
               if 'link_type' not in c and 'close_links' not in c]
    links = [c for c in changes if 'link_type' in c or 'close_links' in c]
    return objects, links


def graph(connection, created=True):
    """(objects by id, links by triple) as stored; without created_at
    unless ``created`` (without a source's creation time it is the first
    event applied, so it depends on the arrival order)."""
    def kept(item):
        item = dict(item)
        if not created:
            item.pop('created_at', None)
        return item
    return ({o['id']: kept(o) for o in connection.get_inventory()},
            {inventory.link_key(lk): kept(lk)
             for lk in connection.get_links()})
