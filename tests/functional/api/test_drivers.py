"""The API's driver-dependent properties on the real servers: PostgreSQL
(and MongoDB at ``CALIPSO_TEST_MONGODB_URL`` when it is set).

* Resources seen from some projects are computed from those projects'
  samples only (tests/unit/api/v2/test_resource_isolation.py).
* No parameter value gives a 5xx (tests/unit/api/test_parameters.py): a
  period overflowing PostgreSQL's BIGINT answered 503.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calipso_agent.api import app
from calipso_agent.api import query as api_query
from tests.functional.storage import test_contract as real_stores
from tests.unit.api import support
from tests.unit.api import test_parameters as parameters
from tests.unit.api.v2 import test_resource_isolation as isolation

pytestmark = pytest.mark.functional

STORES = {'postgresql': real_stores.PostgreSQLStores,
          'mongodb': real_stores.MongoDBStores}


@pytest.fixture(scope='module', params=sorted(STORES))
def kind(request):
    return request.param


@pytest.fixture(scope='module')
def store_pair(kind):
    """Two stores of one server, recreated empty on each call."""
    pair = (STORES[kind](), STORES[kind]())
    yield pair
    for stores in pair:
        stores.close()


@pytest.mark.parametrize('caller', sorted(isolation.CALLERS))
@isolation.ISOLATION
@given(samples=isolation.stored_samples(), terms=isolation.filter_terms)
def test_resources_are_seen_from_the_callers_projects_only(
        store_pair, caller, samples, terms, tmp_path_factory):
    full, alone = store_pair
    conf = support.make_conf(tmp_path_factory.getbasetemp(),
                             api__multi_project_role=isolation.SERVICE_ROLE)
    isolation.check_isolation(conf, full(), alone(), caller, samples, terms)


@pytest.fixture(scope='module')
def apis(kind, tmp_path_factory):
    """(the API over the data set, the API over an empty store)."""
    made = (STORES[kind](), STORES[kind]())
    stores = [each() for each in made]
    assert not stores[0].record_samples(support.dataset()).rejected
    conf = support.make_conf(tmp_path_factory.getbasetemp())
    yield tuple(app.setup_app(conf=conf, storage=s) for s in stores)
    for each in made:
        each.close()


@pytest.fixture(scope='module')
def api(apis):
    return apis[0]


@pytest.mark.parametrize('identity', ['admin', 'member'])
@settings(max_examples=100, deadline=None,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_no_parameter_value_gives_a_server_error(apis, identity, data):
    headers = support.ADMIN if identity == 'admin' else support.member()
    parameters.check_parameters(support.Client(apis[0], headers),
                                support.Client(apis[1], headers), data)


def test_period_out_of_range_is_400(api):
    client = support.Client(api)
    for period in ('99999999999999999999', '9223372036855',
                   str(api_query.MAX_PERIOD + 1)):
        response = client.get('/v2/meters/cpu/statistics',
                              [('period', period)])
        assert support.fault(response)[:2] == (400, 'Client'), period
    response = client.get('/v2/meters/cpu/statistics',
                          [('period', str(api_query.MAX_PERIOD))])
    assert response.status_code == 200, response.text
