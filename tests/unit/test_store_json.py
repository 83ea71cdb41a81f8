"""The JSON text the SQL stores write: json.dumps's, compact, with its floats."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from sagakit.adapters.store.rows import dumps


@pytest.mark.parametrize(
    "value",
    [
        {"a": [1, 2.5, -0.0, 1e300, None, True, False], "b": {}},
        {"nan": math.nan, "inf": [math.inf, -math.inf]},
        {"text": 'é "quoted"\n\u2028', 1: "int key", None: "null key", 1.5: 2},
        "just text",
        [],
        3,
    ],
)
def test_dumps_writes_what_json_dumps_writes(value: Any) -> None:
    assert dumps(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def test_dumps_keeps_nan_and_infinity() -> None:
    text = dumps({"x": [math.nan, math.inf, -math.inf]})
    assert text == '{"x":[NaN,Infinity,-Infinity]}'
    back = json.loads(text)["x"]
    assert math.isnan(back[0])
    assert back[1:] == [math.inf, -math.inf]


def test_dumps_refuses_what_json_cannot_write_and_stays_usable() -> None:
    with pytest.raises(TypeError, match="Object of type object is not JSON"):
        dumps({"a": [1, {"b": object()}]})
    assert dumps({"a": [1, {"b": 2}]}) == '{"a":[1,{"b":2}]}'
