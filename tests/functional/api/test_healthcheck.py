"""/healthcheck of calipso-api follows its store: a private PostgreSQL
stopped and started again under one loaded API pipeline."""

import pytest
import webob

from calipso_agent.api import app
from tests.helpers import basics, databases

pytestmark = pytest.mark.functional


def status(pipeline):
    return webob.Request.blank('/healthcheck').get_response(
        pipeline).status_code


def test_healthcheck_follows_the_store(tmp_path):
    with databases.PrivatePostgres() as pg:
        pg.start()
        conf = basics.make_conf(
            api__auth_strategy='noauth', state_path=str(tmp_path),
            database__connection=pg.url + '?connect_timeout=2')
        pipeline = app.load_app(conf)
        assert status(pipeline) == 200
        pg.stop()
        assert status(pipeline) == 503
        pg.start()
        assert basics.wait_until(lambda: status(pipeline) == 200, 30)
