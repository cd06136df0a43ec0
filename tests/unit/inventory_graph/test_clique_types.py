"""clique_types.yaml: the shipped file loads whole; a broken entry is
logged with file, entry and reason and skipped, the rest loads."""

import logging

import pytest

from calipso_agent import shipped
from calipso_agent.inventory_graph import clique_types
from tests.helpers import basics

SHIPPED = f'{shipped.SOURCE_ETC}/clique_types.yaml'


def test_the_shipped_file_loads_without_error(caplog):
    with caplog.at_level(logging.ERROR):
        rules = clique_types.load(SHIPPED)
    assert caplog.records == []
    assert rules.clique_types_of('instance')[0].link_types[:5] == (
        'instance-vnic', 'vnic-port', 'port-network', 'subnet-network',
        'router-subnet')
    for focal in ('instance', 'host', 'network', 'router', 'port', 'vnic'):
        assert rules.clique_types_of(focal), focal
    forward, reverse = rules.following('impact')
    assert 'instance-host' in reverse and 'instance-host' not in forward
    forward, reverse = rules.following('path')
    assert 'instance-host' in forward and 'vedge-host' in reverse


def write(tmp_path, text):
    path = tmp_path / 'clique_types.yaml'
    path.write_text(text)
    return str(path)


BROKEN = [
    ('- 3', 'clique_types[1]', 'not a mapping'),
    ('- {name: x, focal_point_type: host}', 'clique_types[1] (x)',
     'link_types must be a non-empty list'),
    ('- {name: x, focal_point_type: Host, link_types: [a-b]}',
     'clique_types[1] (x)', "focal_point_type 'Host'"),
    ('- {name: x, focal_point_type: host, link_types: [ab]}',
     'clique_types[1] (x)', "link type 'ab' is not"),
    ('- {name: x, focal_point_type: host, link_types: [a-b, a-b]}',
     'clique_types[1] (x)', 'listed twice'),
    ('- {name: good, focal_point_type: host, link_types: [a-b]}',
     'clique_types[1] (good)', "name 'good' is already defined"),
    ('- {focal_point_type: host, link_types: [a-b]}', 'clique_types[1]',
     'name is missing'),
    ('- {name: x, focal_point_type: host, link_types: [a-b], extra: 1}',
     'clique_types[1] (x)', "unknown keys ['extra']"),
]


@pytest.mark.parametrize('entry, label, reason', BROKEN)
def test_a_broken_clique_type_is_skipped_with_a_precise_error(
        tmp_path, caplog, entry, label, reason):
    path = write(tmp_path, f"""
clique_types:
- {{name: good, focal_point_type: host, link_types: [instance-host]}}
{entry}
- {{name: after, focal_point_type: port, link_types: [vnic-port]}}
link_types:
  instance-host: {{impact: reverse}}
""")
    with caplog.at_level(logging.ERROR):
        rules = clique_types.load(path)
    assert [c.name for c in rules.clique_types] == ['good', 'after']
    (record,) = caplog.records
    message = record.getMessage()
    assert path in message and label in message and reason in message


@pytest.mark.parametrize('key, entry, reason', [
    ('instance-host', '{impact: sideways}', "'sideways' is not one of"),
    ('instance-host', '[reverse]', 'not a mapping'),
    ('instance-host', '{impact: reverse, cost: 1}', "unknown keys ['cost']"),
    ('instancehost', '{impact: reverse}', 'the key is not'),
])
def test_a_broken_link_direction_is_skipped(tmp_path, caplog, key, entry,
                                            reason):
    path = write(tmp_path, f"""
link_types:
  vnic-port: {{impact: both, path: forward}}
  {key}: {entry}
""")
    with caplog.at_level(logging.ERROR):
        rules = clique_types.load(path)
    assert rules.following('impact') == ({'vnic-port'}, {'vnic-port'})
    (record,) = caplog.records
    assert path in record.getMessage() and reason in record.getMessage()


@pytest.mark.parametrize('text, reason', [
    ('[1, 2]', 'not a mapping'), ('a: [', 'not valid YAML')])
def test_an_unusable_file_is_an_error_naming_it(tmp_path, text, reason):
    path = write(tmp_path, text)
    with pytest.raises(clique_types.CliqueTypesError) as raised:
        clique_types.load(path)
    assert path in str(raised.value) and reason in str(raised.value)


def test_a_missing_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(clique_types.CliqueTypesError,
                       match='cannot be read'):
        clique_types.load(str(tmp_path / 'none.yaml'))


def test_an_operator_topology_needs_no_code(tmp_path):
    path = write(tmp_path, """
clique_types:
- {name: storage, focal_point_type: volume,
   link_types: [volume-instance, instance-host]}
""")
    (clique_type,) = clique_types.load(path).clique_types_of('volume')
    assert clique_type.link_types == ('volume-instance', 'instance-host')


def test_the_option_finds_the_shipped_file_by_default():
    conf = basics.make_conf()
    assert clique_types.path_of(conf) == SHIPPED
