"""/v2/subscribe (and CORD's /subscribe, /unsubscribe): a channel's
tenant subscriptions.

The channel is named in ``X-Calipso-Channel`` by its proxy. The proxies'
reader role may act on the subscriptions of a channel whose projects are
exactly its (signed) project scope, and on no other: the one write a
reader may make. An admin may act on any existing channel. Anyone else is
refused (403). Bodies are checked here again, whatever the proxy did:
a project outside the channel is refused (403), every stored query ends
with the channel's projects, a target outside ``[subscription]
allowed_target_cidrs`` is refused (400).
"""

import datetime
import logging

from calipso_agent import project_scope, subscriptions
from calipso_agent.api.context import Reply
from calipso_agent.storage import base as storage_base
from calipso_agent.wsgi import errors

LOG = logging.getLogger(__name__)


def _channel(ctx):
    """The channel of the request, after checking the caller may act on
    its subscriptions."""
    identity = ctx.identity
    if not (identity.is_admin or identity.is_reader):
        raise errors.ForbiddenError('RBAC Authorization Failed: '
                                    'subscriptions are made through a '
                                    'channel\'s proxy')
    channel_id = (ctx.request.headers.get(project_scope.CHANNEL_HEADER)
                  or '').strip()
    if not channel_id:
        raise errors.ClientError(f'{project_scope.CHANNEL_HEADER} is '
                                 f'missing')
    found = ctx.storage.get_channels(ids=[channel_id])
    if identity.is_reader:
        scope = identity.reader_scope()
        if not found or frozenset(found[0].get('tenant_list') or ()) != (
                scope):
            raise errors.ForbiddenError(
                'RBAC Authorization Failed: the declared project scope is '
                'not the channel\'s')
    elif not found:
        raise errors.NotFoundError(f'Channel {channel_id} Not Found')
    channel = found[0]
    if not channel.get('tenant_list'):
        raise errors.ForbiddenError(f'Channel {channel_id} has no project')
    return channel


def list_subscriptions(ctx):
    channel = _channel(ctx)
    stored = ctx.storage.get_subscriptions(channel_id=channel['id'])
    counters = ctx.storage.get_subscription_counters(
        ids=[s['id'] for s in stored])
    return [subscriptions.public_view(s, counters.get(s['id']))
            for s in stored]


def subscribe(ctx):
    channel = _channel(ctx)
    parsed = subscriptions.parse_body(ctx.json_body(),
                                      frozenset(channel['tenant_list']))
    target = subscriptions.parse_target(parsed['target'])
    subscriptions.check_target_address(
        target, subscriptions.parse_networks(
            ctx.conf.subscription.allowed_target_cidrs))
    record = dict(parsed, id=subscriptions.subscription_id(
        channel['id'], parsed['app_id']), channel_id=channel['id'],
        created_at=datetime.datetime.now(datetime.UTC).isoformat())
    for attempt in (1, 2):
        ctx.storage.delete_subscription(record['id'])
        try:
            ctx.storage.create_subscription(record)
            break
        except storage_base.StorageError:
            # A concurrent subscribe of the same app_id: last one wins.
            if attempt == 2:
                raise
    LOG.info('Channel %s: subscription %s of app %s to %s (%s)',
             channel['id'], record['id'], record['app_id'],
             ','.join(record['meters']), target.redacted)
    return Reply(201, subscriptions.public_view(record))


def _unsubscribe(ctx, app_id):
    channel = _channel(ctx)
    subscriptions.check_app_id(app_id)
    sub_id = subscriptions.subscription_id(channel['id'], app_id)
    if not ctx.storage.delete_subscription(sub_id):
        raise errors.NotFoundError(f'Subscription {app_id} Not Found')
    LOG.info('Channel %s: subscription %s of app %s deleted',
             channel['id'], sub_id, app_id)
    return {'app_id': app_id, 'unsubscribed': True}


def unsubscribe(ctx, app_id):
    return _unsubscribe(ctx, app_id)


def unsubscribe_body(ctx):
    """CORD's POST /unsubscribe ``{"app_id"}``."""
    body = ctx.json_body()
    if not isinstance(body, dict) or 'app_id' not in body:
        raise errors.ClientError('The body must be {"app_id": ...}')
    return _unsubscribe(ctx, body['app_id'])
