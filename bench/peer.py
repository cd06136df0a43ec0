"""The peer: Ceilometer 27.0.0's notification agent, in its own virtualenv.

The virtualenv is created on first use (``pip install ceilometer==27.0.0``)
and reused while it imports that version. The agent runs with the
configuration of /work/shared/peer-benchmark.md: one worker, batches of
100, the meter pipeline only, the shipped meters.yaml, and one pipeline
source (``meters: ["*"]``) publishing to a file, one sample a line.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

from bench import workload

CEILOMETER_VERSION = '27.0.0'
DEFAULT_VENV = Path.home() / '.cache' / 'calipso-bench' / 'ceilometer27'
BATCH_SIZE = 100
OUTPUT = 'samples.log'

_PROBE = ('import importlib.metadata as m, os, ceilometer.notification; '
          'print(m.version("ceilometer")); '
          'print(os.path.dirname(ceilometer.__file__))')


def clean_env():
    """The environment for a program of another virtualenv."""
    env = dict(os.environ)
    for name in ('PYTHONPATH', 'PYTHONHOME', 'VIRTUAL_ENV'):
        env.pop(name, None)
    return env


def probe(venv):
    """Ceilometer's package directory in ``venv``, None if not usable."""
    python = Path(venv) / 'bin' / 'python'
    agent = Path(venv) / 'bin' / 'ceilometer-agent-notification'
    if not python.exists() or not agent.exists():
        return None
    try:
        out = subprocess.run([str(python), '-c', _PROBE],
                             capture_output=True, text=True, timeout=120,
                             env=clean_env(), check=True).stdout.split('\n')
    except (OSError, subprocess.SubprocessError):
        return None
    if out[0].strip() != CEILOMETER_VERSION:
        return None
    return Path(out[1].strip())


def ensure_venv(venv=DEFAULT_VENV, say=print):
    """Create the virtualenv unless it already works; its package dir."""
    venv = Path(venv)
    package = probe(venv)
    if package:
        return package
    say(f'creating {venv} with ceilometer=={CEILOMETER_VERSION} '
        '(first use, a few minutes)')
    venv.parent.mkdir(parents=True, exist_ok=True)
    log = venv.parent / f'{venv.name}-install.log'
    started = time.monotonic()
    with log.open('w') as out:
        subprocess.run([sys.executable, '-m', 'venv', '--clear', str(venv)],
                       stdout=out, stderr=subprocess.STDOUT, check=True,
                       timeout=300)
        subprocess.run([str(venv / 'bin' / 'python'), '-m', 'pip', 'install',
                        f'ceilometer=={CEILOMETER_VERSION}'],
                       stdout=out, stderr=subprocess.STDOUT, check=True,
                       timeout=1800, env=clean_env())
    package = probe(venv)
    if not package:
        raise RuntimeError(f'ceilometer is not usable in {venv}; see {log}')
    say(f'installed in {time.monotonic() - started:.0f} s (log: {log})')
    return package


def configure(workdir, venv, package, transport_url, exchanges, topic,
              batch_timeout=None):
    """Write the agent's configuration; (argv, output file)."""
    workdir = Path(workdir)
    output = workdir / OUTPUT
    pipeline = workdir / 'pipeline.yaml'
    workload.write_file_pipeline(pipeline, output)
    lines = [
        '[DEFAULT]',
        f'transport_url = {transport_url}',
        f'pipeline_cfg_file = {pipeline}',
        '[notification]',
        'workers = 1',
        f'batch_size = {BATCH_SIZE}',
        'pipelines = meter',
        *(f'notification_control_exchanges = {e}' for e in exchanges),
        *([f'batch_timeout = {batch_timeout}'] if batch_timeout else []),
        '[oslo_messaging_notifications]',
        f'topics = {topic}',
        '[meter]',
        f'meter_definitions_dirs = {package / "data" / "meters.d"}',
    ]
    conf = workdir / 'ceilometer.conf'
    conf.write_text('\n'.join(lines) + '\n')
    return [str(Path(venv) / 'bin' / 'ceilometer-agent-notification'),
            '--config-file', str(conf)], output

