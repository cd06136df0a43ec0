"""polling.yaml parsing and override validation."""

import pytest

from calipso_agent.pollsters import sources


def test_ceilometer_file_parses(tmp_path):
    path = tmp_path / 'polling.yaml'
    path.write_text('---\nsources:\n'
                    '  - name: some_pollsters\n    interval: 300\n'
                    '    meters:\n      - cpu\n      - "disk.*"\n'
                    '  - name: meter_source\n    interval: 60\n'
                    '    meters: ["*", "!load.*"]\n'
                    '    discovery: [local_host]\n'
                    '    resources: [a, b]\n')
    definition = sources.load_file(str(path))
    assert definition.errors == []
    first, second = definition.sources
    assert (first.name, first.interval, first.meters) == (
        'some_pollsters', 300, ['cpu', 'disk.*'])
    assert first.selects('disk.read.bytes') and not first.selects('load.1')
    assert second.selects('cpu') and not second.selects('load.5')
    assert second.discovery == ['local_host']
    assert second.resources == ['a', 'b']
    assert first.enabled and first.overrides == ()


@pytest.mark.parametrize('entry, field', [
    ({'interval': 10, 'meters': ['*']}, 'name'),
    ({'name': 's', 'meters': ['*']}, 'interval'),
    ({'name': 's', 'interval': 0, 'meters': ['*']}, 'interval'),
    ({'name': 's', 'interval': -5, 'meters': ['*']}, 'interval'),
    ({'name': 's', 'interval': 'often', 'meters': ['*']}, 'interval'),
    ({'name': 's', 'interval': True, 'meters': ['*']}, 'interval'),
    ({'name': 's', 'interval': 10}, 'meters'),
    ({'name': 's', 'interval': 10, 'meters': []}, 'meters'),
    ({'name': 's', 'interval': 10, 'meters': ['!']}, 'meters'),
    ({'name': 's', 'interval': 10, 'meters': [3]}, 'meters'),
    ({'name': 's', 'interval': 10, 'meters': ['*'],
      'resources': 'x'}, 'resources'),
    ({'name': 's', 'interval': 10, 'meters': ['*'],
      'discovery': [{}]}, 'discovery'),
])
def test_broken_source_is_reported_and_others_kept(entry, field):
    good = {'name': 'good', 'interval': 5, 'meters': ['cpu']}
    definition = sources.parse({'sources': [entry, good]}, origin='f.yaml')
    assert definition.names() == ['good']
    [error] = definition.errors
    assert error.startswith('f.yaml: source ')
    assert f': {field}: ' in error


def test_duplicate_name_is_refused():
    entry = {'name': 'twice', 'interval': 5, 'meters': ['cpu']}
    definition = sources.parse({'sources': [entry, dict(entry, interval=9)]})
    assert [s.interval for s in definition] == [5]
    assert 'twice' in definition.errors[0]
    assert ': name: ' in definition.errors[0]


@pytest.mark.parametrize('text, reason', [
    ('sources: [\n', 'invalid YAML'),
    ('- just a list\n', 'mapping'),
    ('sources: 3\n', 'sources: must be a list'),
    ('', 'mapping'),
])
def test_unusable_file_is_refused_whole(tmp_path, text, reason):
    path = tmp_path / 'polling.yaml'
    path.write_text(text)
    with pytest.raises(sources.PollingFileError) as info:
        sources.load_file(str(path))
    assert str(path) in str(info.value)
    assert reason in str(info.value)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(sources.PollingFileError, match='cannot be read'):
        sources.load_file(str(tmp_path / 'nothing.yaml'))


def test_override_is_validated_and_normalized():
    assert sources.validate_override(
        {'interval': 30.0, 'meters': 'cpu*', 'enabled': False}) == {
            'interval': 30, 'meters': ['cpu*'], 'enabled': False}
    assert sources.validate_override({'interval': 0.5}) == {'interval': 0.5}


@pytest.mark.parametrize('body, field', [
    ([], 'body'),
    ({}, 'body'),
    ({'interval': 0}, 'interval'),
    ({'interval': '10'}, 'interval'),
    ({'meters': []}, 'meters'),
    ({'enabled': 'yes'}, 'enabled'),
    ({'resources': ['x']}, 'resources'),
])
def test_bad_override_names_its_field(body, field):
    with pytest.raises(sources.SourceError) as info:
        sources.validate_override(body)
    assert info.value.field == field
    assert info.value.reason


def test_override_applies_over_the_file_and_says_so():
    source = sources.SourceDefinition('s', 60, ['*'], discovery=['d'])
    changed = source.overridden({'interval': 5, 'enabled': False,
                                 'updated_at': '2026-01-01T00:00:00'})
    assert (changed.interval, changed.enabled, changed.meters) == (
        5, False, ['*'])
    assert changed.overrides == ('interval', 'enabled')
    assert changed.discovery == ['d']
    assert source.overridden(None) is source
