"""BackendClient: the proxy's only way to the query API.

Requests carry a token of the channel's service user from a keystoneauth1
session built from ``[service_credentials]`` (password, application
credential or any other plugin): keystoneauth caches the token and
renews it before it expires; a 401 from the backend (a revoked token)
makes keystoneauth authenticate again and send the request once more.
Without an auth plugin (a development backend on its noauth pipeline)
requests carry no token.

Every request also names the channel's projects in
``X-Calipso-Project-Scope``, taken from ``[proxy] authorized_projects``
and never from the tenant's request, with the controller's signature of
them (``[proxy] scope_signature``): the API reads nothing outside them
for the proxies' reader role, whatever the forwarded query says
(calipso_agent/project_scope.py).
"""

import logging

from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1 import loading as ks_loading
from keystoneauth1 import session as ks_session

from calipso_agent import project_scope
from calipso_proxy import opts

LOG = logging.getLogger(__name__)

# Request headers passed on to the backend (never the tenant's token).
FORWARDED_HEADERS = ('Accept', 'Content-Type', 'X-OpenStack-Request-ID')


class BackendError(Exception):
    """The backend could not be reached or refused the service user."""


class BackendResponse:
    __slots__ = ('status', 'content_type', 'body')

    def __init__(self, status, content_type, body):
        self.status = status
        self.content_type = content_type
        self.body = body


def load_session(conf):
    """A keystoneauth1 Session of ``[service_credentials]`` (its auth
    plugin is None when no ``auth_type`` is configured)."""
    group = opts.SERVICE_CREDENTIALS
    auth = ks_loading.load_auth_from_conf_options(conf, group)
    return ks_loading.load_session_from_conf_options(conf, group, auth=auth)


class BackendClient:
    """Forwards requests to ``[proxy] backend_url``."""

    def __init__(self, conf, session=None):
        self.base_url = conf.proxy.backend_url.rstrip('/')
        self.timeout = conf.proxy.backend_timeout
        self.scope_headers = {
            project_scope.HEADER: project_scope.header_value(
                conf.proxy.authorized_projects)}
        if conf.proxy.channel_id:
            self.scope_headers[project_scope.CHANNEL_HEADER] = (
                conf.proxy.channel_id)
        if conf.proxy.scope_signature:
            self.scope_headers[project_scope.SIGNATURE_HEADER] = (
                conf.proxy.scope_signature)
        self.session = session or load_session(conf)
        if self.session is None:
            self.session = ks_session.Session()

    def request(self, method, path, params=(), body=None, headers=None):
        """The backend's answer to ``method path?params``; BackendError
        when it cannot be had."""
        sent = {name: value for name, value in (headers or {}).items()
                if name in FORWARDED_HEADERS}
        sent.update(self.scope_headers)
        authenticated = self.session.auth is not None
        try:
            # keystoneauth invalidates a refused token and sends the
            # request once more with a new one (allow_reauth).
            response = self.session.request(
                self.base_url + path, method, params=list(params),
                data=body, headers=sent, raise_exc=False,
                timeout=self.timeout, authenticated=authenticated,
                allow_reauth=True, connect_retries=1, logger=LOG)
        except ks_exceptions.ClientException as exc:
            raise BackendError(f'{type(exc).__name__}: {exc}')
        if response.status_code == 401 and authenticated:
            raise BackendError('the backend refuses the service '
                               'credentials (401)')
        return BackendResponse(response.status_code,
                               response.headers.get('Content-Type', ''),
                               response.content)
