"""The OpenAPI document is valid and documents exactly the routes (every
answer of the other tests is checked against it by support.Client)."""

from openapi_spec_validator import validate

from calipso_agent.api import openapi
from calipso_agent.api.v2 import ROUTES
from tests.unit.api import support

# Answered by a filter of the paste pipelines, not by a route.
PIPELINE_PATHS = {'/healthcheck': {'get'}}


def test_document_is_valid_openapi():
    validate(openapi.document())


def test_every_route_is_documented_and_every_path_routed():
    routed = {route.openapi_path: {m.lower() for m in route.handlers}
              for route in ROUTES}
    documented = {path: set(operations)
                  for path, operations in support.DOCUMENT['paths'].items()}
    assert documented == {**routed, **PIPELINE_PATHS}


def test_path_parameters_are_documented():
    for route in ROUTES:
        names = {s.strip('{}').split(':')[0] for s in route.segments
                 if s.startswith('{')}
        for method in route.handlers:
            operation = support.DOCUMENT['paths'][route.openapi_path][
                method.lower()]
            documented = {
                support.DOCUMENT['components']['parameters'][
                    p['$ref'].rsplit('/', 1)[1]]['name']
                for p in operation.get('parameters', [])
                if support.DOCUMENT['components']['parameters'][
                    p['$ref'].rsplit('/', 1)[1]]['in'] == 'path'}
            assert documented == names, route.template


def test_error_answers_are_documented_for_every_operation():
    for path, operations in support.DOCUMENT['paths'].items():
        for method, operation in operations.items():
            if operation.get('security') == []:
                continue
            for status in ('400', '401', '403', '500', '503'):
                assert status in operation['responses'], (path, method)


def test_document_is_served(client):
    assert client.get(openapi.PATH).json == openapi.document()


def test_document_copies_are_independent():
    first = openapi.document()
    first['paths'].clear()
    assert openapi.document()['paths']
