"""Where the files the package ships as defaults are.

``etc/calipso`` of the source tree (an editable install or a clone):
meter definitions, pipeline, paste-deploy files; ``/etc/calipso`` is
where a packaged deployment keeps its own copies.
"""

import os

SOURCE_ETC = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'etc',
    'calipso')
SYSTEM_ETC = '/etc/calipso'
ETC_DIRS = (SOURCE_ETC, SYSTEM_ETC)


def etc_dir():
    """The first of ETC_DIRS that exists (the source tree's otherwise)."""
    for directory in ETC_DIRS:
        if os.path.isdir(directory):
            return directory
    return SOURCE_ETC


def meter_definitions_dir():
    """The shipped meter definitions (``meters.d``)."""
    return os.path.join(etc_dir(), 'meters.d')
