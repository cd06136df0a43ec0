"""Property: whatever a tenant asks of the inventory routes, directly
(a member token, a channel reader's declared scope) or through a
channel's proxy, no answer holds an object, link, id or name of another
project, nor an infrastructure object other than as an opaque node, nor
an infrastructure id or name (tests/helpers/inventory.py: leaks)."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calipso_agent.api import app as api_app
from calipso_agent.storage.sql import sqlite
from calipso_proxy.proxy import app as proxy_app
from calipso_proxy.proxy import token_gate
from tests.helpers import basics
from tests.helpers import inventory as inv
from tests.unit.api import support
from tests.unit.proxy.proxy.test_isolation import WSGIBackend, proxy_conf

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=list(HealthCheck))


def api_over(cloud):
    conf = basics.make_conf(database__connection='sqlite://',
                            api__multi_project_role='service',
                            api__opaque_id_key='k')
    store = sqlite.Connection(conf, 'sqlite://')
    cloud.store(store)
    return api_app.setup_app(conf=conf, storage=store), store


def check(cloud, projects, response):
    assert response.status_code in (200, 400, 403, 404), response.text
    if response.status_code == 200:
        assert inv.leaks(cloud, set(projects), response.json) == []


@st.composite
def scenarios(draw):
    cloud = inv.random_cloud(draw, st)
    projects = draw(st.lists(st.sampled_from(inv.PROJECTS), min_size=1,
                             max_size=2, unique=True))
    requests = [inv.tenant_paths(draw, st, cloud) for _ in range(8)]
    return cloud, projects, requests


@SETTINGS
@given(scenario=scenarios(), as_reader=st.booleans())
def test_no_tenant_query_leaks_directly(scenario, as_reader):
    cloud, projects, requests = scenario
    application, store = api_over(cloud)
    try:
        if as_reader:
            headers = {'X-Roles': 'service', 'X-Project-Id': 'svc',
                       'X-Identity-Status': 'Confirmed',
                       'X-Calipso-Project-Scope': ','.join(projects)}
        else:
            projects = projects[:1]
            headers = support.member(projects[0])
        client = support.Client(application, headers)
        for path, params in requests:
            check(cloud, projects, client.get(path, params))
    finally:
        store.close()


@SETTINGS
@given(scenario=scenarios())
def test_no_tenant_query_leaks_through_a_proxy(scenario):
    import urllib.parse

    import webob
    cloud, projects, requests = scenario
    application, store = api_over(cloud)
    try:
        conf = proxy_conf(projects)
        proxy = proxy_app.ChannelProxy(
            conf, backend=WSGIBackend(conf, application), auth=object())
        for path, params in requests:
            url = path + ('?' + urllib.parse.urlencode(params)
                          if params else '')
            request = webob.Request.blank(url)
            request.environ[token_gate.AUTHENTICATED] = True
            response = request.get_response(proxy)
            check(cloud, projects, response)
    finally:
        store.close()


@pytest.mark.parametrize('body', [
    {'id': 'compute-1', 'type': 'host', 'state': 'UP', 'project_id': None},
    {'id': 'opaque-x', 'type': 'host', 'opaque': True, 'name': 'compute-1'},
    {'nodes': [{'id': 'x', 'type': 'host', 'state': 'UP'}]},
    {'edges': [{'source_id': 'a', 'target_id': 'b', 'link_type': 'a-b',
                'attributes': {'host': 'compute-1'}}]},
    [{'id': 'vm', 'type': 'instance', 'project_id': 'other'}],
])
def test_the_proxy_refuses_a_leaking_backend_answer(body):
    import json

    import webob

    from calipso_proxy.proxy import backend as backend_mod

    class Leaking:
        base_url = 'http://backend.invalid:8777'
        session = None

        def request(self, *args, **kwargs):
            return backend_mod.BackendResponse(
                200, 'application/json', json.dumps(body).encode())
    proxy = proxy_app.ChannelProxy(proxy_conf(['proj-0']), backend=Leaking(),
                                   auth=object())
    request = webob.Request.blank('/v2/inventory/vm/clique')
    request.environ[token_gate.AUTHENTICATED] = True
    assert request.get_response(proxy).status_int == 502


def test_the_proxy_refuses_a_foreign_project_filter():
    import webob
    cloud = inv.small_cloud()
    application, store = api_over(cloud)
    try:
        conf = proxy_conf(['project-a'])
        proxy = proxy_app.ChannelProxy(
            conf, backend=WSGIBackend(conf, application), auth=object())
        for url in ('/v2/inventory?project_id=project-b',
                    '/v2/topology?project_id=project-a,project-b'):
            request = webob.Request.blank(url)
            request.environ[token_gate.AUTHENTICATED] = True
            assert request.get_response(proxy).status_int == 403
        request = webob.Request.blank('/v2/inventory/vm-b1')
        request.environ[token_gate.AUTHENTICATED] = True
        assert request.get_response(proxy).status_int == 404
    finally:
        store.close()
