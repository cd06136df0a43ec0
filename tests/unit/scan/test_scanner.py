"""The scanner as a whole, without Keystone."""

from calipso_agent.scan import scanner
from calipso_agent.storage.sql import sqlite
from tests.helpers import basics
from tests.unit.scan.test_client import session_for


def test_a_scan_where_nothing_answers_writes_nothing(tmp_path):
    url = f'http://127.0.0.1:{basics.free_port()}'
    conf = basics.make_conf(inventory_scan__services=['compute', 'volume'])
    store = sqlite.Connection(conf, f'sqlite:///{tmp_path}/s.sqlite')
    store.upgrade()
    try:
        result = scanner.scan(conf, store, session=session_for(url))
        assert result.failed == ['compute', 'volume']
        assert result.answered == []
        assert list(store.get_inventory()) == []
    finally:
        store.close()
