"""/v2/polling/sources: the probing level, changed at run time.

The sources are those of the polling file the API is configured with
(``[polling] cfg_file``, the file the polling agents read); an admin
overrides a source's ``interval``, ``meters`` or ``enabled`` here. The
override is kept by the store and every polling agent applies it at its
next cycle, over whatever the file says; a field set to null drops its
override (the file's value applies again), and DELETE drops the whole
override, also of a source the file no longer has. Admins only: these
routes change what every agent does and show no project's data.
"""

from calipso_agent.pollsters import sources as sources_mod
from calipso_agent.wsgi import errors


def _check_admin(ctx):
    if not ctx.identity.is_admin:
        raise errors.ForbiddenError('RBAC Authorization Failed: the '
                                    'polling sources are for admins only')


def polling_file(conf):
    """The path of the polling file of ``conf``, found like the agent
    finds it (relative to the configuration directories)."""
    path = conf.polling.cfg_file
    return conf.find_file(path) or path


def _definition(ctx):
    """(path, PollingDefinition); the definition is None when the file
    cannot be used, with the reason as its only error."""
    path = polling_file(ctx.conf)
    try:
        return path, sources_mod.load_file(path), None
    except sources_mod.PollingFileError as exc:
        return path, None, str(exc)


def _item(source, override):
    """A source as the API shows it: in effect, as the file says, and
    the override (None when there is none)."""
    effective = source.overridden(override)
    item = effective.as_dict()
    item['overridden'] = list(effective.overrides)
    item['file'] = {'interval': source.interval,
                    'meters': list(source.meters), 'enabled': source.enabled}
    item['override'] = dict(override) if override else None
    return item


def list_sources(ctx):
    _check_admin(ctx)
    path, definition, file_error = _definition(ctx)
    overrides = ctx.storage.get_polling_overrides()
    known = definition.names() if definition is not None else []
    return {
        'file': path,
        'errors': [file_error] if file_error else list(definition.errors),
        'sources': [_item(source, overrides.get(source.name))
                    for source in definition or ()],
        # Overrides of sources the file no longer has: kept (the source
        # may come back) but applied to nothing.
        'orphan_overrides': {name: override for name, override in
                             sorted(overrides.items()) if name not in known},
    }


def _changes(body):
    """The store's changes of a PUT body: the checked values, and None
    for each field set to null; 400 naming the field otherwise."""
    if not isinstance(body, dict):
        raise errors.InvalidParameterError(
            'body', 'must be an object with interval, meters or enabled')
    dropped = {field: None for field, value in body.items()
               if value is None}
    unknown = sorted(set(dropped) - set(sources_mod.OVERRIDE_FIELDS))
    if unknown:
        raise errors.InvalidParameterError(
            unknown[0], 'unknown field (interval, meters and enabled may '
                        'be set)')
    given = {field: value for field, value in body.items()
             if value is not None}
    if not given and not dropped:
        raise errors.InvalidParameterError(
            'body', 'sets none of interval, meters, enabled')
    checked = {}
    if given:
        try:
            checked = sources_mod.validate_override(given)
        except sources_mod.SourceError as exc:
            raise errors.InvalidParameterError(exc.field, exc.reason)
    return {**dropped, **checked}


def put_source(ctx, name):
    _check_admin(ctx)
    changes = _changes(ctx.json_body())
    path, definition, file_error = _definition(ctx)
    source = next((s for s in definition or () if s.name == name), None)
    if source is None:
        raise errors.NotFoundError(f'Polling source {name} Not Found in '
                                   f'{path}' + (f' ({file_error})'
                                                if file_error else ''))
    override = ctx.storage.set_polling_override(name, changes)
    return _item(source, override)


def delete_override(ctx, name):
    """Drop the override of source ``name``, a source of the file or one
    it no longer has: the file's definition applies again at the agents'
    next cycle. The answer names what was removed."""
    _check_admin(ctx)
    override = ctx.storage.get_polling_overrides().get(name)
    if override is None:
        raise errors.NotFoundError(f'Polling override of {name} Not Found')
    ctx.storage.set_polling_override(
        name, dict.fromkeys(sources_mod.OVERRIDE_FIELDS))
    return {'name': name, 'removed': override}
