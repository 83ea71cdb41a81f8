"""Reading what a form or an API client posted to the dashboard."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from fastapi import Request

from sagakit.dashboard.middleware import MAX_BODY


class Denied(Exception):
    """A request turned away before anything was done."""

    def __init__(
        self, status_code: int, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.headers = headers or {}


async def body_fields(request: Request) -> dict[str, str]:
    """String fields of a urlencoded form or a JSON object body (at most
    ``MAX_BODY`` bytes: the gate stops a longer one while it is read)."""
    body = await request.body()
    if len(body) > MAX_BODY:
        raise Denied(413, "request body too large")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json" and body:
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            raise Denied(400, "request body is not JSON") from None
        if not isinstance(data, dict):
            raise Denied(400, "request body must be a JSON object")
        if isinstance(data.get("context"), dict):  # a fork's edited context
            data["context"] = json.dumps(data["context"])
        return {k: v for k, v in data.items() if isinstance(v, str)}
    if kind == "application/x-www-form-urlencoded":
        parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        return {k: v[0] for k, v in parsed.items() if v}
    return {}
