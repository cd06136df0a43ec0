import json

import pytest

from calipso_agent.storage.sql import values


@pytest.mark.parametrize('number', [
    2 ** 64 - 1, 2 ** 64, -2 ** 63, -2 ** 63 - 1, 10 ** 19, -10 ** 19,
    2 ** 70, -2 ** 70, 10 ** 40, 9999999999999999999, -9999999999999999999,
])
def test_integers_at_and_beyond_64_bits_stay_exact(number):
    text = values.dumps({'n': number, 'list': [number, 'x']})
    decoded = values.loads(text)
    assert decoded == {'n': number, 'list': [number, 'x']}
    assert type(decoded['n']) is int
    assert values.loads(text.encode()) == decoded


@pytest.mark.parametrize('value, text', [
    ({1: 'a', 'b': {2.5: None, True: [3]}},
     '{"1":"a","b":{"2.5":null,"true":[3]}}'),
    ({'n': 2 ** 70, 3: 'x'}, '{"n": 1180591620717411303424, "3": "x"}'),
    ({'when': values.EPOCH, 'set': frozenset()},
     '{"when":"1970-01-01T00:00:00+00:00","set":"frozenset()"}'),
])
def test_keys_that_are_not_strings_and_values_that_are_not_json(value,
                                                                 text):
    assert values.dumps(value) == text


@pytest.mark.parametrize('text', [
    '{"a": "\u00e9\u4e2d\U0001f600", "b": [1, 2.5, null, true]}',
    '"1234567890123456789012345"', '0.12345678901234567890123', '1e300',
    '[-0.0, 1E-7, 123456789012345678]', '{}', '[]', '"\\u20ac"',
])
def test_reads_as_json_does(text):
    assert values.loads(text) == json.loads(text)
    assert values.loads(text.encode()) == json.loads(text)
    assert values.loads(bytearray(text.encode())) == json.loads(text)


@pytest.mark.parametrize('text', ['{', '', '[1,]', 'nan', '[1] x',
                                  '[12345678901234567890'])
def test_not_json_is_a_value_error(text):
    with pytest.raises(ValueError):
        values.loads(text)
