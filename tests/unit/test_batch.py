"""Batches: several envelopes in one broker message, each opened on its own."""

from __future__ import annotations

import json

import pytest

from sagakit.messaging import Envelope, decode, encode
from sagakit.messaging.batch import (
    MAX_BATCH,
    Part,
    batch_size,
    encode_batch,
    group,
    open_body,
)

LIMIT = 256 * 1024


def command(n: int) -> Envelope:
    return Envelope(
        kind="command",
        type="kitchen.create_ticket",
        correlation_id=f"s{n}:ticket:1",
        saga_id=f"s{n}",
        step="ticket",
        reply_to="replies",
        payload={"order_id": n},
    )


def parts_of(body: bytes) -> list[Part]:
    opened = open_body(body, LIMIT)
    assert isinstance(opened, list)
    return opened


def test_a_batch_opens_into_its_envelopes_in_order() -> None:
    sent = [command(n) for n in range(3)]
    body = encode_batch([encode(m) for m in sent])
    assert len(body) == batch_size([encode(m) for m in sent])
    parts = parts_of(body)
    assert [p.opened for p in parts] == sent
    assert [decode(p.body()) for p in parts] == sent  # each can go alone


def test_a_single_envelope_opens_as_before() -> None:
    message = command(1)
    assert open_body(encode(message), LIMIT) == message


def test_an_old_reader_refuses_a_batch_with_a_clear_reason() -> None:
    """A sagakit that reads only envelopes dead-letters a batch, never misreads it."""
    body = encode_batch([encode(command(1)), encode(command(2))])
    with pytest.raises(Exception, match="no envelope version"):
        decode(body)


def test_a_malformed_element_is_its_own_reason_the_others_are_kept() -> None:
    good = encode(command(1))
    body = b'{"batch":1,"messages":[' + good + b',{"v":1,"kind":"nope"}]}'
    first, second = parts_of(body)
    assert first.opened == command(1).model_copy(update={"id": first.opened.id})  # type: ignore[union-attr]
    assert isinstance(second.opened, str)
    assert "kind" in second.opened
    assert json.loads(second.body()) == {"v": 1, "kind": "nope"}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"batch":2,"messages":[{}]}', "unsupported batch version 2"),
        (b'{"batch":"1","messages":[{}]}', "unsupported batch version '1'"),
        (b'{"batch":1,"messages":[]}', "non-empty list"),
        (b'{"batch":1,"messages":{}}', "non-empty list"),
        (b'{"batch":1}', "'batch' and 'messages' only"),
        (b'{"batch":1,"messages":[{}],"x":1}', "'batch' and 'messages' only"),
        (b'{"batch":1,"batch":1,"messages":[{}]}', "duplicate key"),
        (b"[1, 2]", "not a JSON object"),
        (b"\xff", "not UTF-8"),
    ],
)
def test_a_malformed_batch_goes_to_the_dead_letter_queue_whole(
    body: bytes, reason: str
) -> None:
    opened = open_body(body, LIMIT)
    assert isinstance(opened, str)
    assert reason in opened


def test_too_many_elements_or_bytes_refuse_the_whole_batch() -> None:
    many = encode_batch([encode(command(n)) for n in range(MAX_BATCH + 1)])
    assert f"over {MAX_BATCH}" in str(open_body(many, len(many)))
    body = encode_batch([encode(command(1)), encode(command(2))])
    assert "over the" in str(open_body(body, len(body) - 1))


def test_a_single_envelope_nests_no_deeper_than_alone() -> None:
    """The two levels a batch adds are allowed only inside a batch."""
    deep: object = 1
    for _ in range(63):
        deep = [deep]
    alone = command(1).model_copy(update={"payload": {"x": deep}})
    assert isinstance(open_body(encode(alone), LIMIT), str)
    parts = parts_of(encode_batch([encode(command(2)), encode(alone)]))
    assert isinstance(parts[1].opened, str)  # as deep as alone: refused too


def test_group_batches_per_queue_in_order_within_the_limits() -> None:
    a1, a2, b1, a3 = (encode(command(n)) for n in range(4))
    carried = group([("a", a1), ("a", a2), ("b", b1), ("a", a3)], LIMIT)
    assert [(q, members) for q, _, members in carried] == [
        ("a", [0, 1, 3]),
        ("b", [2]),
    ]
    assert carried[1][1] == b1  # alone: as it is, not a batch of one
    assert [p.opened for p in parts_of(carried[0][1])] == [
        decode(a1),
        decode(a2),
        decode(a3),
    ]


def test_group_splits_at_the_size_limit_and_the_count() -> None:
    bodies = [("q", encode(command(n))) for n in range(MAX_BATCH + 5)]
    by_count = group(bodies, LIMIT)
    assert [len(m) for _, _, m in by_count] == [MAX_BATCH, 5]
    limit = batch_size([b for _, b in bodies[:3]])
    by_size = group(bodies[:7], limit)
    assert [len(m) for _, _, m in by_size] == [3, 3, 1]
    assert all(len(body) <= limit for _, body, _ in by_size)
