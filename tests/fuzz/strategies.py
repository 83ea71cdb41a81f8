"""Hypothesis strategies for hostile messages, shared by the fuzz tests.

Every strategy draws *bytes as a broker would deliver them*: arbitrary bytes,
arbitrary JSON, and valid envelopes with one or more fields mutated.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from sagakit.messaging.envelope import MAX_MESSAGE_BYTES, Envelope

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,  # the same examples on every run: `make test` stays stable
    database=None,
)
"""Bounded, reproducible: the fuzz suite must stay well under a minute."""

FIELDS = (
    "v",
    "id",
    "kind",
    "type",
    "correlation_id",
    "saga_id",
    "step",
    "attempt",
    "compensation",
    "reply_to",
    "ok",
    "payload",
    "error",
    "headers",
    "sent_at",
)

json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=20)
json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
"""JSON values (no NaN: those are drawn on purpose where wanted)."""

hostile_values: st.SearchStrategy[Any] = (
    json_values
    | st.sampled_from(
        [
            "",
            "x" * 500,
            "line\nbreak",
            "\u2028",
            -1,
            0,
            2**70,
            1.5,
            [],
            {},
            True,
            False,
            None,
            "command",
            "telegram",
        ]
    )
    | st.text(max_size=30)
)


def command(**changes: Any) -> dict[str, Any]:
    """A valid command envelope as a JSON object (to be mutated)."""
    raw = Envelope(
        id="m-1",
        kind="command",
        type="kitchen.create_ticket",
        correlation_id="saga-1:ticket:1",
        saga_id="saga-1",
        step="ticket",
        reply_to="replies",
        payload={"order_id": 1},
        headers={"trace": "t"},
        sent_at=1.0,
    ).model_dump(mode="json")
    raw.update(changes)
    return raw


def _dumps(raw: Any) -> bytes:
    return json.dumps(raw).encode()


@st.composite
def mutated_envelopes(draw: st.DrawFn) -> bytes:
    """A valid envelope with fields replaced by hostile values or removed."""
    raw = command(kind=draw(st.sampled_from(["command", "reply", "event"])))
    for name in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=4)):
        if draw(st.booleans()):
            raw.pop(name, None)
        else:
            raw[name] = draw(hostile_values)
    if draw(st.booleans()):
        raw[draw(st.text(min_size=1, max_size=10))] = draw(json_scalars)
    return _dumps(raw)


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@st.composite
def special_messages(draw: st.DrawFn) -> bytes:
    """The classic hostile inputs, each with some variation."""
    depth = draw(st.integers(min_value=50, max_value=200_000))
    payload_size = draw(st.integers(min_value=0, max_value=MAX_MESSAGE_BYTES * 2))
    body = _dumps(command())
    choices = [
        # deep nesting, bare and inside the payload
        _nested(depth).encode(),
        ('{"a":' * depth + "1" + "}" * depth).encode(),
        body.replace(
            b'{"order_id": 1}', ('{"x":' * depth + "1" + "}" * depth).encode()
        ),
        # huge payloads, around the limit
        _dumps(command(payload={"blob": "x" * payload_size})),
        b" " * payload_size + body,
        # NaN / Infinity where numbers go
        body.replace(b'"sent_at": 1.0', b'"sent_at": NaN'),
        body.replace(b'"sent_at": 1.0', b'"sent_at": Infinity'),
        body.replace(b'"sent_at": 1.0', b'"sent_at": -Infinity'),
        body.replace(b'{"order_id": 1}', b'{"order_id": NaN}'),
        # duplicate keys: which one wins would be up to the parser
        body.replace(b'"kind": "command"', b'"kind": "command", "kind": "event"'),
        body.replace(b'{"order_id": 1}', b'{"order_id": 1, "order_id": 2}'),
        # not UTF-8, BOMs, surrogates, control characters
        body.replace(b"kitchen", b"kitch\xff\xfen"),
        b"\xef\xbb\xbf" + body,
        body.replace(b"kitchen", b"\\ud800kitchen"),
        body.replace(b'"t"', b'"\\u0000\\n\\r"'),
        # the version: wrong, missing, look-alikes of 1
        _dumps(command(v=draw(st.sampled_from([0, 2, "1", 1.0, True, None, [1]])))),
        _dumps({k: v for k, v in command().items() if k != "v"}),
        # unknown kind / type, keys that break one-line reasons
        _dumps(command(kind=draw(st.text(max_size=10)))),
        _dumps(command(type=draw(st.sampled_from(["", "a" * 201, 5, None])))),
        _dumps(command(**{"bad\nkey": 1})),
        _dumps(command(headers={"a\nb": 1})),
        _dumps(command(payload={"a\nb": float("inf")})),
        # big integers
        body.replace(b'"attempt": 1', b'"attempt": ' + b"9" * 5000),
        body.replace(b'"attempt": 1', b'"attempt": 1e999'),
    ]
    return draw(st.sampled_from(choices))


hostile_messages: st.SearchStrategy[bytes] = st.one_of(
    st.binary(max_size=400),
    st.text(max_size=200).map(str.encode),
    json_values.map(_dumps),
    mutated_envelopes(),
    special_messages(),
)
"""Anything a broker might hand a consumer."""
