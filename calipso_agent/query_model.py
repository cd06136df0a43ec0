"""The complex-query tree, walked in one place.

A tree is ``{"and"|"or": [two or more trees]}``, ``{"not": tree}`` or a
leaf ``{op: {field: value}}``. ``Walker`` walks it strictly, checking
its shape and rebuilding it leaf by leaf: the API's translation from
Ceilometer's language and the store's validation are Walkers that differ
only in their words and their leaves. ``find_terms`` searches any JSON
value for the terms on some fields without judging its shape: the proxy
refuses a tree naming a foreign project, and leaves every other verdict
to the API behind it.

Nothing here imports the API or a storage driver: the proxy uses it.
"""

LOGICAL_OPERATORS = ('and', 'or')
MAX_DEPTH = 50


class Walker:
    """A strict walk of a tree; subclasses say how a tree is wrong (their
    error class and messages) and what a leaf becomes."""

    error = ValueError
    # What a node that is not one operator is said to be instead.
    expression_shape = 'a mapping of one operator'
    # What the operand of a leaf is said to need.
    leaf_shape = 'one field and its value'

    def walk(self, expression, depth=0):
        """The tree rebuilt with each leaf as ``leaf`` makes it; the
        operators lower case."""
        if depth > MAX_DEPTH:
            raise self.error('expression nested too deeply')
        if not isinstance(expression, dict) or len(expression) != 1:
            raise self.error(f'{expression!r} is not an expression '
                             f'({self.expression_shape})')
        ((op, operand),) = expression.items()
        if not isinstance(op, str):
            raise self.error(f'operator {op!r} is not a string')
        op = op.lower()
        if op in LOGICAL_OPERATORS:
            if not isinstance(operand, list) or len(operand) < 2:
                raise self.error(f'{op} needs a list of at least two '
                                 'expressions')
            return {op: [self.walk(e, depth + 1) for e in operand]}
        if op == 'not':
            return {'not': self.walk(operand, depth + 1)}
        op = self.leaf_operator(op)
        if not isinstance(operand, dict) or len(operand) != 1:
            raise self.error(f'{op} needs {self.leaf_shape}, not '
                             f'{operand!r}')
        ((field, value),) = operand.items()
        return self.leaf(op, field, value)

    def leaf_operator(self, op):
        """The operator of a leaf (lower case) as the tree keeps it, or
        the error."""
        return op

    def leaf(self, op, field, value):
        """What the leaf ``{op: {field: value}}`` becomes."""
        return {op: {field: value}}


def find_terms(value, is_term_key, too_deep, depth=0):
    """(key, value) of every mapping item of a JSON value, at any depth
    and under any operator, whose key ``is_term_key``, in document order;
    the values of the other items are searched in turn. ``too_deep``
    makes the exception raised beyond MAX_DEPTH."""
    if depth > MAX_DEPTH:
        raise too_deep()
    if isinstance(value, list):
        for child in value:
            yield from find_terms(child, is_term_key, too_deep, depth + 1)
    elif isinstance(value, dict):
        for key, child in value.items():
            if is_term_key(key):
                yield key, child
            else:
                yield from find_terms(child, is_term_key, too_deep,
                                      depth + 1)
