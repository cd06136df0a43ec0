"""JSON answers of every calipso HTTP service."""

import hashlib
import json
import math

import orjson
import webob

from calipso_agent.wsgi import errors


def _finite(value):
    """``value`` with non-finite floats (an overflowing sum) as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def json_response(status, body):
    try:
        # orjson writes non-finite floats as null, as _finite does.
        data = orjson.dumps(body)
    except TypeError:
        # Integers beyond 64 bits: the standard library's encoder.
        try:
            data = json.dumps(body, allow_nan=False).encode()
        except ValueError:
            data = json.dumps(_finite(body), allow_nan=False).encode()
    response = webob.Response(status=status, content_type=errors.JSON_TYPE,
                              charset='UTF-8')
    response.body = data
    return response


def conditional(request, response):
    """``response`` to a GET or HEAD with an ETag (a digest of its body)
    and, when the request's ``If-None-Match`` names it, as a 304 without
    a body: a client polling a document (the topology page, doc/ui.md)
    re-reads it only when it changed."""
    if request.method not in ('GET', 'HEAD') or response.status_int != 200:
        return response
    response.etag = hashlib.sha256(response.body).hexdigest()[:32]
    if response.etag in request.if_none_match:
        not_modified = webob.Response(status=304)
        not_modified.etag = response.etag
        return not_modified
    return response
