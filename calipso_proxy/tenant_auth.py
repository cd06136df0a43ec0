"""TenantAuth: who may use a channel's proxy.

A tenant presents, in ``X-Auth-Token``, either the channel token issued
when the channel was created (the proxy knows only its SHA-256) or a
Keystone token scoped to one of the channel's projects, validated
against Keystone with the service session and trusted for
``keystone_token_cache_time`` seconds (never beyond its expiry).
"""

import collections
import datetime
import hashlib
import hmac
import logging
import threading
import time

from keystoneauth1 import exceptions as ks_exceptions

from calipso_agent.api import errors

LOG = logging.getLogger(__name__)

TOKEN_HEADER = 'X-Auth-Token'
CACHE_SIZE = 4096


class IdentityUnavailable(errors.APIError):
    """Keystone could not say whether a token is valid: retry later."""

    code = 503


def token_hash(token):
    """The hash under which a channel token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


class TenantAuth:
    def __init__(self, scope, channel_token_hash, session=None,
                 accept_keystone_tokens=True, cache_time=60,
                 clock=time.monotonic):
        self.scope = scope
        self.channel_token_hash = channel_token_hash or None
        self.session = session
        self.accept_keystone_tokens = (
            accept_keystone_tokens and session is not None
            and session.auth is not None)
        self.cache_time = cache_time
        self.clock = clock
        self._cache = collections.OrderedDict()
        self._lock = threading.Lock()

    def check(self, headers):
        """Return quietly for an authorized tenant; 401 otherwise."""
        token = headers.get(TOKEN_HEADER)
        if not token:
            raise errors.UnauthorizedError('Authentication required: '
                                           'X-Auth-Token is missing')
        digest = token_hash(token)
        if self.channel_token_hash is not None and hmac.compare_digest(
                digest, self.channel_token_hash):
            return
        if self.accept_keystone_tokens and self._keystone_project_ok(
                token, digest):
            return
        raise errors.UnauthorizedError('The token is not valid for this '
                                       'channel')

    def _keystone_project_ok(self, token, digest):
        now = self.clock()
        with self._lock:
            cached = self._cache.get(digest)
            if cached is not None and cached[1] > now:
                return cached[0]
        verdict, lifetime = self._validate(token)
        with self._lock:
            self._cache[digest] = (verdict, now + min(self.cache_time,
                                                      lifetime))
            self._cache.move_to_end(digest)
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return verdict

    def _validate(self, token):
        """(authorized, seconds the verdict may be kept)."""
        try:
            response = self.session.get(
                '/auth/tokens', headers={'X-Subject-Token': token},
                endpoint_filter={'service_type': 'identity',
                                 'interface': 'public',
                                 'version': (3, 0)},
                raise_exc=False)
        except ks_exceptions.ClientException as exc:
            LOG.warning('Cannot validate a Keystone token: %s', exc)
            raise IdentityUnavailable('Keystone is unreachable: the token '
                                  'cannot be validated')
        if response.status_code in (401, 404):
            return False, self.cache_time
        if response.status_code != 200:
            LOG.warning('Keystone answered %s to a token validation',
                        response.status_code)
            raise IdentityUnavailable('Keystone could not validate the token')
        body = response.json().get('token', {})
        project = (body.get('project') or {}).get('id')
        lifetime = self.cache_time
        expires = body.get('expires_at')
        if expires:
            try:
                left = (datetime.datetime.fromisoformat(
                    expires.replace('Z', '+00:00')) - datetime.datetime.now(
                        datetime.UTC)).total_seconds()
                lifetime = max(0.0, min(lifetime, left))
            except ValueError:
                lifetime = 0
        authorized = project is not None and project in self.scope
        if not authorized:
            LOG.info('Keystone token of project %s refused: not one of '
                     'the channel\'s', project)
        return authorized, lifetime
