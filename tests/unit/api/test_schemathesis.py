"""No input yields a 5xx: schemathesis fuzzes every operation of the
OpenAPI document against the real API over the data set, as an admin and
as a member of one project; every answer must be documented (status,
content type, body and headers).
"""

import json
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from calipso_agent.api import app, openapi
from calipso_agent.wsgi import middleware
from tests.helpers import basics
from tests.unit.api import support

IDENTITIES = {'admin': support.ADMIN, 'member': support.member()}
CHECKS = [not_a_server_error, status_code_conformance,
          content_type_conformance, response_schema_conformance,
          response_headers_conformance]
CONFIG = {'seed': 20240501,
          'generation': {'deterministic': True, 'database': 'none'}}
# More examples per operation for a deeper local run.
EXAMPLES = int(os.environ.get('CALIPSO_TEST_SCHEMATHESIS_EXAMPLES', 40))
# Fields a positive case's q.field is steered to (the document lets it
# be any string: most would stop at a 400).
QUERY_FIELDS = ('project_id', 'resource_id', 'user_id', 'source', 'meter',
                'project', 'message_id', 'timestamp', 'search_offset',
                'metadata.flavor.name', 'resource_metadata.size')
Q_PARAMETERS = ('q.field', 'q.value', 'q.op', 'q.type')
# And the leaves of a positive complex query (filter and orderby are
# JSON strings to the document).
FILTER_FIELDS = ('project_id', 'resource_id', 'meter', 'volume',
                 'timestamp', 'user', 'metadata.flavor.name')
FILTER_OPERATORS = ('=', '!=', '<', '>=', 'like')


class Identity:
    """Gives every request the identity headers of a token."""

    def __init__(self, application, headers):
        self.application = application
        self.environ = {'HTTP_' + name.upper().replace('-', '_'): value
                        for name, value in headers.items()}

    def __call__(self, environ, start_response):
        environ.update(self.environ)
        return self.application(environ, start_response)


# The document route needs no store: the schema is loaded from an API
# without one, and each case is sent to ``api`` (over the data set).
schema = schemathesis.openapi.from_wsgi(
    openapi.PATH, app.setup_app(conf=basics.make_conf()),
    config=schemathesis.Config.from_dict(CONFIG))


@schema.hook
def map_case(context, case):
    """Positive cases taken past the checks the document cannot state:
    one q.value (q.op, q.type) per known q.field, posted samples named
    after the meter of the URL, complex queries of a known field."""
    if (case.meta is None or
            case.meta.generation.mode != schemathesis.GenerationMode.POSITIVE):
        return case
    query = case.query if isinstance(case.query, dict) else {}
    if 'q.field' in query or 'q.value' in query:
        fields = query.get('q.field') or []
        count = min(len(fields), len(query.get('q.value') or []))
        for name in Q_PARAMETERS:
            given = query.get(name)
            if given is not None and len(given) >= count:
                query[name] = given[:count]
            else:
                query.pop(name, None)
        if count:
            query['q.field'] = [
                QUERY_FIELDS[len(field) % len(QUERY_FIELDS)]
                for field in fields[:count]]
    meter_name = (case.path_parameters or {}).get('meter_name')
    if case.method == 'POST' and isinstance(case.body, list):
        for item in case.body:
            if isinstance(item, dict):
                item['counter_name'] = meter_name
    body = case.body if isinstance(case.body, dict) else {}
    if isinstance(body.get('filter'), str):
        text = body['filter']
        body['filter'] = json.dumps({
            FILTER_OPERATORS[len(text) // 7 % len(FILTER_OPERATORS)]: {
                FILTER_FIELDS[len(text) % len(FILTER_FIELDS)]: text}})
    if isinstance(body.get('orderby'), str):
        text = body['orderby']
        body['orderby'] = json.dumps([{
            FILTER_FIELDS[len(text) % len(FILTER_FIELDS)]:
                'desc' if len(text) % 2 else 'asc'}])
    return case


@pytest.fixture(scope='module', params=sorted(IDENTITIES))
def api(request, store_conf, store):
    """The API over the data set as one identity (/healthcheck answered
    as in the paste pipelines)."""
    return middleware.Healthcheck(Identity(
        app.setup_app(conf=store_conf, storage=store),
        IDENTITIES[request.param]))


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          database=None, suppress_health_check=list(HealthCheck))
def test_api(case, api):
    case.call_and_validate(app=api, checks=CHECKS)
