"""Options: the generated sample configuration is up to date."""

import os
import re
import subprocess
import sys

from calipso_agent import opts
from tests import helpers

SAMPLE = os.path.join(helpers.ETC, 'calipso.conf.sample')
GENERATOR = os.path.join(helpers.ETC, 'calipso-config-generator.conf')


def calipso_blocks(text):
    """The parts of a sample config that our own options produce."""
    blocks = re.split(r'\n(?=\[)', text)
    ours = []
    for block in blocks:
        for part in re.split(r'\n#\n# From ', block):
            if part.startswith('calipso\n'):
                ours.append((block.split('\n', 1)[0], part))
    return ours


def test_sample_config_is_not_stale(tmp_path):
    output = tmp_path / 'calipso.conf.sample'
    subprocess.run([sys.executable, '-m', 'oslo_config.generator',
                    '--config-file', GENERATOR, '--output-file',
                    str(output)], check=True, cwd=helpers.REPO, timeout=120,
                   capture_output=True)
    with open(SAMPLE) as handle:
        committed = handle.read()
    generated = output.read_text()
    assert calipso_blocks(generated), 'no calipso options generated'
    assert calipso_blocks(committed) == calipso_blocks(generated), (
        'etc/calipso/calipso.conf.sample is stale: run tox -e genconfig')


def test_every_group_is_listed_once():
    groups = [group for group, _ in opts.list_opts()]
    assert len(groups) == len(set(groups))
    conf = helpers.make_conf()
    assert conf.notification.batch_size == 100
    assert conf.meter.meter_definitions_dirs == ['/etc/calipso/meters.d']
