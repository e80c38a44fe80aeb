"""Validation of the ``param_str`` of mfuse's Python layers.

``param_str`` is JSON or YAML (a mapping). It is parsed with ``yaml.safe_load`` (JSON is a subset of YAML);
nothing is ever evaluated.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml


@dataclass(frozen=True)
class Param:
    """One accepted key of a ``param_str``.

    Args:
        default: value used when the key is absent; ``REQUIRED`` makes the key mandatory.
        kind: expected Python type (``float`` also accepts ints; ``list`` a YAML sequence).
        choices: allowed values (compared after upper-casing strings), or None for any.
        check: extra predicate on the value, with ``rule`` describing it for the error message.
    """
    default: Any
    kind: type
    choices: Sequence[Any] | None = None
    check: Callable[[Any], bool] | None = None
    rule: str = ""


REQUIRED = object()


def _coerce(layer: str, key: str, value: Any, spec: Param) -> Any:
    if spec.kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if spec.kind is int and isinstance(value, bool):
        raise ValueError(f"{layer}: param_str key '{key}' must be int, got bool {value!r}")
    if not isinstance(value, spec.kind):
        raise ValueError(f"{layer}: param_str key '{key}' must be {spec.kind.__name__}, "
                         f"got {type(value).__name__} {value!r}")
    if spec.choices is not None:
        if isinstance(value, str):
            value = value.upper()
        if value not in spec.choices:
            raise ValueError(f"{layer}: param_str key '{key}' must be one of {list(spec.choices)}, got {value!r}")
    if spec.check is not None and not spec.check(value):
        raise ValueError(f"{layer}: param_str key '{key}' = {value!r} breaks the rule: {spec.rule}")
    return value


def parse_param_str(param_str: str, schema: dict[str, Param], layer: str) -> dict[str, Any]:
    """Parses and validates a layer's ``param_str``.

    Args:
        param_str: JSON or YAML mapping text; empty means all defaults.
        schema: accepted keys and their specs.
        layer: layer name, used in every error message.

    Returns:
        dict with every schema key, defaults filled in.

    Raises:
        ValueError: on unparsable text, a non-mapping, an unknown key, a wrong type or value, or a
            missing required key; the message names the layer and the key.
    """
    try:
        given = yaml.safe_load(param_str) if param_str and param_str.strip() else {}
    except yaml.YAMLError as err:
        raise ValueError(f"{layer}: param_str is not valid JSON/YAML: {err}") from err
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise ValueError(f"{layer}: param_str must be a mapping, got {type(given).__name__}")
    unknown = sorted(set(given) - set(schema))
    if unknown:
        raise ValueError(f"{layer}: unknown param_str key(s) {unknown}; accepted: {sorted(schema)}")
    parsed = {}
    for key, spec in schema.items():
        if key in given:
            parsed[key] = _coerce(layer, key, given[key], spec)
        elif spec.default is REQUIRED:
            raise ValueError(f"{layer}: param_str key '{key}' is required")
        else:
            parsed[key] = spec.default
    return parsed
