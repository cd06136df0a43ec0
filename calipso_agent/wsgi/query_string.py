"""The simple query of a v2 query string: the repeated ``q.field``,
``q.op``, ``q.value``, ``q.type`` parameters, read into terms by the API
(api/query.py) and rewritten by a channel's proxy (its scope)."""

from calipso_agent.wsgi import errors

QUERY_KEYS = ('q.field', 'q.op', 'q.value', 'q.type')


def query_quadruples(params):
    """(field, op, value, type) of each term of the repeated q.*
    parameters of a request (a webob MultiDict): one q.field and q.value
    per term, q.op and q.type for none or every term ('' when not
    given)."""
    fields, ops, values, types = (params.getall(k) for k in QUERY_KEYS)
    count = len(fields)
    if len(values) != count:
        raise errors.InvalidParameterError(
            'q.value', f'{len(values)} q.value for {count} q.field: give '
                       'one q.value per q.field')
    for name, given in (('q.op', ops), ('q.type', types)):
        if given and len(given) != count:
            raise errors.InvalidParameterError(
                name, f'{len(given)} {name} for {count} q.field: give '
                      f'none or one {name} per q.field')
    return list(zip(fields, ops or [''] * count, values,
                    types or [''] * count, strict=True))
