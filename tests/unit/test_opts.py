"""Options: the generated sample configuration is up to date."""

import os
import re
import subprocess
import sys

import pytest

from calipso_agent import opts
from tests.helpers import basics

# (sample file, generator config, our namespace)
SAMPLES = [
    ('calipso.conf.sample', 'calipso-config-generator.conf', 'calipso'),
    ('calipso-proxy.conf.sample', 'calipso-proxy-config-generator.conf',
     'calipso_proxy'),
]


def own_blocks(text, namespace):
    """The parts of a sample config that our own options produce."""
    blocks = re.split(r'\n(?=\[)', text)
    ours = []
    for block in blocks:
        for part in re.split(r'\n#\n# From ', block):
            if part.startswith(namespace + '\n'):
                ours.append((block.split('\n', 1)[0], part))
    return ours


@pytest.mark.parametrize('sample,generator,namespace', SAMPLES)
def test_sample_config_is_not_stale(tmp_path, sample, generator,
                                    namespace):
    output = tmp_path / sample
    subprocess.run([sys.executable, '-m', 'oslo_config.generator',
                    '--config-file', os.path.join(basics.ETC, generator),
                    '--output-file', str(output)], check=True,
                   cwd=basics.REPO, timeout=120, capture_output=True)
    with open(os.path.join(basics.ETC, sample)) as handle:
        committed = handle.read()
    generated = output.read_text()
    assert own_blocks(generated, namespace), 'no options of ours'
    assert own_blocks(committed, namespace) == own_blocks(
        generated, namespace), (
        f'etc/calipso/{sample} is stale: run tox -e genconfig')


def test_every_group_is_listed_once():
    groups = [group for group, _ in opts.list_opts()]
    assert len(groups) == len(set(groups))
    conf = basics.make_conf()
    assert conf.notification.batch_size == 100
    assert conf.meter.meter_definitions_dirs == ['/etc/calipso/meters.d']


def test_configuration_reference_is_not_stale(tmp_path):
    """doc/configuration.md is what tools/config_reference.py writes."""
    output = tmp_path / 'configuration.md'
    subprocess.run([sys.executable, os.path.join('tools',
                                                 'config_reference.py'),
                    str(output)], check=True, cwd=basics.REPO, timeout=120,
                   capture_output=True)
    with open(os.path.join(basics.REPO, 'doc', 'configuration.md')) as f:
        assert f.read() == output.read_text(), (
            'doc/configuration.md is stale: run tox -e genconfig')
