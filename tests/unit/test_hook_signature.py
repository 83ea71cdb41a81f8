"""Webhook signatures and retry delays: pure functions, table-driven."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from sagakit.hooks import HookRetry, sign, verify_signature
from sagakit.hooks.signature import signature
from sagakit.hooks.webhook import safe_url

SECRET = "whsec-unit"  # noqa: S105 - a test secret
BODY = b'{"id":"saga.failed:o-1:4","type":"saga.failed"}'
NOW = 1_767_225_600


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    header = sign(SECRET, BODY, NOW)
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256)
    assert header == f"t={NOW},v1={expected.hexdigest()}"
    assert signature(SECRET.encode(), BODY, NOW) == expected.hexdigest()


@pytest.mark.parametrize(
    ("header", "body", "now", "ok"),
    [
        (sign(SECRET, BODY, NOW), BODY, NOW, True),
        (sign(SECRET, BODY, NOW), BODY, NOW + 299, True),
        (sign(SECRET, BODY, NOW), BODY, NOW - 299, True),
        (sign(SECRET, BODY, NOW), BODY, NOW + 301, False),  # replayed later
        (sign(SECRET, BODY, NOW), BODY + b" ", NOW, False),  # body changed
        (sign("other", BODY, NOW), BODY, NOW, False),  # another secret
        (
            sign(SECRET, BODY, NOW - 1).replace(f"t={NOW - 1}", f"t={NOW}"),
            BODY,
            NOW,
            False,
        ),
        (f"t={NOW},v1=deadbeef,v1={signature(SECRET, BODY, NOW)}", BODY, NOW, True),
        (f"v1={signature(SECRET, BODY, NOW)}", BODY, NOW, False),  # no timestamp
        (f"t={NOW},t={NOW},v1={signature(SECRET, BODY, NOW)}", BODY, NOW, False),
        (f"t=soon,v1={signature(SECRET, BODY, NOW)}", BODY, NOW, False),
        ("", BODY, NOW, False),
        (None, BODY, NOW, False),
    ],
)
def test_verify_signature(
    header: str | None, body: bytes, now: float, ok: bool
) -> None:
    assert verify_signature(SECRET, body, header, now=now) is ok


@pytest.mark.parametrize(
    ("failures", "jitter", "delay"),
    [
        (1, 0.5, 1.0),
        (2, 0.5, 2.0),
        (3, 0.5, 4.0),
        (9, 0.5, 256.0),
        (10, 0.5, 300.0),  # capped
        (1, 0.0, 0.8),
        (1, 0.999, 1.1996),
        (20, 0.5, None),  # out of attempts
    ],
)
def test_retry_delays_double_up_to_the_cap(
    failures: int, jitter: float, delay: float | None
) -> None:
    got = HookRetry(attempts=20, backoff=1.0, max_backoff=300.0).delay(failures, jitter)
    assert got == (None if delay is None else pytest.approx(delay))


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://user:pw@ops.example.com:8443/hook?token=abc#x",
            "https://ops.example.com:8443/hook",
        ),
        ("http://127.0.0.1/h", "http://127.0.0.1/h"),
    ],
)
def test_urls_in_messages_keep_no_credentials(url: str, shown: str) -> None:
    assert safe_url(url) == shown
