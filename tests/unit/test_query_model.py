"""The one walker of complex-query trees: the strict walk the API and
the store validate with, and the proxy's search for project terms."""

import re

import pytest

from calipso_agent import query_model


class Upper(query_model.Walker):
    """A walker whose leaves keep their field in upper case."""

    def leaf_operator(self, op):
        if op == 'bad':
            raise ValueError('bad operator')
        return op

    def leaf(self, op, field, value):
        return {op: {field.upper(): value}}


def nested(depth):
    expression = {'=': {'a': 1}}
    for _ in range(depth):
        expression = {'not': expression}
    return expression


def test_walk_rebuilds_the_tree_leaf_by_leaf():
    tree = {'AND': [{'=': {'a': 1}},
                    {'not': {'Or': [{'<': {'b': 2}}, {'>': {'c': 3}}]}}]}
    assert Upper().walk(tree) == {
        'and': [{'=': {'A': 1}},
                {'not': {'or': [{'<': {'B': 2}}, {'>': {'C': 3}}]}}]}


@pytest.mark.parametrize('tree, message', [
    ([], "[] is not an expression (a mapping of one operator)"),
    ({'=': {'a': 1}, 'or': []}, 'is not an expression'),
    ({1: {'a': 1}}, 'operator 1 is not a string'),
    ({'and': [{'=': {'a': 1}}]}, 'and needs a list of at least two '
     'expressions'),
    ({'or': {'=': {'a': 1}}}, 'or needs a list of at least two'),
    ({'bad': {'a': 1}}, 'bad operator'),
    ({'=': {'a': 1, 'b': 2}}, "= needs one field and its value, not"),
    ({'not': {'=': []}}, '= needs one field and its value, not []'),
])
def test_walk_names_what_is_wrong(tree, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Upper().walk(tree)


def test_walk_bounds_the_depth():
    assert Upper().walk(nested(query_model.MAX_DEPTH))
    with pytest.raises(ValueError, match='nested too deeply'):
        Upper().walk(nested(query_model.MAX_DEPTH + 1))


def test_find_terms_finds_keys_anywhere_in_document_order():
    value = {'x': [{'p': 1}, {'and': {'p': [2, 3]}}], 'p': 4,
             'y': {'q': {'p': 5}}}
    found = list(query_model.find_terms(value, lambda key: key == 'p',
                                        lambda: ValueError('deep')))
    assert found == [('p', 1), ('p', [2, 3]), ('p', 4), ('p', 5)]


def test_find_terms_does_not_search_inside_a_term():
    found = list(query_model.find_terms({'p': {'p': 1}}, 'p'.__eq__,
                                        lambda: ValueError('deep')))
    assert found == [('p', {'p': 1})]


def test_find_terms_bounds_the_depth():
    deep = 'leaf'
    for _ in range(query_model.MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(LookupError):
        list(query_model.find_terms(deep, 'p'.__eq__, LookupError))
    assert list(query_model.find_terms(deep[0], 'p'.__eq__,
                                       LookupError)) == []
