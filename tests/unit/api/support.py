"""What the API tests share: a client checking every answer against the
OpenAPI document, the identities, the data set.

Every answer a test gets through ``Client`` is checked: its status must be
documented for the operation, and its body valid for the documented
schema (``test_openapi.py`` checks the converse: every route is
documented).
"""

import datetime
import json
import urllib.parse

import webob
from openapi_schema_validator import OAS30Validator

from calipso_agent.api import openapi
from calipso_agent.api.v2 import ROUTES
from calipso_agent.wsgi import errors, router
from tests.helpers import basics
from tests.helpers.basics import make_sample

DOCUMENT = openapi.document()
T0 = datetime.datetime(2024, 5, 1, tzinfo=datetime.UTC)

ADMIN = {'X-Roles': 'admin,member', 'X-Project-Id': 'project-admin',
         'X-User-Id': 'user-admin', 'X-Identity-Status': 'Confirmed'}


def make_conf(tmp_path, **overrides):
    """Options of an API over an SQLite file in ``tmp_path``."""
    return basics.make_conf(
        database__connection=f'sqlite:///{tmp_path}/calipso.sqlite',
        state_path=str(tmp_path), **overrides)


def member(project='project-a', user='user-0', roles='member'):
    """The headers of a non-admin token of ``project``."""
    return {'X-Roles': roles, 'X-Project-Id': project, 'X-User-Id': user,
            'X-Identity-Status': 'Confirmed'}


def at(seconds=0, microseconds=0):
    return (T0 + datetime.timedelta(seconds=seconds,
                                    microseconds=microseconds)).isoformat()


def naive(seconds=0, microseconds=0):
    """How the API shows T0 + ``seconds``."""
    return (T0 + datetime.timedelta(seconds=seconds,
                                    microseconds=microseconds)).replace(
        tzinfo=None).isoformat()


def dataset():
    """The samples the read tests query.

    cpu (cumulative, ns): 12 samples 10 minutes apart from T0 over vm-0,
    vm-1 (project-a) and vm-2 (project-b), users user-0/user-1.
    memory (gauge, MB): 4 samples over vm-0 and vm-2, one with
    microseconds.
    """
    samples = []
    for i in range(12):
        resource = f'vm-{i % 3}'
        samples.append(make_sample(
            i, resource_id=resource,
            project_id='project-b' if resource == 'vm-2' else 'project-a',
            user_id=f'user-{i % 2}', timestamp=at(i * 600),
            volume=float(i * 10 + i % 3),
            source='other' if i == 11 else 'openstack',
            resource_metadata={
                'flavor': {'name': 'm1.large' if i % 3 == 1 else 'm1.small',
                           'vcpus': 4 if i % 3 == 1 else 1},
                'state': 'active' if i < 9 else 'stopped',
                'enabled': i % 2 == 0, 'size': i}))
    for j in range(4):
        samples.append(make_sample(
            100 + j, name='memory', type='gauge', unit='MB',
            resource_id='vm-0' if j % 2 == 0 else 'vm-2',
            project_id='project-a' if j % 2 == 0 else 'project-b',
            user_id='user-0', volume=512.0 * (j + 1),
            timestamp=at(j * 900 + 30, microseconds=250000 if j == 3 else 0),
            resource_metadata={'flavor': {'name': 'm1.small'}}))
    return samples


def _resolve(item):
    while '$ref' in item:
        kind, name = item['$ref'].split('/')[-2:]
        item = DOCUMENT['components'][kind][name]
    return item


def validate(instance, schema):
    """``instance`` is valid for an OpenAPI schema of the document."""
    root = dict(schema, components=DOCUMENT['components'])
    OAS30Validator(root).validate(instance)


def check_documented(request, response):
    """The answer is one the document describes for the request."""
    try:
        route, _, _ = router.find(ROUTES, request)
    except errors.APIError:
        route = None
    if route is None or response.status_code == 405:
        assert response.status_code in (400, 404, 405), response.status
        if request.method != 'HEAD':
            validate(response.json,
                     DOCUMENT['components']['schemas']['Error'])
        return
    method = 'get' if request.method == 'HEAD' else request.method.lower()
    operation = DOCUMENT['paths'][route.openapi_path][method]
    status = str(response.status_code)
    assert status in operation['responses'], (
        f'{request.method} {route.openapi_path} answered an undocumented '
        f'{response.status}: {response.text[:300]}')
    documented = _resolve(operation['responses'][status])
    if 'content' not in documented:
        assert response.body == b'', f'{response.status} answered a body'
        return
    content = documented['content']
    assert response.content_type in content, response.content_type
    if request.method == 'HEAD':
        assert response.body == b'', 'HEAD answered a body'
        return
    validate(response.json, content[response.content_type]['schema'])


class Client:
    """Requests to a WSGI app, every answer checked against the document;
    ``headers`` are sent with every request (admin by default)."""

    def __init__(self, app, headers=ADMIN):
        self.app = app
        self.headers = dict(headers or {})

    def request(self, method, path, params=(), body=None, headers=None,
                environ=None):
        url = path
        if params:
            url += '?' + urllib.parse.urlencode(list(params))
        request = webob.Request.blank(url, method=method,
                                      environ=environ or {})
        for name, value in (self.headers if headers is None
                            else headers).items():
            request.headers[name] = value
        if body is not None:
            request.body = (body if isinstance(body, bytes)
                            else json.dumps(body).encode())
            request.content_type = 'application/json'
        response = request.get_response(self.app)
        check_documented(request, response)
        return response

    def get(self, path, params=(), **kwargs):
        return self.request('GET', path, params, **kwargs)

    def post(self, path, body, **kwargs):
        return self.request('POST', path, body=body, **kwargs)

    def put(self, path, body, **kwargs):
        return self.request('PUT', path, body=body, **kwargs)

    def delete(self, path, **kwargs):
        return self.request('DELETE', path, **kwargs)


def query(*terms):
    """q.* parameters of (field, op, value[, type]) terms."""
    typed = any(len(term) > 3 for term in terms)
    params = []
    for term in terms:
        field, op, value = term[:3]
        params += [('q.field', field), ('q.op', op), ('q.value', value)]
        if typed:
            params.append(('q.type', term[3] if len(term) > 3 else ''))
    return params


def fault(response):
    """(status, faultcode, faultstring) of an error answer."""
    message = response.json['error_message']
    return response.status_code, message['faultcode'], message['faultstring']
