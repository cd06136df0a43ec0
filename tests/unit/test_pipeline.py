"""pipeline.yaml: sources select meters, sinks fan out to publishers."""

import json

import pytest
import yaml

from calipso_agent import pipeline, storage
from tests.helpers import basics


def read_lines(path):
    with open(path) as handle:
        return [json.loads(line)['name'] for line in handle]


@pytest.mark.parametrize('patterns,name,selected', [
    (['*'], 'cpu', True),
    (['disk.*'], 'disk.read', True),
    (['disk.*'], 'cpu', False),
    (['*', '!disk.*'], 'disk.read', False),
    (['*', '!disk.*'], 'cpu', True),
    (['!cpu'], 'memory', True),
    (['!cpu'], 'cpu', False),
    (['cpu', 'memory'], 'memory', True),
])
def test_meter_selector(patterns, name, selected):
    assert pipeline.MeterSelector(patterns)(name) is selected


@pytest.mark.parametrize('bad', [[], 'x' and [''], ['!'], [3], None, {}])
def test_meter_selector_rejects_garbage(bad):
    with pytest.raises(ValueError):
        pipeline.MeterSelector(bad)


def test_routing_to_sinks(tmp_path):
    conf = basics.make_conf()
    content = {
        'sources': [
            {'name': 'all', 'meters': ['*', '!disk.*'], 'sinks': ['a']},
            {'name': 'disk', 'meters': ['disk.*'], 'sinks': ['a', 'b']},
        ],
        'sinks': [
            {'name': 'a', 'publishers': [f'file://{tmp_path}/a.jsonl']},
            {'name': 'b', 'publishers': [f'file://{tmp_path}/b.jsonl']},
        ],
    }
    p = pipeline.Pipeline.from_dict(conf, content)
    assert p.errors == []
    p.publish_samples([basics.make_sample(name=name)
                       for name in ('cpu', 'disk.read', 'memory')])
    p.close()
    assert sorted(read_lines(tmp_path / 'a.jsonl')) == ['cpu', 'disk.read',
                                                        'memory']
    assert read_lines(tmp_path / 'b.jsonl') == ['disk.read']


def test_broken_entries_are_reported_and_skipped(tmp_path):
    conf = basics.make_conf()
    path = tmp_path / 'pipeline.yaml'
    path.write_text(yaml.safe_dump({
        'sources': [
            {'name': 'good', 'meters': ['*'], 'sinks': ['ok', 'ghost']},
            {'name': 'nometers', 'sinks': ['ok']},
            {'meters': ['*'], 'sinks': ['ok']},
        ],
        'sinks': [
            {'name': 'ok', 'publishers': [
                f'file://{tmp_path}/out.jsonl', 'nosuch://x',
                'file://relative/path', 'not a url', 42]},
            {'name': 'empty', 'publishers': []},
            {'name': 'allbad', 'publishers': ['udp://']},
        ],
    }))
    p = pipeline.Pipeline.from_file(conf, str(path))
    text = '\n'.join(p.errors)
    assert "sink ok: publisher 'nosuch://x': no publisher for scheme" in text
    assert "sink ok: publisher 'file://relative/path'" in text
    assert "sink ok: publisher 'not a url'" in text
    assert 'sink ok: publisher 42' in text
    assert 'sink empty: a sink needs a list of publishers' in text
    assert "source good: sink 'ghost': no such sink" in text
    assert 'source nometers: meters must be' in text
    assert 'source 2: a source needs a name' in text
    assert all(e.startswith(str(path)) for e in p.errors)
    p.publish_samples([basics.make_sample(name='cpu')])
    p.close()
    assert read_lines(tmp_path / 'out.jsonl') == ['cpu']


@pytest.mark.parametrize('text,message', [
    ('sources: [unclosed', 'invalid YAML'),
    ('- a list', 'must be a mapping'),
])
def test_unusable_pipeline_file(tmp_path, text, message):
    path = tmp_path / 'p.yaml'
    path.write_text(text)
    with pytest.raises(pipeline.PipelineError, match=message):
        pipeline.Pipeline.from_file(basics.make_conf(), str(path))


def test_missing_pipeline_file(tmp_path):
    with pytest.raises(pipeline.PipelineError, match='cannot be read'):
        pipeline.Pipeline.from_file(basics.make_conf(),
                                    str(tmp_path / 'none.yaml'))


def test_publisher_failure_propagates(tmp_path):
    class Failing:
        def publish_samples(self, samples):
            raise OSError('down')

    p = pipeline.Pipeline(
        [pipeline.Source('s', pipeline.MeterSelector(['*']),
                         [pipeline.Sink('k', [Failing()])])], [])
    with pytest.raises(OSError):
        p.publish_samples([basics.make_sample(name='cpu')])
    p.publish_samples([])


def test_shipped_pipeline_file_stores_every_sample(tmp_path):
    content = yaml.safe_load(open(f'{basics.ETC}/pipeline.yaml'))
    assert content['sinks'][0]['publishers'] == ['database://',
                                                 'subscription://']
    conf = basics.make_conf(
        database__connection=f'sqlite:///{tmp_path}/calipso.sqlite')
    p = pipeline.Pipeline.from_dict(conf, content)
    assert p.errors == [] and p.sinks_for('anything')
    p.publish_samples([basics.make_sample(name='cpu')])
    store = storage.get_connection(conf)
    assert [s.name for s in store.get_samples()] == ['cpu']
    store.close()
    p.close()
