"""The field encryption codec over the in-process transport: the broker's bytes
never hold the plaintext, a wrong key dead-letters, keys rotate."""

from __future__ import annotations

import asyncio

import pytest
from cryptography.fernet import Fernet

from sagakit.adapters.store.memory import InMemoryStore
from sagakit.adapters.transport.inprocess import InProcessTransport
from sagakit.errors import SagaError
from sagakit.messaging import Envelope
from sagakit.messaging.codec import (
    MARKER,
    CodecTransport,
    FieldEncryptionCodec,
    is_sealed,
)
from sagakit.participant import Participant

CARD = "4111111111111111"
FIELDS = ["card_number", "card.cvc"]


def charge(**payload: object) -> Envelope:
    return Envelope(
        kind="command",
        type="accounting.charge",
        correlation_id="s-1:charge:1",
        saga_id="s-1",
        step="charge",
        reply_to="replies",
        payload=dict(payload),
    )


def test_round_trip_of_top_level_and_nested_fields() -> None:
    codec = FieldEncryptionCodec(Fernet.generate_key(), FIELDS)
    message = charge(card_number=CARD, card={"cvc": 123, "holder": "Ann"}, amount=5)
    sent = codec.encode(message)
    assert is_sealed(sent.payload["card_number"])
    assert is_sealed(sent.payload["card"]["cvc"])
    assert sent.payload["card"]["holder"] == "Ann"  # not listed: left alone
    assert sent.payload["amount"] == 5
    assert message.payload["card_number"] == CARD  # the original is untouched
    assert codec.encode(sent) == sent  # sealing twice is a no-op
    assert codec.decode(sent) == message


def test_absent_fields_and_plain_values() -> None:
    codec = FieldEncryptionCodec(Fernet.generate_key(), FIELDS)
    message = charge(amount=5, card="not a dict")
    assert codec.decode(codec.encode(message)) == message
    strict = FieldEncryptionCodec(Fernet.generate_key(), FIELDS, strict=True)
    with pytest.raises(SagaError, match="'card_number' arrived unencrypted"):
        strict.decode(charge(card_number=CARD))


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(SagaError, match="invalid Fernet key"):
        FieldEncryptionCodec("not-a-key", FIELDS)
    with pytest.raises(SagaError, match="at least one key"):
        FieldEncryptionCodec([], FIELDS)
    with pytest.raises(SagaError, match="invalid field paths"):
        FieldEncryptionCodec(Fernet.generate_key(), ["card..cvc"])


def test_key_rotation_with_multifernet() -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    before = FieldEncryptionCodec(old, FIELDS).encode(charge(card_number=CARD))
    rotated = FieldEncryptionCodec([new, old], FIELDS)
    assert rotated.decode(before).payload["card_number"] == CARD
    fresh = rotated.rotate(before.payload["card_number"])
    assert FieldEncryptionCodec(new, FIELDS).unseal(fresh) == CARD
    with pytest.raises(SagaError, match="wrong key"):
        FieldEncryptionCodec(old, FIELDS).unseal(fresh, field="card_number")


def test_sealed_context_values_pass_through_untouched() -> None:
    codec = FieldEncryptionCodec(Fernet.generate_key(), FIELDS)
    sealed = codec.seal(CARD)  # e.g. kept in the saga context
    assert set(sealed) == {MARKER}
    assert CARD not in str(sealed)
    sent = codec.encode(charge(card_number=sealed))
    assert sent.payload["card_number"] == sealed
    assert codec.decode(sent).payload["card_number"] == CARD


async def until(check: object, rounds: int = 500) -> None:
    for _ in range(rounds):
        if check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.005)
    pytest.fail("timed out")


async def test_the_broker_never_sees_the_plaintext() -> None:
    key = Fernet.generate_key()
    broker = InProcessTransport()
    wire: list[bytes] = []
    original = broker.publish_raw

    async def spy(queue: str, body: bytes) -> None:
        wire.append(body)
        await original(queue, body)

    broker.publish_raw = spy  # type: ignore[method-assign]
    orchestrator_side = CodecTransport(broker, FieldEncryptionCodec(key, FIELDS))
    participant_side = CodecTransport(broker, FieldEncryptionCodec(key, FIELDS))
    accounting = Participant("accounting", participant_side, InMemoryStore())
    seen: list[dict[str, object]] = []
    replies: list[Envelope] = []

    @accounting.handler("accounting.charge")
    async def charge_card(cmd: dict[str, object]) -> dict[str, object]:
        seen.append(cmd)
        return {"card_number": cmd["card_number"], "ok": True}

    async def collect(message: Envelope) -> None:
        replies.append(message)

    try:
        await accounting.start()
        await orchestrator_side.consume("replies", collect)
        await orchestrator_side.publish("accounting", charge(card_number=CARD))
        await until(lambda: replies)
    finally:
        await accounting.stop()
        await broker.close()

    assert seen == [{"card_number": CARD}]
    assert replies[0].payload == {"card_number": CARD, "ok": True}
    assert len(wire) == 2  # the command and the reply, both sealed
    for body in wire:
        assert CARD.encode() not in body
        assert MARKER.encode() in body


async def test_a_wrong_key_dead_letters_with_a_reason() -> None:
    broker = InProcessTransport()
    sender = CodecTransport(broker, FieldEncryptionCodec(Fernet.generate_key(), FIELDS))
    receiver = CodecTransport(
        broker, FieldEncryptionCodec(Fernet.generate_key(), FIELDS)
    )
    handled: list[Envelope] = []

    async def handle(message: Envelope) -> None:
        handled.append(message)

    try:
        await receiver.consume("accounting", handle)
        await sender.publish("accounting", charge(card_number=CARD))
        await sender.publish("accounting", charge(amount=1))  # nothing to decrypt
        await until(lambda: handled)
        dead = await receiver.dead_letters("accounting")
    finally:
        await broker.close()
    assert [m.payload for m in handled] == [{"amount": 1}]
    assert len(dead) == 1
    assert dead[0].reason == (
        "cannot decrypt field 'card_number': wrong key or tampered data"
    )
    assert CARD.encode() not in dead[0].body
