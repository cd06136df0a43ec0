"""Tenant subscriptions (publish/subscribe): their body, target and
matching, in one storage-free module.

A subscription comes in CORD's body ``{"app_id", "target", "sub_info",
"query"}``: ``sub_info`` a meter name, a pattern (``cpu_*``) or a list
of them; ``query`` a list of ``{"field", "op", "value"}`` terms, all of
which a sample must satisfy. The proxy checks and scopes it, the API
checks it again and stores it, the ``subscription`` publisher matches
samples with it. Nothing here imports the API, the store or a publisher:
the proxy uses it.

Security rules (DESIGN.md section 7):

* a term on the project names channel projects only (403 otherwise), and
  every stored query ends with ``project_id in <channel projects>``, so
  no query can match a foreign project's sample;
* the target's credentials (``user:password@``) are kept for delivery
  but never shown: ``redacted`` is what answers and logs carry.
"""

import fnmatch
import ipaddress
import json
import re
import socket
import urllib.parse
import uuid

from calipso_agent.wsgi import errors

# Operators of query terms, CORD's and Ceilometer's words.
OPERATORS = frozenset(('eq', 'ne', 'lt', 'le', 'gt', 'ge', 'in'))
OPERATOR_ALIASES = {'=': 'eq', '==': 'eq', '!=': 'ne', '<': 'lt',
                    '<=': 'le', '>': 'gt', '>=': 'ge'}
# Sample fields a term may name, with Ceilometer's and CORD's aliases.
FIELDS = ('name', 'type', 'unit', 'volume', 'user_id', 'project_id',
          'resource_id', 'timestamp', 'recorded_at', 'source', 'id')
FIELD_ALIASES = {'counter_name': 'name', 'meter': 'name',
                 'counter_type': 'type', 'counter_unit': 'unit',
                 'counter_volume': 'volume', 'project': 'project_id',
                 'user': 'user_id', 'resource': 'resource_id',
                 'message_id': 'id'}
METADATA_PREFIXES = ('resource_metadata.', 'metadata.')
PROJECT_FIELD = 'project_id'

TARGET_SCHEMES = frozenset(('udp', 'http', 'https', 'amqp'))
APP_ID = re.compile(r'[A-Za-z0-9_.:@-]{1,128}')
MAX_METERS = 100
MAX_TERMS = 50
MAX_TARGET_LENGTH = 2048
AMQP_QUEUE_PREFIX = 'calipso.subscription.'
SUBSCRIPTION_NAMESPACE = uuid.UUID('1b0a7f1e-5c55-4a9e-9a7b-6a62c3e2f1d4')


class SubscriptionError(errors.ClientError):
    """A subscription body that cannot be accepted (400)."""


def subscription_id(channel_id, app_id):
    """The stored id of a channel's ``app_id`` (a second subscribe with
    the same app_id replaces the first)."""
    return str(uuid.uuid5(SUBSCRIPTION_NAMESPACE, f'{channel_id}\n{app_id}'))


def amqp_queue(sub_id):
    """The broker queue of an ``amqp://`` subscription."""
    return AMQP_QUEUE_PREFIX + sub_id


# --- the body ----------------------------------------------------------------

def check_app_id(app_id):
    if not isinstance(app_id, str) or not APP_ID.fullmatch(app_id):
        raise SubscriptionError(
            'app_id must be 1 to 128 letters, digits or _.:@-')
    return app_id


def parse_meters(sub_info):
    """The meter names and patterns of ``sub_info`` (a string or a list
    of strings)."""
    meters = [sub_info] if isinstance(sub_info, str) else sub_info
    if (not isinstance(meters, list) or not meters
            or len(meters) > MAX_METERS
            or not all(isinstance(m, str) and m.strip() and len(m) <= 255
                       for m in meters)):
        raise SubscriptionError(
            f'sub_info must be a meter name or pattern, or a list of 1 to '
            f'{MAX_METERS} of them')
    return sorted({m.strip() for m in meters})


def canonical_field(field):
    """The sample field (or ``resource_metadata.<key>``) a term names;
    400 for anything else."""
    if not isinstance(field, str) or not field.strip():
        raise SubscriptionError('A query term needs a field')
    field = field.strip()
    for prefix in METADATA_PREFIXES:
        if field.startswith(prefix) and len(field) > len(prefix):
            return 'resource_metadata.' + field[len(prefix):]
    field = FIELD_ALIASES.get(field, field)
    if field not in FIELDS:
        raise SubscriptionError(
            f'Unknown query field {field!r}: a sample field '
            f'({", ".join(FIELDS)}) or resource_metadata.<key>')
    return field


def _scalar(value):
    return value is None or isinstance(value, (str, int, float, bool))


def parse_term(term):
    """One ``{"field", "op", "value"}`` term, canonical; 400 when bad."""
    if not isinstance(term, dict) or 'field' not in term or (
            'value' not in term):
        raise SubscriptionError('A query term is {"field", "op", "value"}')
    field = canonical_field(term['field'])
    op = term.get('op') or 'eq'
    if not isinstance(op, str):
        raise SubscriptionError(f'Unknown query operator {op!r}')
    op = OPERATOR_ALIASES.get(op.strip().lower(), op.strip().lower())
    if op not in OPERATORS:
        raise SubscriptionError(
            f'Unknown query operator {op!r} (one of '
            f'{", ".join(sorted(OPERATORS))})')
    value = term['value']
    if op == 'in':
        if isinstance(value, str):
            value = [v.strip() for v in value.split(',') if v.strip()]
        if not isinstance(value, list) or not value or not all(
                _scalar(v) for v in value):
            raise SubscriptionError('The value of "in" is a non-empty list '
                                    'or a comma-separated string')
    elif not _scalar(value):
        raise SubscriptionError(f'The value of {field} {op} must be a '
                                f'string, number or boolean')
    return {'field': field, 'op': op, 'value': value}


def parse_query(query):
    if query in (None, ''):
        return []
    if isinstance(query, dict):
        query = [query]
    if not isinstance(query, list) or len(query) > MAX_TERMS:
        raise SubscriptionError(f'query must be a list of at most '
                                f'{MAX_TERMS} terms')
    return [parse_term(term) for term in query]


def check_projects(terms, projects):
    """403 when a term on the project names one outside ``projects``,
    whatever its operator."""
    for term in terms:
        if term['field'] != PROJECT_FIELD:
            continue
        values = term['value'] if term['op'] == 'in' else [term['value']]
        for value in values:
            if value not in projects:
                raise errors.ForbiddenError(
                    f'Project {value} is not authorized for this channel '
                    f'(authorized: {", ".join(sorted(projects))})')


def scoped_terms(terms, projects):
    """The terms with the channel's project constraint, once, last."""
    scope = {'field': PROJECT_FIELD, 'op': 'in', 'value': sorted(projects)}
    return [t for t in terms if t != scope] + [scope]


def parse_body(body, projects):
    """The canonical subscription of a decoded CORD body, scoped to
    ``projects``: 400 for a bad body or target, 403 for a foreign
    project."""
    if not isinstance(body, dict):
        raise SubscriptionError('The body must be a JSON object')
    unknown = set(body) - {'app_id', 'target', 'sub_info', 'query'}
    if unknown:
        raise SubscriptionError(f'Unknown field(s): '
                                f'{", ".join(sorted(map(str, unknown)))}')
    for name in ('app_id', 'target', 'sub_info'):
        if name not in body:
            raise SubscriptionError(f'{name} is missing')
    app_id = check_app_id(body['app_id'])
    target = parse_target(body['target'])
    meters = parse_meters(body['sub_info'])
    terms = parse_query(body.get('query'))
    check_projects(terms, projects)
    return {'app_id': app_id, 'target': target.url, 'meters': meters,
            'query': scoped_terms(terms, projects),
            'projects': sorted(projects)}


def decode_json(raw):
    """A JSON request body, 400 when it is none."""
    if not raw or not raw.strip():
        raise SubscriptionError('The request body is missing (JSON '
                                'expected)')
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise SubscriptionError(f'The request body is not valid JSON: '
                                f'{exc}')


# --- targets -----------------------------------------------------------------

class Target:
    """A parsed target URL: ``url`` (with credentials, for delivery),
    ``redacted`` (without them), ``scheme``, ``host``, ``port``."""

    def __init__(self, url, scheme, host, port, redacted):
        self.url = url
        self.scheme = scheme
        self.host = host
        self.port = port
        self.redacted = redacted


def redact(url):
    """``url`` with any ``user:password@`` replaced by ``***@``."""
    if not isinstance(url, str):
        return repr(url)
    scheme, sep, rest = url.partition('://')
    if not sep:
        return url
    netloc, slash, path = rest.partition('/')
    if '@' in netloc:
        netloc = '***@' + netloc.rpartition('@')[2]
    return f'{scheme}://{netloc}{slash}{path}'


def parse_target(url):
    """The Target of a target URL; 400 for a scheme, host or port that
    cannot work (the message never holds the credentials)."""
    if not isinstance(url, str) or not url or len(url) > MAX_TARGET_LENGTH:
        raise SubscriptionError('target must be a URL of at most '
                                f'{MAX_TARGET_LENGTH} characters')
    shown = redact(url)
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise SubscriptionError(f'target {shown!r} holds spaces or '
                                'control characters')
    try:
        parsed = urllib.parse.urlsplit(url)
        port = parsed.port
    except ValueError:
        raise SubscriptionError(f'target {shown!r} is not a valid URL')
    scheme = parsed.scheme.lower()
    if scheme not in TARGET_SCHEMES:
        raise SubscriptionError(
            f'target {shown!r}: the scheme must be one of '
            f'{", ".join(sorted(TARGET_SCHEMES))}')
    host = parsed.hostname or ''
    if scheme == 'amqp':
        # The subscription's own queue on the service's broker: the URL
        # names nothing else.
        if parsed.netloc or parsed.path.strip('/') or parsed.query:
            raise SubscriptionError(
                f'target {shown!r}: amqp:// takes no host, path or query '
                '(samples go to a queue of the subscription on the '
                'service\'s broker)')
        return Target('amqp://', 'amqp', None, None, 'amqp://')
    if not host:
        raise SubscriptionError(f'target {shown!r} has no host')
    if scheme == 'udp':
        if port is None or port == 0:
            raise SubscriptionError(f'target {shown!r}: udp:// needs a '
                                    'port (udp://HOST:PORT)')
        if parsed.username is not None or parsed.path.strip('/') or (
                parsed.query):
            raise SubscriptionError(f'target {shown!r}: udp:// is '
                                    'udp://HOST:PORT, nothing more')
    elif port == 0:
        raise SubscriptionError(f'target {shown!r} has an invalid port')
    if parsed.fragment:
        raise SubscriptionError(f'target {shown!r} has a fragment')
    default_port = {'http': 80, 'https': 443}.get(scheme)
    return Target(url, scheme, host, port or default_port, shown)


def parse_networks(cidrs):
    """ip_network objects of ``[subscription] allowed_target_cidrs``."""
    return [ipaddress.ip_network(c.strip(), strict=False)
            for c in cidrs if c.strip()]


def check_target_address(target, networks, resolve=socket.getaddrinfo):
    """400 unless every address ``target``'s host resolves to lies in
    ``networks`` (no networks: any address; amqp://: the local broker,
    always). Returns the addresses."""
    if target.host is None:
        return []
    try:
        infos = resolve(target.host, target.port, 0, socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise SubscriptionError(f'target {target.redacted!r}: host '
                                f'{target.host!r} does not resolve')
    addresses = sorted({info[4][0] for info in infos})
    if networks:
        for address in addresses:
            ip = ipaddress.ip_address(address.split('%', 1)[0])
            if not any(ip in network for network in networks):
                raise SubscriptionError(
                    f'target {target.redacted!r}: address {address} is '
                    'not one targets may point to')
    return addresses


def public_view(subscription, counters=None):
    """What a tenant is shown of a stored subscription: no credentials,
    with its delivery counters."""
    counters = counters or {}
    view = {'app_id': subscription['app_id'],
            'target': redact(subscription['target']),
            'sub_info': subscription['meters'],
            'query': subscription['query'],
            'created_at': subscription.get('created_at'),
            'delivered': counters.get('delivered', 0),
            'dropped': counters.get('dropped', 0),
            'last_error': counters.get('last_error')}
    if subscription['target'].startswith('amqp:'):
        view['queue'] = amqp_queue(subscription['id'])
    return view


# --- matching ----------------------------------------------------------------

def _sample_value(sample, field):
    if field.startswith('resource_metadata.'):
        value = sample.resource_metadata
        for key in field[len('resource_metadata.'):].split('.'):
            if not isinstance(value, dict) or key not in value:
                return _MISSING
            value = value[key]
        return value
    return getattr(sample, field, _MISSING)


_MISSING = object()


def _comparable(left, right):
    """(left, right) made comparable: numbers as floats when both are
    (or read as) numbers, else both as text."""
    if isinstance(left, bool) or isinstance(right, bool):
        return str(left).lower(), str(right).lower()
    if isinstance(left, (int, float)) or isinstance(right, (int, float)):
        try:
            return float(left), float(right)
        except (TypeError, ValueError):
            return None, None
    if left is None or right is None:
        return left, right
    return str(left), str(right)


def _term_matches(sample, term):
    actual = _sample_value(sample, term['field'])
    if actual is _MISSING:
        return False
    op, expected = term['op'], term['value']
    if op == 'in':
        return any(_term_matches(sample, {'field': term['field'],
                                          'op': 'eq', 'value': v})
                   for v in expected)
    left, right = _comparable(actual, expected)
    if op == 'eq':
        return left == right
    if op == 'ne':
        return left != right
    if left is None or right is None or type(left) is not type(right):
        return False
    return {'lt': left < right, 'le': left <= right, 'gt': left > right,
            'ge': left >= right}[op]


class Matcher:
    """A stored subscription compiled for the publisher: its meter
    names and patterns, its terms, its projects."""

    def __init__(self, subscription):
        self.id = subscription['id']
        self.channel_id = subscription.get('channel_id')
        self.target = subscription['target']
        self.projects = frozenset(subscription.get('projects') or ())
        self.names = frozenset(m for m in subscription['meters']
                               if not _is_pattern(m))
        patterns = [m for m in subscription['meters'] if _is_pattern(m)]
        self.pattern = (re.compile('|'.join(fnmatch.translate(p)
                                            for p in patterns))
                        if patterns else None)
        self.terms = [parse_term(t) for t in subscription['query']]
        # The channel's scope term is what ``projects`` checks first.
        scope = {'field': PROJECT_FIELD, 'op': 'in',
                 'value': sorted(self.projects)}
        self._checked = [t for t in self.terms if t != scope]

    def selects_meter(self, name):
        return name in self.names or (
            self.pattern is not None and self.pattern.match(name)
            is not None)

    def matches(self, sample):
        """Whether ``sample`` goes to this subscription: never a sample
        of a project outside its channel, whatever its terms."""
        if sample.project_id not in self.projects:
            return False
        for term in self._checked:
            if not _term_matches(sample, term):
                return False
        return True


def _is_pattern(meter):
    return any(c in meter for c in '*?[')


class MatcherIndex:
    """Matchers indexed by project and meter name (patterns apart): every
    subscription is limited to its channel's projects, so a sample is
    tried against the subscriptions of its project and meter only."""

    def __init__(self, matchers):
        self.by_key = {}
        self.with_patterns = {}
        for matcher in matchers:
            for project in matcher.projects:
                for name in matcher.names:
                    self.by_key.setdefault((project, name), []).append(
                        matcher)
                if matcher.pattern is not None:
                    self.with_patterns.setdefault(project, []).append(
                        matcher)
        self._cache = {}

    def __bool__(self):
        return bool(self.by_key or self.with_patterns)

    def candidates(self, project, name):
        key = (project, name)
        found = self._cache.get(key)
        if found is None:
            found = self.by_key.get(key, []) + [
                m for m in self.with_patterns.get(project, ())
                if m.selects_meter(name) and name not in m.names]
            if len(self._cache) < 100000:
                self._cache[key] = found
        return found

    def matching(self, sample):
        """The matchers ``sample`` goes to."""
        return [m for m in self.candidates(sample.project_id, sample.name)
                if m.matches(sample)]
