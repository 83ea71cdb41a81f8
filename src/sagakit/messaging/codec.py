"""Optional payload encryption: sensitive fields never cross the broker in clear.

::

    codec = FieldEncryptionCodec(key, fields=["card_number", "card.cvc"])
    transport = CodecTransport(await open_transport(url), codec)

:class:`CodecTransport` wraps any transport (the one place encryption is wired):
what is published has the named payload fields encrypted with Fernet
(AES-128-CBC + HMAC-SHA256); what is consumed has them decrypted before the
handler sees it. A message whose fields cannot be decrypted (wrong key, tampered
token) raises :class:`MalformedMessage`, so the transport dead-letters it with
the reason instead of retrying. Give several keys to rotate: the first
encrypts, all of them decrypt (``MultiFernet``).

An encrypted field is ``{"$sagakit_encrypted": "<fernet token>"}``, so
encrypting twice is a no-op and :meth:`FieldEncryptionCodec.seal` can encrypt a
value *before* it is stored in a saga's context: the saga store, its history
and its outbox then only hold the token, and the participant's
``CodecTransport`` decrypts it on receipt.

Needs the ``crypto`` extra: ``pip install 'sagakit[crypto]'``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from sagakit.errors import SagaError
from sagakit.messaging.envelope import Envelope, MalformedMessage, decode, encode

if TYPE_CHECKING:
    from sagakit.ports.transport import DeadLetter, Handler, Subscription, Transport

MARKER = "$sagakit_encrypted"
"""The key of an encrypted field's JSON object."""


class MessageCodec(Protocol):
    """Transforms envelopes on their way out and back in."""

    def encode(self, message: Envelope) -> Envelope:
        """The envelope as it should travel."""

    def decode(self, message: Envelope) -> Envelope:
        """The envelope as handlers see it; ``MalformedMessage`` if impossible."""


def _fernet(keys: Sequence[str | bytes]) -> Any:
    try:
        from cryptography.fernet import Fernet, MultiFernet  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise SagaError(
            "FieldEncryptionCodec needs the cryptography package: "
            "pip install 'sagakit[crypto]'"
        ) from exc
    if not keys:
        raise SagaError("FieldEncryptionCodec needs at least one key")
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except (ValueError, TypeError) as exc:
        raise SagaError(
            "invalid Fernet key: use Fernet.generate_key() (32 url-safe "
            "base64-encoded bytes)"
        ) from exc


def is_sealed(value: object) -> bool:
    """Whether ``value`` is an encrypted field."""
    return (
        isinstance(value, dict)
        and len(value) == 1
        and isinstance(value.get(MARKER), str)
    )


class FieldEncryptionCodec:
    """Encrypts the named payload ``fields`` (dotted paths: ``card.number``).

    ``key`` is a Fernet key, or a list of them to rotate keys: the first
    encrypts, every one of them decrypts. ``strict`` refuses (dead-letters) a
    received message that carries one of the fields *unencrypted*.
    """

    def __init__(
        self,
        key: str | bytes | Sequence[str | bytes],
        fields: Iterable[str],
        *,
        strict: bool = False,
    ) -> None:
        keys = [key] if isinstance(key, (str, bytes)) else list(key)
        self._fernet = _fernet(keys)
        self.paths = tuple(tuple(f.split(".")) for f in fields)
        if not self.paths or any(not all(p) for p in self.paths):
            raise SagaError(f"invalid field paths {list(fields)!r}")
        self.strict = strict

    # -- single values -------------------------------------------------------

    def seal(self, value: Any) -> dict[str, str]:
        """``value`` (any JSON value) encrypted; already sealed stays as it is."""
        if is_sealed(value):
            return dict(value)
        data = json.dumps(value, separators=(",", ":")).encode()
        return {MARKER: self._fernet.encrypt(data).decode("ascii")}

    def unseal(self, value: Any, *, field: str = "value") -> Any:
        """The plain value of a sealed one (a plain value is returned as is)."""
        if not is_sealed(value):
            return value
        from cryptography.fernet import InvalidToken  # noqa: PLC0415

        try:
            return json.loads(self._fernet.decrypt(value[MARKER].encode("ascii")))
        except (InvalidToken, UnicodeError, ValueError):
            raise MalformedMessage(
                f"cannot decrypt field {field!r}: wrong key or tampered data"
            ) from None

    def rotate(self, value: Any) -> Any:
        """A sealed value re-encrypted with the first key (plain: unchanged)."""
        if not is_sealed(value):
            return value
        from cryptography.fernet import InvalidToken  # noqa: PLC0415

        try:
            token = self._fernet.rotate(value[MARKER].encode("ascii"))
        except (InvalidToken, UnicodeError) as exc:
            raise SagaError("cannot rotate: no key decrypts this value") from exc
        return {MARKER: token.decode("ascii")}

    # -- payloads -------------------------------------------------------------

    def encrypt_fields(self, data: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``data`` with every configured field present sealed."""
        return self._map(data, lambda value, _: self.seal(value))

    def decrypt_fields(self, data: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``data`` with every configured field present unsealed."""

        def open_(value: Any, name: str) -> Any:
            if self.strict and not is_sealed(value):
                raise MalformedMessage(f"field {name!r} arrived unencrypted")
            return self.unseal(value, field=name)

        return self._map(data, open_)

    def _map(self, data: dict[str, Any], change: Any) -> dict[str, Any]:
        result: dict[str, Any] = _copy(data)
        for path in self.paths:
            parent: Any = result
            for part in path[:-1]:
                parent = parent.get(part) if isinstance(parent, dict) else None
            if isinstance(parent, dict) and path[-1] in parent:
                parent[path[-1]] = change(parent[path[-1]], ".".join(path))
        return result

    # -- envelopes (MessageCodec) -------------------------------------------------

    def encode(self, message: Envelope) -> Envelope:
        return message.model_copy(
            update={"payload": self.encrypt_fields(message.payload)}
        )

    def decode(self, message: Envelope) -> Envelope:
        return message.model_copy(
            update={"payload": self.decrypt_fields(message.payload)}
        )


def _copy(data: Any) -> Any:
    """A copy of the dicts along the way (values are replaced, never mutated)."""
    if isinstance(data, dict):
        return {k: _copy(v) for k, v in data.items()}
    return data


class CodecTransport:
    """A transport that runs every message through ``codec`` (any adapter).

    ``publish`` and ``publish_raw`` encode on the way out (raw bytes that are
    not an envelope go as they are, to be dead-lettered); ``consume`` decodes
    before calling the handler. Dead letters keep the bytes as they travelled.
    """

    def __init__(self, inner: Transport, codec: MessageCodec) -> None:
        self.inner = inner
        self.codec = codec

    async def publish(self, queue: str, message: Envelope) -> None:
        await self.inner.publish(queue, self.codec.encode(message))

    async def publish_raw(self, queue: str, body: bytes) -> None:
        try:
            message = decode(body)
        except MalformedMessage:
            await self.inner.publish_raw(queue, body)
            return
        await self.inner.publish_raw(queue, encode(self.codec.encode(message)))

    async def consume(
        self,
        queue: str,
        handler: Handler,
        *,
        prefetch: int = 32,
        max_deliveries: int = 5,
    ) -> Subscription:
        codec = self.codec

        async def decoded(message: Envelope) -> None:
            await handler(codec.decode(message))  # MalformedMessage: dead-lettered

        return await self.inner.consume(
            queue, decoded, prefetch=prefetch, max_deliveries=max_deliveries
        )

    async def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        return await self.inner.dead_letters(queue, limit)

    async def replay_dead_letters(self, queue: str, limit: int = 100) -> int:
        return await self.inner.replay_dead_letters(queue, limit)

    async def close(self) -> None:
        await self.inner.close()
