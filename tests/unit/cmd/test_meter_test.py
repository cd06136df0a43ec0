"""calipso-meter-test: samples and reasons per notification file."""

import json
import os
import subprocess
import sys

import pytest

from calipso_agent.cmd import meter_test
from tests.helpers import basics, fixtures


def run(argv, capsys):
    status = meter_test.main(argv)
    lines = [json.loads(line) for line in
             capsys.readouterr().out.splitlines()]
    return status, lines


def fixture(name):
    return os.path.join(fixtures.NOTIFICATIONS, name + '.json')


def test_samples_and_reasons(capsys, tmp_path):
    garbage = tmp_path / 'garbage.json'
    garbage.write_text('{not json')
    not_notification = tmp_path / 'list.json'
    not_notification.write_text('[1, 2]')
    status, lines = run([
        '--config-file', os.devnull,
        '--meters', fixtures.CEILOMETER_METERS,
        fixture('nova_legacy__ceilometer-tests__instance_exists'),
        fixture('nova_versioned__nova-doc__compute-exception'),
        fixture('vcpe__cord-sample-publisher__vcpe'),
        str(garbage), str(not_notification),
    ], capsys)
    assert status == meter_test.EXIT_INPUT_ERROR
    exists, error, vcpe, bad_json, bad_shape = lines
    assert exists['reason'] is None
    assert sorted(s['name'] for s in exists['samples']) == [
        'disk.ephemeral.size', 'disk.root.size', 'memory', 'vcpus']
    assert set(exists['samples'][0]) == {
        'id', 'name', 'type', 'unit', 'volume', 'user_id', 'project_id',
        'resource_id', 'timestamp', 'recorded_at', 'resource_metadata',
        'source', 'message_id'}
    assert error['samples'] == []
    assert "priority 'ERROR' not handled" in error['reason']
    assert vcpe['reason'] == "no definition matches event type 'vcpe'"
    assert bad_json['reason'].startswith('cannot read notification')
    assert bad_shape['reason'].startswith('not a notification')


def test_failing_definition_is_explained(capsys, tmp_path):
    envelope = fixtures.load_envelope(
        'nova_legacy__ceilometer-tests__instance_exists')
    del envelope['payload']['memory_mb']
    path = tmp_path / 'n.json'
    path.write_text(json.dumps(envelope))
    status, (line,) = run(['--config-file', os.devnull, '--meters',
                           fixtures.CEILOMETER_METERS, str(path)], capsys)
    assert status == 0
    assert len(line['samples']) == 3
    assert 'meter memory' in line['reason']
    assert "'$.payload.memory_mb' selected nothing" in line['reason'] or (
        'volume' in line['reason'])


def test_definition_error_exits_non_zero(capsys, tmp_path):
    broken = tmp_path / 'broken.yaml'
    broken.write_text('metric:\n  - name: x\n    type: gauge\n')
    status, lines = run(['--config-file', os.devnull, '--meters',
                         str(broken), fixture('vcpe__cord-sample-publisher__'
                                              'vcpe')], capsys)
    assert status == meter_test.EXIT_DEFINITION_ERROR
    assert lines[0]['samples'] == []


def test_configured_definitions_are_used(capsys, tmp_path):
    conf = tmp_path / 'calipso.conf'
    conf.write_text(f'[meter]\nmeter_definitions_dirs = {basics.METERS_D}\n')
    status, (line,) = run(['--config-file', str(conf),
                           fixture('vcpe__cord-sample-publisher__vcpe')],
                          capsys)
    assert status == 0
    assert [s['name'] for s in line['samples']] == ['vsg']


@pytest.mark.functional
def test_console_script(tmp_path):
    proc = subprocess.run(
        [sys.executable, '-m', 'calipso_agent.cmd.meter_test',
         '--config-file', os.devnull, '--meters', fixtures.CEILOMETER_METERS,
         fixture('cinder__ceilometer-tests__volume_exists')],
        capture_output=True, text=True, timeout=60, check=True)
    (line,) = [json.loads(x) for x in proc.stdout.splitlines()]
    assert [s['name'] for s in line['samples']] == ['volume.size']


def test_shipped_definitions_without_configuration(capsys, tmp_path):
    conf = tmp_path / 'calipso.conf'
    conf.write_text(f'[meter]\nmeter_definitions_dirs = {tmp_path}/none\n')
    status = meter_test.main(['--config-file', str(conf), fixture(
        'cinder__ceilometer-tests__volume_exists')])
    out, err = capsys.readouterr()
    (line,) = [json.loads(x) for x in out.splitlines()]
    assert status == 0
    assert [s['name'] for s in line['samples']] == ['volume.size']
    assert 'using the shipped ones in' in err


def test_second_definition_file_after_one_flag_is_refused(capsys):
    status = meter_test.main([
        '--config-file', os.devnull, '--meters', fixtures.CEILOMETER_METERS,
        os.path.join(basics.METERS_D, 'cinder.yaml'),
        fixture('cinder__ceilometer-tests__volume_exists')])
    out, err = capsys.readouterr()
    assert status == meter_test.EXIT_INPUT_ERROR
    assert out == ''
    assert 'cinder.yaml: a meter definition file given as a notification' \
        in err


def test_meters_flag_once_per_file(capsys):
    status, lines = run([
        '--config-file', os.devnull,
        '--meters', os.path.join(basics.METERS_D, 'nova.yaml'),
        '--meters', os.path.join(basics.METERS_D, 'cinder.yaml'),
        fixture('cinder__ceilometer-tests__volume_exists')], capsys)
    assert status == 0
    assert [s['name'] for s in lines[0]['samples']] == ['volume.size']
