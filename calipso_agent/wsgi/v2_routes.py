"""The v2 API's route table, declared once: each path, its methods, the
API handler of each (by name) and what a channel's proxy does with it.

It lives in the web layer, not in ``calipso_agent.api``, because a
channel's proxy builds its routing from it and must import nothing of
the API (its handlers pull in the store). The API binds the names to its
handlers (api/v2/__init__.py; an unknown name fails at import), the
proxy keeps the kinds (proxy/proxy/app.py). A new endpoint is declared
here with a proxy kind, so the proxy either scopes it or refuses it.
The topology page's static files (/ui/, wsgi/static_files.py) are not
API routes: the paste pipelines of the API and of the proxy answer them
before authentication, as they do /healthcheck.

Proxy kinds:

* ``LIST``: items each with a project_id; the query string gains the
  channel's project scope, every item of the answer is checked;
* ``ITEM``: one such object read by id (404 outside the scope);
* ``STATISTICS``: statistics, scoped as a list, checked when grouped by
  project;
* ``QUERY``: a complex query body, scoped with ``and``;
* ``INVENTORY``: inventory objects, links and graphs
  (doc/inventory-api.md): forwarded with their query string, a
  project_id naming a project outside the channel refused (403); the API
  reads them in the channel's projects only (the reader's declared
  scope); every object and link of the answer is checked: of a channel
  project, or an opaque infrastructure node (type and state only);
* ``PUBLIC``: no project data, forwarded as is;
* ``SUBSCRIBE``: the channel's subscriptions (the only writes through
  a proxy): a body is checked and gains the channel's project
  constraint (calipso_agent/subscriptions.py), CORD's paths are
  forwarded as their /v2/subscribe equivalents, and the channel is named
  to the API;
* ``REFUSED``: not through a proxy: 405 when the path has proxied
  methods, else 404, as for a path the API does not have.
"""

import collections

LIST = 'list'
ITEM = 'item'
STATISTICS = 'statistics'
QUERY = 'query'
INVENTORY = 'inventory'
PUBLIC = 'public'
SUBSCRIBE = 'subscribe'
REFUSED = 'refused'
PROXY_KINDS = frozenset((LIST, ITEM, STATISTICS, QUERY, INVENTORY, PUBLIC,
                         SUBSCRIBE,
                         REFUSED))

OPENAPI_PATH = '/v2/openapi.json'

# ``handler``: a function of calipso_agent.api.v2, as ``module.function``
# of that package or a name of the package itself; ``proxy``: a kind.
Endpoint = collections.namedtuple('Endpoint', 'handler proxy')


class Declaration:
    """A path template (router.Route's syntax), its Endpoint per method,
    and whether the API answers it without authentication."""

    def __init__(self, template, endpoints, public=False):
        for endpoint in endpoints.values():
            if endpoint.proxy not in PROXY_KINDS:
                raise ValueError(f'{template}: unknown proxy kind '
                                 f'{endpoint.proxy!r}')
        self.template = template
        self.endpoints = dict(endpoints)
        self.public = public


ROUTES = (
    Declaration('/v2/meters', {
        'GET': Endpoint('meters.list_meters', LIST)}),
    Declaration('/v2/meters/{meter_name}/statistics', {
        'GET': Endpoint('meters.statistics', STATISTICS)}),
    Declaration('/v2/meters/{meter_name}', {
        'GET': Endpoint('meters.list_samples', LIST),
        'POST': Endpoint('meters.post_samples', REFUSED)}),
    Declaration('/v2/samples', {
        'GET': Endpoint('samples.list_samples', LIST)}),
    Declaration('/v2/samples/{sample_id:path}', {
        'GET': Endpoint('samples.get_sample', ITEM)}),
    Declaration('/v2/resources', {
        'GET': Endpoint('resources.list_resources', LIST)}),
    Declaration('/v2/resources/{resource_id:path}', {
        'GET': Endpoint('resources.get_resource', ITEM)}),
    Declaration('/v2/query/samples', {
        'POST': Endpoint('query.query_samples', QUERY)}),
    Declaration('/v2/inventory', {
        'GET': Endpoint('inventory.list_objects', INVENTORY)}),
    Declaration('/v2/inventory/{object_id}', {
        'GET': Endpoint('inventory.get_object', INVENTORY)}),
    Declaration('/v2/inventory/{object_id}/links', {
        'GET': Endpoint('inventory.get_links', INVENTORY)}),
    Declaration('/v2/inventory/{object_id}/clique', {
        'GET': Endpoint('inventory.get_clique', INVENTORY)}),
    Declaration('/v2/inventory/{object_id}/impact', {
        'GET': Endpoint('inventory.get_impact', INVENTORY)}),
    Declaration('/v2/inventory/{object_id}/path', {
        'GET': Endpoint('inventory.get_path', INVENTORY)}),
    Declaration('/v2/topology', {
        'GET': Endpoint('inventory.get_topology', INVENTORY)}),
    Declaration('/v2/capabilities', {
        'GET': Endpoint('capabilities.get_capabilities', PUBLIC)}),
    # The probing level of every polling agent: admins only, never
    # through a channel's proxy.
    Declaration('/v2/polling/sources', {
        'GET': Endpoint('polling.list_sources', REFUSED)}),
    Declaration('/v2/polling/sources/{name}', {
        'PUT': Endpoint('polling.put_source', REFUSED),
        'DELETE': Endpoint('polling.delete_override', REFUSED)}),
    Declaration('/v2/subscribe', {
        'GET': Endpoint('subscriptions.list_subscriptions', SUBSCRIBE),
        'POST': Endpoint('subscriptions.subscribe', SUBSCRIBE)}),
    Declaration('/v2/subscribe/{app_id}', {
        'DELETE': Endpoint('subscriptions.unsubscribe', SUBSCRIBE)}),
    # CORD's paths, for its applications as they are.
    Declaration('/subscribe', {
        'POST': Endpoint('subscriptions.subscribe', SUBSCRIBE)}),
    Declaration('/unsubscribe', {
        'POST': Endpoint('subscriptions.unsubscribe_body', SUBSCRIBE)}),
    # The documents name the backend's own address: not through a proxy.
    Declaration(OPENAPI_PATH, {
        'GET': Endpoint('openapi_document', REFUSED)}, public=True),
    Declaration('/', {
        'GET': Endpoint('versions_document', REFUSED)}, public=True),
)
