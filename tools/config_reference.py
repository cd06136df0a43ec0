"""Writes doc/configuration.md from the registered options.

    python tools/config_reference.py [OUTPUT]   (tox -e genconfig runs it)

The reference lists every option of calipso's own namespaces (calipso,
calipso_proxy) with its type, default and help, as oslo-config-generator
lists them in the sample files; tests/unit/test_opts.py fails when the
file is not what this script writes.
"""

import os
import sys

from calipso_agent import opts as agent_opts
from calipso_proxy import opts as proxy_opts

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUT = os.path.join(REPO, 'doc', 'configuration.md')
NAMESPACES = (
    ('calipso', agent_opts.list_opts,
     'calipso.conf: the agents, the collector, the API, the storage tools'),
    ('calipso_proxy', proxy_opts.list_opts,
     'the channel controller and the proxies it writes proxy.conf for'),
)
HEADER = """\
# Configuration reference

Generated from the options by `tools/config_reference.py` (`tox -e
genconfig`); do not edit. The commented sample files
`etc/calipso/calipso.conf.sample` and
`etc/calipso/calipso-proxy.conf.sample` are generated from the same
options. Options of the libraries (oslo.log's logging, oslo.messaging's
`transport_url` and `[oslo_messaging_rabbit]`, keystonemiddleware's
`[keystone_authtoken]`) are in the sample files and their projects'
documentation.
"""


def _default(opt):
    if opt.sample_default is not None:
        return str(opt.sample_default)
    if opt.default is None or opt.default == '' or opt.default == []:
        return '(none)' if opt.default is None else repr(opt.default)
    if isinstance(opt.default, list):
        return ', '.join(str(v) for v in opt.default)
    return str(opt.default)


def _type(opt):
    name = type(opt).__name__.removesuffix('Opt') or 'String'
    details = []
    for bound in ('min', 'max'):
        value = getattr(opt.type, bound, None)
        if value is not None:
            details.append(f'{bound} {value}')
    choices = getattr(opt.type, 'choices', None)
    if choices:
        details.append('one of ' + ', '.join(f'`{c}`' for c in choices))
    return name + (f' ({"; ".join(details)})' if details else '')


def _help(opt):
    return ' '.join((opt.help or '').split()).replace('|', '\\|')


def reference():
    lines = [HEADER]
    for namespace, list_opts, what in NAMESPACES:
        lines.append(f'\n## Namespace `{namespace}`: {what}\n')
        groups = {}
        for group, options in list_opts():
            name = getattr(group, 'name', group) or 'DEFAULT'
            groups.setdefault(name, []).extend(options)
        for group, options in groups.items():
            lines.append(f'\n### [{group}]\n')
            lines.append('| option | type | default | what it does |')
            lines.append('|---|---|---|---|')
            for opt in options:
                default = '*secret*' if opt.secret else _default(opt)
                lines.append(f'| `{opt.dest}` | {_type(opt)} | '
                             f'`{default}` | {_help(opt)} |')
    return '\n'.join(lines) + '\n'


def main(argv):
    output = argv[0] if argv else OUTPUT
    with open(output, 'w') as handle:
        handle.write(reference())
    print(f'wrote {output}')


if __name__ == '__main__':
    main(sys.argv[1:])
