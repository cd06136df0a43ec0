"""Declarative meter definitions: the meters.yaml format and its errors."""

import textwrap

import pytest

from calipso_agent.notification import meters


def notification(event_type='compute.instance.exists', payload=None,
                 ctxt=None, message_id='m-1',
                 timestamp='2024-05-01 10:00:00.5', publisher_id='c.h1'):
    return {'ctxt': ctxt or {}, 'publisher_id': publisher_id,
            'event_type': event_type, 'payload': payload or {},
            'metadata': {'message_id': message_id, 'timestamp': timestamp}}


def load(tmp_path, *texts):
    paths = []
    for number, text in enumerate(texts):
        path = tmp_path / f'{number:02d}.yaml'
        path.write_text(textwrap.dedent(text))
        paths.append(str(path))
    return meters.MeterDefinitions.from_files(paths)


def build(definitions, message):
    samples, failures = definitions.build_samples(message)
    return [s.as_dict() for s in samples], failures


SIMPLE = '''
    metric:
      - name: memory
        event_type: compute.instance.*
        type: gauge
        unit: MiB
        volume: $.payload.memory_mb
        resource_id: $.payload.instance_id
        user_id: $.payload.user_id
        project_id: $.payload.tenant_id
'''


def test_simple_definition(tmp_path):
    defs = load(tmp_path, SIMPLE)
    samples, failures = build(defs, notification(payload={
        'memory_mb': 512, 'instance_id': 'i-1', 'user_id': 'u',
        'tenant_id': 'p'}))
    assert failures == []
    (s,) = samples
    assert (s['name'], s['type'], s['unit'], s['volume']) == (
        'memory', 'gauge', 'MiB', 512.0)
    assert (s['resource_id'], s['user_id'], s['project_id']) == (
        'i-1', 'u', 'p')
    assert s['timestamp'] == '2024-05-01T10:00:00.500000+00:00'
    assert s['source'] == 'openstack'
    assert s['message_id'] == 'm-1'
    assert s['resource_metadata'] == {
        'memory_mb': 512, 'instance_id': 'i-1', 'user_id': 'u',
        'tenant_id': 'p', 'event_type': 'compute.instance.exists',
        'host': 'c.h1'}


@pytest.mark.parametrize('patterns,event_type,matches', [
    (['compute.instance.*'], 'compute.instance.exists', True),
    (['compute.instance.*'], 'compute.node.exists', False),
    (['compute.instance.(?!create.start|update).*'],
     'compute.instance.update', False),
    (['compute.instance.(?!create.start|update).*'],
     'compute.instance.create.end', True),
    (['volume.*', '!volume.exists'], 'volume.exists', False),
    (['volume.*', '!volume.exists'], 'volume.create.end', True),
    (['!volume.*'], 'image.upload', True),
    (['!volume.*'], 'volume.create.end', False),
    (['image.upload'], 'image.upload', True),
    (['image.upload'], 'image.delete', False),
])
def test_event_type_patterns(tmp_path, patterns, event_type, matches):
    defs = load(tmp_path, f'''
        metric:
          - name: m
            event_type: {patterns!r}
            type: gauge
            unit: u
            volume: 1
            resource_id: $.payload.id
    ''')
    samples, _ = build(defs, notification(event_type, {'id': 'r'}))
    assert bool(samples) is matches


def test_anchors_merges_and_metadata(tmp_path):
    defs = load(tmp_path, '''
        metric:
          - name: memory
            event_type: &events compute.instance.*
            type: gauge
            unit: MiB
            volume: $.payload.memory_mb
            resource_id: $.payload.instance_id
            metadata: &meta
              host: $.payload.host
              flavor: $.payload.flavor.name
              empty: $.payload.nothing
          - name: vcpus
            event_type: *events
            type: gauge
            unit: vcpu
            volume: $.payload.vcpus
            resource_id: $.payload.instance_id
            metadata:
              <<: *meta
              extra: $.payload.extra
    ''')
    samples, failures = build(defs, notification(payload={
        'memory_mb': 1, 'vcpus': 2, 'instance_id': 'i', 'host': 'h',
        'flavor': {'name': 'm1'}, 'extra': 'x', 'nothing': ''}))
    assert failures == []
    by_name = {s['name']: s for s in samples}
    assert by_name['memory']['resource_metadata'] == {'host': 'h',
                                                      'flavor': 'm1'}
    assert by_name['vcpus']['resource_metadata'] == {'host': 'h',
                                                     'flavor': 'm1',
                                                     'extra': 'x'}
    by_name['memory']['resource_metadata']['host'] = 'changed'
    assert by_name['vcpus']['resource_metadata']['host'] == 'h'


def test_metadata_with_only_empty_values_falls_back_to_payload(tmp_path):
    defs = load(tmp_path, '''
        metric:
          - name: m
            event_type: e
            type: gauge
            unit: u
            volume: $.payload.v
            resource_id: $.payload.id
            metadata:
              absent: $.payload.absent
    ''')
    samples, _ = build(defs, notification('e', {'v': 3, 'id': 'r'}))
    assert samples[0]['resource_metadata'] == {
        'v': 3, 'id': 'r', 'event_type': 'e', 'host': 'c.h1'}


def test_jsonpath_extensions(tmp_path):
    defs = load(tmp_path, '''
        metric:
          - name: node.cpu
            event_type: compute.metrics.update
            type: gauge
            unit: percent
            volume: $.payload.metrics[?(@.name='cpu.percent')].value * 100
            resource_id: $.payload.host + "_" + $.payload.nodename
            timestamp: $.payload.metrics[?(@.name='cpu.percent')].timestamp
            metadata:
              provider: $.payload.pool.`split(#, 0, 1)`
              first_key: $.payload.kv[?key=image_id].value
              first_item: $.payload.items[0].id
          - name: $.payload.outcome.`sub(/.*/, )` + 'auth.' + $.payload.outcome
            event_type: compute.metrics.update
            type: delta
            unit: user
            volume: 1
            resource_id: $.payload.host
    ''')
    samples, failures = build(defs, notification(
        'compute.metrics.update', {
            'host': 'h1', 'nodename': 'n1', 'outcome': 'success',
            'pool': 'backend#pool',
            'kv': [{'key': 'other', 'value': 'x'},
                   {'key': 'image_id', 'value': 'img'}],
            'items': [{'id': 'first'}, {'id': 'second'}],
            'metrics': [
                {'name': 'cpu.frequency', 'value': 2000,
                 'timestamp': '2024-01-01T00:00:00Z'},
                {'name': 'cpu.percent', 'value': 0.25,
                 'timestamp': '2024-01-01T00:00:05.000001Z'}]}))
    assert failures == []
    by_name = {s['name']: s for s in samples}
    cpu = by_name['node.cpu']
    assert cpu['volume'] == 25.0
    assert cpu['resource_id'] == 'h1_n1'
    assert cpu['timestamp'] == '2024-01-01T00:00:05.000001+00:00'
    assert cpu['resource_metadata'] == {
        'provider': 'backend', 'first_key': 'img', 'first_item': 'first'}
    assert by_name['auth.success']['volume'] == 1.0


def test_lookup_builds_one_sample_per_entry(tmp_path):
    defs = load(tmp_path, '''
        metric:
          - name: $.payload.metrics.[*].name
            event_type: magnum.bay.metrics.*
            type: gauge
            unit: $.payload.metrics.[*].unit
            volume: $.payload.metrics.[*].value
            resource_id: $.payload.resource_id
            project_id: $.payload.project_id
            lookup: ['name', 'unit', 'volume']
    ''')
    samples, failures = build(defs, notification(
        'magnum.bay.metrics.update', {
            'resource_id': 'bay', 'project_id': 'p',
            'metrics': [{'name': 'memory.usage', 'unit': 'B', 'value': 5},
                        {'name': 'cpu.usage', 'unit': 'ns', 'value': 7},
                        {'name': 'cpu.usage', 'unit': 'ns', 'value': 8}]}))
    assert failures == []
    assert [(s['name'], s['unit'], s['volume']) for s in samples] == [
        ('memory.usage', 'B', 5.0), ('cpu.usage', 'ns', 7.0),
        ('cpu.usage', 'ns', 8.0)]
    assert {s['project_id'] for s in samples} == {'p'}
    assert len({s['id'] for s in samples}) == 3


def test_lookup_with_mismatched_lengths_is_a_failure(tmp_path):
    defs = load(tmp_path, '''
        metric:
          - name: $.payload.m.[*].name
            event_type: e
            type: gauge
            unit: $.payload.m.[*].unit
            volume: $.payload.m.[*].value
            resource_id: $.payload.id
            lookup: ['name', 'unit', 'volume']
    ''')
    samples, failures = build(defs, notification('e', {
        'id': 'r', 'm': [{'name': 'a', 'value': 1, 'unit': 'u'},
                         {'name': 'b', 'value': 2}]}))
    assert samples == []
    assert '1 values of unit for 2 meters' in failures[0][1]


def test_timedelta_plugin(tmp_path):
    defs = load(tmp_path, '''
        metric:
          - name: boot.time
            event_type: compute.instance.create.end
            type: gauge
            unit: sec
            volume:
              fields: [$.payload.created_at, $.payload.launched_at]
              plugin: timedelta
            resource_id: $.payload.instance_id
    ''')
    samples, failures = build(defs, notification(
        'compute.instance.create.end', {
            'instance_id': 'i', 'created_at': '2024-01-01 00:00:00',
            'launched_at': '2024-01-01T00:01:30.5'}))
    assert samples[0]['volume'] == 90.5
    samples, failures = build(defs, notification(
        'compute.instance.create.end', {
            'instance_id': 'i', 'created_at': '2024-01-01 00:00:00',
            'launched_at': ''}))
    assert samples == []
    assert 'volume' in failures[0][1]


def test_user_metadata_reserved_keys(tmp_path):
    defs = load(tmp_path, '''
        metric:
          - name: memory
            event_type: e
            type: gauge
            unit: MiB
            volume: $.payload.memory_mb
            resource_id: $.payload.id
            user_metadata: $.payload.metadata
            metadata:
              host: $.payload.host
    ''')
    samples, _ = build(defs, notification('e', {
        'memory_mb': 1, 'id': 'i', 'host': 'h',
        'metadata': {'metering.stack': 's1', 'metering.a.b': 'x' * 300,
                     'other': 'no'}}))
    user = samples[0]['resource_metadata']['user_metadata']
    assert user == {'stack': 's1', 'a_b': 'x' * 256}


def test_user_metadata_that_is_not_a_mapping_is_left_out(tmp_path):
    """Nova's ``metadata`` is a mapping; anything else (``"not a dict"``)
    cannot be user metadata: the samples are built without it, and the
    notification's failure line says so once."""
    defs = load(tmp_path, '''
        metric:
          - name: memory
            event_type: e
            type: gauge
            unit: MiB
            volume: $.payload.memory_mb
            resource_id: $.payload.id
            user_metadata: $.payload.metadata
            metadata:
              host: $.payload.host
          - name: vcpus
            event_type: e
            type: gauge
            unit: vcpu
            volume: $.payload.vcpus
            resource_id: $.payload.id
            user_metadata: $.payload.metadata
            metadata:
              host: $.payload.host
    ''')
    samples, failures = build(defs, notification('e', {
        'memory_mb': 1, 'vcpus': 2, 'id': 'i', 'host': 'h',
        'metadata': 'not a dict'}))
    assert [s['resource_metadata'] for s in samples] == [{'host': 'h'}] * 2
    assert failures == [(None, "user_metadata '$.payload.metadata' is a "
                               "str, not a mapping: left out")]


def test_failures_of_a_notification_are_logged_on_one_line(tmp_path,
                                                           caplog):
    from tests.helpers import basics
    defs = load(tmp_path, SIMPLE)
    endpoint = meters.MeterEndpoint(basics.make_conf(), defs)
    with caplog.at_level('WARNING'):
        assert endpoint.process_notification(notification(
            payload={'instance_id': 'i', 'memory_mb': True},
            message_id='m-bool')) == []
    (record,) = caplog.records
    assert record.getMessage() == (
        'Notification m-bool (compute.instance.exists): meter memory not '
        'built: volume: True is a boolean, not a number')


def test_a_later_definition_of_a_name_replaces_the_earlier(tmp_path):
    defs = load(tmp_path, SIMPLE, '''
        metric:
          - name: memory
            event_type: compute.instance.*
            type: gauge
            unit: GiB
            volume: $.payload.memory_gb
            resource_id: $.payload.instance_id
    ''')
    assert len(defs.definitions) == 1
    samples, _ = build(defs, notification(payload={
        'memory_mb': 1024, 'memory_gb': 1, 'instance_id': 'i'}))
    assert [(s['unit'], s['volume']) for s in samples] == [('GiB', 1.0)]


def test_definitions_dirs_then_paths(tmp_path):
    first = tmp_path / 'd'
    first.mkdir()
    (first / 'b.yaml').write_text(textwrap.dedent(SIMPLE))
    (first / 'a.yaml').write_text(textwrap.dedent(
        SIMPLE.replace('MiB', 'KiB')))
    (first / 'ignored.txt').write_text('not yaml')
    files = meters.definition_files([str(first), str(tmp_path / 'none')],
                                    ['/extra.yaml'])
    assert files == [str(first / 'a.yaml'), str(first / 'b.yaml'),
                     '/extra.yaml']


@pytest.mark.parametrize('entry,reason', [
    ('{name: m, event_type: e, type: gauge, unit: u, volume: 1}',
     'required fields resource_id not given'),
    ('{name: m, event_type: e, type: counter, unit: u, volume: 1, '
     'resource_id: $.payload.id}', "invalid type 'counter'"),
    ("{name: m, event_type: e, type: gauge, unit: u, volume: '$.[[bad', "
     'resource_id: $.payload.id}', 'invalid JSONPath'),
    ('{name: m, event_type: e, type: gauge, unit: u, resource_id: x, '
     'volume: {fields: [$.a, $.b], plugin: nosuch}}',
     "no plugin named 'nosuch'"),
    ('{name: m, event_type: [3], type: gauge, unit: u, volume: 1, '
     'resource_id: x}', 'event_type'),
    ('[not, a, mapping]', 'must be a mapping'),
])
def test_broken_definition_is_reported_and_skipped(tmp_path, entry, reason):
    defs = load(tmp_path, f'''
        metric:
          - {entry}
          - name: good
            event_type: e
            type: gauge
            unit: u
            volume: 1
            resource_id: $.payload.id
    ''')
    assert [d.name for d in defs.definitions] == ['good']
    ((origin, why),) = defs.report.errors
    assert 'metric[0]' in origin and origin.startswith(str(tmp_path))
    assert reason in why


def test_invalid_yaml_is_reported_with_its_line(tmp_path):
    defs = load(tmp_path, 'metric:\n  - name: [unclosed\n', SIMPLE)
    assert [d.name for d in defs.definitions] == ['memory']
    ((origin, why),) = defs.report.errors
    assert origin.startswith(str(tmp_path / '00.yaml') + ':')
    assert 'invalid YAML' in why


def test_file_without_metric_list_is_reported(tmp_path):
    defs = load(tmp_path, 'metrics: []\n')
    assert "'metric' list" in defs.report.errors[0][1]


@pytest.mark.parametrize('payload,reason', [
    ({'memory_mb': 1}, 'resource_id'),
    ({'instance_id': 'i'}, 'volume'),
    ({'instance_id': 'i', 'memory_mb': 'lots'}, 'not a number'),
    # vcpus: true is not one vCPU; NaN and infinity measure nothing.
    ({'instance_id': 'i', 'memory_mb': True}, 'True is a boolean, not a '
                                              'number'),
    ({'instance_id': 'i', 'memory_mb': 'NaN'}, 'not a finite number'),
    ({'instance_id': 'i', 'memory_mb': float('inf')},
     'not a finite number'),
])
def test_a_sample_that_cannot_be_built_is_a_failure(tmp_path, payload,
                                                    reason):
    defs = load(tmp_path, SIMPLE)
    samples, failures = build(defs, notification(payload=payload))
    assert samples == []
    ((definition, why),) = failures
    assert definition.name == 'memory' and reason in why


def test_bad_timestamp_is_a_failure(tmp_path):
    defs = load(tmp_path, SIMPLE)
    samples, failures = build(defs, notification(
        payload={'memory_mb': 1, 'instance_id': 'i'},
        timestamp='2014-05-1510: 24: 56'))
    assert samples == []
    assert 'timestamp' in failures[0][1]


def test_non_dict_payload_and_odd_event_types(tmp_path):
    defs = load(tmp_path, SIMPLE)
    assert build(defs, notification(payload=['x'])) == (
        [], [(defs.definitions[0], "resource_id: '$.payload.instance_id' "
              'selected nothing')])
    assert defs.build_samples({'event_type': None}) == ([], [])
    assert defs.build_samples({}) == ([], [])


def test_notifications_without_message_id_get_content_ids(tmp_path):
    defs = load(tmp_path, SIMPLE)
    payload = {'memory_mb': 512, 'instance_id': 'i-1'}
    first, _ = build(defs, notification(payload=payload, message_id=None))
    again, _ = build(defs, notification(payload=dict(payload),
                                        message_id=None))
    other, _ = build(defs, notification(payload=dict(payload, memory_mb=1024),
                                        message_id=None))
    assert first[0]['id'] == again[0]['id']
    assert first[0]['id'] != other[0]['id']
    assert first[0]['message_id'] is None
