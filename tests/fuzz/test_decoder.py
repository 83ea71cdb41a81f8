"""Fuzz the message decoder: a valid envelope or ``MalformedMessage``, nothing else.

Whatever bytes a broker hands over, ``decode`` returns an envelope that
survives a round trip, or raises ``MalformedMessage`` whose reason is one
non-empty line (it ends up in dead-letter listings and log lines).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sagakit.messaging.envelope import (
    MAX_MESSAGE_BYTES,
    MAX_REASON,
    Envelope,
    MalformedMessage,
    decode,
    encode,
)
from tests.fuzz.strategies import (
    FUZZ,
    command,
    hostile_messages,
    json_values,
    mutated_envelopes,
    special_messages,
)

pytestmark = pytest.mark.fuzz


def check(data: bytes | str) -> Envelope | None:
    """Decode ``data``; assert the outcome is one of the two allowed ones."""
    reason = None
    try:
        message = decode(data)
    except MalformedMessage as exc:
        reason = exc.reason
    if reason is not None:
        assert reason.strip(), data[:200]
        assert reason.isprintable(), reason  # one line, no control characters
        assert len(reason) <= MAX_REASON, reason
        return None
    assert isinstance(message, Envelope)
    assert decode(encode(message)) == message  # what we accept, we can resend
    return message


@FUZZ
@given(hostile_messages)
def test_decode_returns_an_envelope_or_raises_malformed(data: bytes) -> None:
    check(data)


@FUZZ
@given(st.binary(max_size=2000))
def test_arbitrary_bytes(data: bytes) -> None:
    check(data)


@FUZZ
@given(json_values)
def test_arbitrary_json_values(value: object) -> None:
    check(json.dumps(value).encode())


@FUZZ
@given(mutated_envelopes())
def test_envelopes_with_mutated_fields(data: bytes) -> None:
    check(data)


@FUZZ
@given(special_messages())
@example(b"[" * 100_000 + b"]" * 100_000)
@example(json.dumps(command(v=True)).encode())
@example(json.dumps(command(v=1.0)).encode())
def test_special_inputs(data: bytes) -> None:
    check(data)


@FUZZ
@given(st.text(max_size=300))
def test_text_input(text: str) -> None:
    check(text)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (json.dumps(command(v=True)).encode(), "version"),
        (json.dumps(command(v=1.0)).encode(), "version"),
        (json.dumps(command(v="1")).encode(), "version"),
        (json.dumps({k: v for k, v in command().items() if k != "v"}).encode(), "v"),
        (
            json.dumps(command()).replace('"sent_at": 1.0', '"sent_at": NaN').encode(),
            "NaN",
        ),
        (
            json.dumps(command())
            .replace('"kind": "command"', '"kind": "command", "kind": "event"')
            .encode(),
            "duplicate key 'kind'",
        ),
        (b"kitch\xff", "not UTF-8"),
        (b"[" * 5000 + b"]" * 5000, "nested"),
        (json.dumps(command(**{"bad\nkey": 1})).encode(), "bad\\nkey"),
        (b" " * (MAX_MESSAGE_BYTES + 1), "over the"),
        ("é" * (MAX_MESSAGE_BYTES // 2 + 1), "over the"),
    ],
)
def test_hostile_inputs_have_clear_reasons(body: bytes | str, reason: str) -> None:
    with pytest.raises(MalformedMessage) as caught:
        decode(body)
    assert reason in caught.value.reason
    assert "\n" not in caught.value.reason
