import pytest

from mfuse.layers.params import REQUIRED, Param, parse_param_str

SCHEMA = {
    "offset": Param(1.0, float),
    "mode": Param("AREA", str, choices=("AREA", "NEAREST")),
    "k": Param(REQUIRED, int, check=lambda v: v > 0, rule="k > 0"),
}


def test_defaults_json_and_yaml():
    assert parse_param_str('{"k": 3}', SCHEMA, "L") == {"offset": 1.0, "mode": "AREA", "k": 3}
    assert parse_param_str("k: 2\noffset: 2\nmode: nearest", SCHEMA, "L") == {
        "offset": 2.0, "mode": "NEAREST", "k": 2}


@pytest.mark.parametrize("text, message", [
    ('{"k": 1, "bogus": 1}', "unknown param_str key"),
    ('{"k": 0}', "k > 0"),
    ('{"k": 1.5}', "must be int"),
    ('{"k": true}', "must be int"),
    ('{"k": 1, "mode": "CUBIC"}', "must be one of"),
    ('{}', "is required"),
    ('[1, 2]', "must be a mapping"),
    ('{"k": ', "not valid JSON/YAML"),
])
def test_bad_param_str_names_layer_and_key(text, message):
    with pytest.raises(ValueError, match=message) as err:
        parse_param_str(text, SCHEMA, "amp1")
    assert str(err.value).startswith("amp1:")
