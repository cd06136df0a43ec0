"""The API's errors and their JSON form (DESIGN.md section 6).

Every error answer is ``{"error_message": {"faultstring": ...,
"faultcode": "Client"|"Server"}}`` with the status of its class.
"""

import json

import webob

JSON_TYPE = 'application/json'


class APIError(Exception):
    """An error answered to the client; ``code`` is the HTTP status."""

    code = 500
    faultcode = 'Server'

    def __init__(self, message, headers=None):
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})


class ClientError(APIError):
    """400: the request is wrong."""

    code = 400
    faultcode = 'Client'


class InvalidParameterError(ClientError):
    """400 naming the parameter at fault."""

    def __init__(self, parameter, reason):
        super().__init__(f'Invalid input for field/attribute {parameter}: '
                         f'{reason}')
        self.parameter = parameter


class UnauthorizedError(ClientError):
    code = 401


class ForbiddenError(ClientError):
    code = 403


class NotFoundError(ClientError):
    code = 404


class MethodNotAllowedError(ClientError):
    code = 405

    def __init__(self, method, allowed):
        super().__init__(f'Method {method} not allowed (allowed: '
                         f'{", ".join(allowed)})',
                         headers={'Allow': ', '.join(allowed)})


def error_body(message, faultcode):
    return json.dumps({'error_message': {'faultstring': message,
                                         'faultcode': faultcode}})


def error_response(status, message, faultcode=None, headers=None):
    """A JSON error response; ``faultcode`` defaults from the status."""
    if faultcode is None:
        faultcode = 'Client' if status < 500 else 'Server'
    response = webob.Response(status=status, content_type=JSON_TYPE,
                              charset='UTF-8')
    response.text = error_body(message, faultcode)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def response_of(error):
    return error_response(error.code, error.message, error.faultcode,
                          error.headers)
