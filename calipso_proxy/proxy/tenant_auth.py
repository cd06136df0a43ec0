"""TenantAuth: who may use a channel's proxy.

A tenant presents, in ``X-Auth-Token``, either the channel token issued
when the channel was created (the proxy knows only its SHA-256) or a
Keystone token scoped to one of the channel's projects, validated
against Keystone with the service session and trusted for
``keystone_token_cache_time`` seconds (never beyond its expiry).

A Keystone lookup holds one of the proxy's threads for as long as
Keystone takes, so a client without a valid token must not be able to
make many (DESIGN.md section 7):

1. the channel token is checked first (one hash);
2. a token of neither format (charset, length) is refused at once;
3. verdicts are cached: a valid token for ``keystone_token_cache_time``,
   a refused one for ``negative_cache_time``;
4. a client address that failed ``failed_auth_burst`` times recently is
   answered 429 until it earns a new try (``failed_auth_rate`` a second);
5. at most ``max_identity_lookups`` lookups run at once per worker
   process; past that, 503 with Retry-After, so most threads stay free
   for tenants and the healthcheck.
"""

import collections
import datetime
import hashlib
import hmac
import logging
import math
import re
import threading
import time

from keystoneauth1 import exceptions as ks_exceptions

from calipso_agent.wsgi import errors

LOG = logging.getLogger(__name__)

TOKEN_HEADER = 'X-Auth-Token'
CACHE_SIZE = 4096
CLIENTS_TRACKED = 4096
# Keystone tokens: fernet and JWS (base64url, dots, padding) or UUID
# (hex). Anything else is refused without asking Keystone.
KEYSTONE_TOKEN = re.compile(r'[A-Za-z0-9_.=-]{32,2048}')
LOOKUP_RETRY_AFTER = 1
# A lookup holds a thread and a place among max_identity_lookups: a
# Keystone that hangs must not keep them.
LOOKUP_TIMEOUT = 10


class IdentityUnavailable(errors.APIError):
    """Keystone could not say whether a token is valid: retry later."""

    code = 503


class TooManyFailures(errors.ClientError):
    code = 429


def token_hash(token):
    """The hash under which a channel token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


class VerdictCache:
    """Bounded LRU of token digest -> (verdict, clock of its expiry)."""

    def __init__(self, size, clock):
        self.size = size
        self.clock = clock
        self._items = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, digest):
        with self._lock:
            cached = self._items.get(digest)
            if cached is None:
                return None
            if cached[1] <= self.clock():
                del self._items[digest]
                return None
            return cached[0]

    def put(self, digest, verdict, seconds):
        if seconds <= 0 or self.size <= 0:
            return
        with self._lock:
            self._items[digest] = (verdict, self.clock() + seconds)
            self._items.move_to_end(digest)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


class FailureLimiter:
    """A token bucket of failed authentications per client address:
    ``burst`` tries, one more every 1/``rate`` seconds."""

    def __init__(self, burst, rate, clock, size=CLIENTS_TRACKED):
        self.burst = burst
        self.rate = rate
        self.clock = clock
        self.size = size
        self._buckets = collections.OrderedDict()
        self._lock = threading.Lock()

    def _level(self, client, now):
        tokens, since = self._buckets.get(client, (self.burst, now))
        return min(self.burst, tokens + (now - since) * self.rate)

    def check(self, client):
        """429 while ``client`` has no try left."""
        if self.burst <= 0 or client is None:
            return
        now = self.clock()
        with self._lock:
            tokens = self._level(client, now)
        if tokens < 1:
            wait = math.ceil((1 - tokens) / self.rate) if self.rate else 60
            raise TooManyFailures(
                'Too many failed authentications from this address; '
                f'retry in {wait}s', headers={'Retry-After': str(wait)})

    def failed(self, client):
        if self.burst <= 0 or client is None:
            return
        now = self.clock()
        with self._lock:
            self._buckets[client] = (self._level(client, now) - 1, now)
            self._buckets.move_to_end(client)
            while len(self._buckets) > self.size:
                self._buckets.popitem(last=False)


class TenantAuth:
    def __init__(self, scope, channel_token_hash, session=None,
                 accept_keystone_tokens=True, cache_time=60,
                 negative_cache_time=10, negative_cache_size=CACHE_SIZE,
                 max_lookups=4, failed_auth_burst=20, failed_auth_rate=1.0,
                 clock=time.monotonic):
        self.scope = scope
        self.channel_token_hash = channel_token_hash or None
        self.session = session
        self.accept_keystone_tokens = (
            accept_keystone_tokens and session is not None
            and session.auth is not None)
        self.cache_time = cache_time
        self.negative_cache_time = negative_cache_time
        self._valid = VerdictCache(CACHE_SIZE, clock)
        self._refused = VerdictCache(negative_cache_size, clock)
        self._lookups = threading.BoundedSemaphore(max_lookups)
        self.limiter = FailureLimiter(failed_auth_burst, failed_auth_rate,
                                      clock)

    @classmethod
    def from_conf(cls, conf, scope, session):
        proxy = conf.proxy
        return cls(scope, proxy.token_hash, session,
                   proxy.accept_keystone_tokens,
                   proxy.keystone_token_cache_time,
                   proxy.negative_cache_time, proxy.negative_cache_size,
                   proxy.max_identity_lookups, proxy.failed_auth_burst,
                   proxy.failed_auth_rate)

    def check(self, headers, client=None):
        """Return quietly for an authorized tenant; 401 otherwise (429 or
        503 when it cannot be said now). ``client``: the remote
        address."""
        token = headers.get(TOKEN_HEADER)
        if not token:
            raise errors.UnauthorizedError('Authentication required: '
                                           'X-Auth-Token is missing')
        digest = token_hash(token)
        if self.channel_token_hash is not None and hmac.compare_digest(
                digest, self.channel_token_hash):
            return
        if self.accept_keystone_tokens and self._valid.get(digest):
            return
        self.limiter.check(client)
        if (not self.accept_keystone_tokens
                or not KEYSTONE_TOKEN.fullmatch(token)
                or self._refused.get(digest)
                or not self._keystone_project_ok(token, digest)):
            self.limiter.failed(client)
            raise errors.UnauthorizedError('The token is not valid for '
                                           'this channel')

    def _keystone_project_ok(self, token, digest):
        if not self._lookups.acquire(blocking=False):
            raise IdentityUnavailable(
                'Too many token validations in progress; retry later',
                headers={'Retry-After': str(LOOKUP_RETRY_AFTER)})
        try:
            verdict, lifetime = self._validate(token)
        finally:
            self._lookups.release()
        if verdict:
            self._valid.put(digest, True, lifetime)
        else:
            self._refused.put(digest, True, self.negative_cache_time)
        return verdict

    def _validate(self, token):
        """(authorized, seconds the verdict may be kept)."""
        try:
            response = self.session.get(
                '/auth/tokens', headers={'X-Subject-Token': token},
                endpoint_filter={'service_type': 'identity',
                                 'interface': 'public',
                                 'version': (3, 0)},
                raise_exc=False, timeout=LOOKUP_TIMEOUT)
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
