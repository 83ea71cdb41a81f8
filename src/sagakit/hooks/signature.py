"""Webhook signatures: HMAC-SHA256 over the timestamp and the body.

Each request carries ``Sagakit-Signature: t=<unix seconds>,v1=<hex>``, where
``v1`` is ``HMAC-SHA256(secret, f"{t}." + body)``. A receiver recomputes it
over the raw body bytes, compares in constant time, and refuses a timestamp
too far from its clock (a replayed request). Standard library only: a
receiver may copy :func:`verify_signature` rather than install sagakit.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Sagakit-Signature"
TOLERANCE = 300.0
"""Seconds a signature's timestamp may be away from the receiver's clock."""


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def signature(secret: str | bytes, body: bytes, timestamp: int) -> str:
    """The hex HMAC-SHA256 of ``f"{timestamp}."`` followed by ``body``."""
    signed = f"{timestamp}.".encode() + body
    return hmac.new(_key(secret), signed, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes, timestamp: int | None = None) -> str:
    """The ``Sagakit-Signature`` header value for ``body`` sent now (or at
    ``timestamp``)."""
    at = int(time.time()) if timestamp is None else timestamp
    return f"t={at},v1={signature(secret, body, at)}"


def verify_signature(
    secret: str | bytes,
    body: bytes,
    header: str | None,
    *,
    tolerance: float = TOLERANCE,
    now: float | None = None,
) -> bool:
    """Whether ``header`` (a ``Sagakit-Signature`` value) signs ``body``
    (the raw request bytes) with ``secret``, at a timestamp within
    ``tolerance`` seconds of ``now``."""
    if not header:
        return False
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        fields.setdefault(name, []).append(value)
    stamps = fields.get("t", [])
    if len(stamps) != 1 or not stamps[0].isdigit():
        return False
    at = int(stamps[0])
    clock = time.time() if now is None else now
    if abs(clock - at) > tolerance:
        return False
    expected = signature(secret, body, at)
    return any(hmac.compare_digest(expected, given) for given in fields.get("v1", []))


__all__ = ["SIGNATURE_HEADER", "TOLERANCE", "sign", "signature", "verify_signature"]
