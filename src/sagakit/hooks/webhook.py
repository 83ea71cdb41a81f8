"""A webhook: each event POSTed as signed JSON to one URL.

The request is sent with the standard library (``urllib``) in a worker
thread, so the hook needs no HTTP client package. Redirects are not
followed; any answer other than 2xx, a timeout or a connection error is a
:class:`~sagakit.errors.HookError`, and the notifier tries again later.

Headers: ``Content-Type: application/json``, ``Sagakit-Signature`` (see
:mod:`sagakit.hooks.signature`), ``Sagakit-Event`` (the type),
``Sagakit-Event-Id`` (the event id, percent-encoded: the same on every
retry, so a receiver drops a copy) and ``Sagakit-Delivery-Attempt``.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from http.client import HTTPException
from typing import Any
from urllib.parse import quote, urlsplit

from sagakit.errors import HookError, SagaError
from sagakit.hooks.event import HookEvent
from sagakit.hooks.signature import SIGNATURE_HEADER, sign

USER_AGENT = "sagakit-webhook"
_READ = 4096  # of an answer's body: enough for an error message


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx answer is an error: the URL is configured wrong


_OPENER = urllib.request.build_opener(_NoRedirects)


def safe_url(url: str) -> str:
    """The URL without credentials, query or fragment (for messages and
    logs: those may hold tokens)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def checked_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SagaError(f"webhook URL must be http:// or https:// with a host: {url!r}")
    return url


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> None:
    request = urllib.request.Request(  # noqa: S310 - http(s) only: see checked_url
        url, data=body, headers=headers, method="POST"
    )
    where = safe_url(url)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(_READ)
    except urllib.error.HTTPError as exc:
        answer = exc.read(_READ).decode("utf-8", "replace").strip()
        detail = f": {answer[:200]}" if answer else ""
        raise HookError(f"webhook {where} answered HTTP {exc.code}{detail}") from None
    except (urllib.error.URLError, OSError, HTTPException) as exc:
        why = getattr(exc, "reason", exc)
        raise HookError(f"webhook {where} unreachable: {why}") from None


class Webhook:
    """POST each event, signed with ``secret``, to ``url``; wait at most
    ``timeout`` seconds for the answer."""

    name = "webhook"

    def __init__(self, url: str, secret: str | bytes, *, timeout: float = 10.0) -> None:
        self.url = checked_url(url)
        if not secret:
            raise SagaError("a webhook needs a secret to sign its requests with")
        self._secret = secret
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"Webhook({safe_url(self.url)!r})"

    def headers(self, event: HookEvent, body: bytes) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: sign(self._secret, body),
            "Sagakit-Event": event.kind.value,
            "Sagakit-Event-Id": quote(event.id, safe=":/.-_~@"),
            "Sagakit-Delivery-Attempt": str(event.attempt),
        }

    async def __call__(self, event: HookEvent) -> None:
        body = event.body()
        headers = self.headers(event, body)
        await asyncio.to_thread(_post, self.url, body, headers, self.timeout)


__all__ = ["USER_AGENT", "Webhook", "checked_url", "safe_url"]
