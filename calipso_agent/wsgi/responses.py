"""JSON answers of every calipso HTTP service."""

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
