"""Composing a WSGI application from a paste-deploy file, for every
calipso HTTP service (the API, a channel's proxy, the channel controller).

paste-deploy hands its factories strings only: ``load`` registers the
ConfigOpts under a key it passes in ``global_conf``, where ``conf_of``
finds it.
"""

import os
import uuid

from paste import deploy

from calipso_agent import shipped

CONF_KEY = 'calipso_conf_key'
_CONFIGS = {}


def conf_of(global_conf):
    """The ConfigOpts a ``load`` call handed to the factories (None when
    paste-deploy was started by another program)."""
    return _CONFIGS.get((global_conf or {}).get(CONF_KEY))


def required_conf(global_conf, what):
    """``conf_of(global_conf)``, for an application that has no default
    configuration; ValueError naming ``what`` when paste-deploy was started
    by another program."""
    conf = conf_of(global_conf)
    if conf is None:
        raise ValueError(f'{what} is composed by load_app, which hands it '
                         'its configuration')
    return conf


def config_path(conf, group):
    """The paste-deploy file of ``[group] paste_config``: an absolute path,
    else looked up in the configuration directories, then in etc/calipso
    and /etc/calipso. ValueError when it is nowhere."""
    name = conf[group].paste_config
    if os.path.isabs(name):
        candidates = [name]
    else:
        found = conf.find_file(name)
        candidates = ([found] if found else []) + [
            os.path.join(d, name) for d in shipped.ETC_DIRS]
    for path in candidates:
        if os.path.isfile(path):
            return os.path.abspath(path)
    raise ValueError(f'[{group}] paste_config {name} not found (looked in '
                     f'{", ".join(candidates)})')


def load(conf, group, pipeline='main'):
    """The ``pipeline`` of the paste file of ``[group]``, its factories
    handed ``conf``."""
    key = str(uuid.uuid4())
    _CONFIGS[key] = conf
    try:
        return deploy.loadapp(f'config:{config_path(conf, group)}',
                              name=pipeline, global_conf={CONF_KEY: key})
    finally:
        del _CONFIGS[key]
