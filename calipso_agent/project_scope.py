"""The channel's project scope as a proxy declares it to the API, signed.

The controller signs each channel's project list with ``[api]
scope_signing_key`` (which the API and the controller share, and no proxy
holds) and writes the signature into the proxy's configuration; the
proxy sends both with every request (``HEADER``, ``SIGNATURE_HEADER``);
the API reads nothing outside a reader's declared projects and, when it
has the key, believes the declaration only with its signature. A proxy
(or a stolen ``proxy.conf``) can thus present only the scope it was
given, never a wider one.
"""

import hashlib
import hmac

HEADER = 'X-Calipso-Project-Scope'
SIGNATURE_HEADER = 'X-Calipso-Scope-Signature'
# The channel a proxy serves, for its subscriptions: the API believes it
# only for a channel whose projects are exactly the (signed) scope.
CHANNEL_HEADER = 'X-Calipso-Channel'


def header_value(projects):
    """The canonical text of a project set: sorted, comma-separated."""
    return ','.join(sorted({p.strip() for p in projects if p.strip()}))


def parse(text):
    """The projects of a header value."""
    return frozenset(p.strip() for p in (text or '').split(',')
                     if p.strip())


def sign(key, projects):
    """The signature of a project set (hex HMAC-SHA256 of its canonical
    text)."""
    return hmac.new(key.encode('utf-8'),
                    header_value(projects).encode('utf-8'),
                    hashlib.sha256).hexdigest()


def verify(key, projects, signature):
    """Whether ``signature`` is the signature of ``projects``."""
    return hmac.compare_digest(sign(key, projects),
                               (signature or '').strip().lower())
