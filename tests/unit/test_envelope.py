"""The envelope codec: JSON only, versioned, size-limited, clear reasons."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sagakit.errors import TransportError
from sagakit.messaging import Envelope, MalformedMessage, decode, encode


def command(**changes: object) -> Envelope:
    base = Envelope(
        kind="command",
        type="kitchen.create_ticket",
        correlation_id="s1:ticket:1",
        saga_id="s1",
        step="ticket",
        reply_to="replies",
        payload={"order_id": 7, "items": ["pizza"]},
    )
    return base.model_copy(update=changes)


def test_round_trip() -> None:
    message = command()
    assert decode(encode(message)) == message


def test_reply_keeps_correlation() -> None:
    reply = command(attempt=3, compensation=True).reply(ok=False, error={"type": "X"})
    assert reply.kind == "reply"
    assert reply.correlation_id == "s1:ticket:1"
    assert (reply.attempt, reply.compensation, reply.ok) == (3, True, False)
    assert reply.id != command().id


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object but list"),
        (b"[" * 50_000, "nested too deeply"),
        (json.dumps({**command().model_dump(), "v": 2}).encode(), "version 2"),
        (json.dumps({**command().model_dump(), "kind": "gossip"}).encode(), "kind"),
        (json.dumps({**command().model_dump(), "extra": 1}).encode(), "extra"),
        (
            json.dumps(
                {k: v for k, v in command().model_dump().items() if k != "type"}
            ).encode(),
            "type",
        ),
    ],
)
def test_bad_bytes_are_malformed_with_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedMessage, match=reason) as caught:
        decode(body)
    assert isinstance(caught.value, TransportError)


def test_size_limit_on_both_sides() -> None:
    big = command(payload={"blob": "x" * 1000})
    with pytest.raises(MalformedMessage, match="over the 500-byte limit"):
        encode(big, limit=500)
    with pytest.raises(MalformedMessage, match="over the 500-byte limit"):
        decode(encode(big), limit=500)


def test_no_pickle_anywhere_in_the_codec() -> None:
    assert encode(command()).startswith(b"{")


@given(st.binary(max_size=300))
def test_decode_never_raises_anything_but_malformed(data: bytes) -> None:
    with contextlib.suppress(MalformedMessage):
        decode(data)
