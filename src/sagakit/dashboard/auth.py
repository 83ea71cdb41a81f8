"""The dashboard's operator token: who may retry, resume or cancel.

API clients send ``Authorization: Bearer TOKEN``. The HTML forms send the token
in a ``token`` field once; the answer then sets a session cookie (an HMAC of the
token, never the token itself; ``HttpOnly``, ``SameSite=Strict``), and later
forms carry a CSRF field derived from the token as well. Every comparison is
constant-time. Without a configured token the dashboard is read-only.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from enum import Enum

SESSION_COOKIE = "sagakit_dashboard_session"
_SESSION_LABEL = b"sagakit-dashboard-session-v1"
_CSRF_LABEL = b"sagakit-dashboard-csrf-v1"


class Verdict(Enum):
    ALLOWED = "allowed"
    MISSING = "missing"  # 401: no credentials at all
    WRONG = "wrong"  # 403: credentials that do not match
    READ_ONLY = "read_only"  # 403: no token configured, no action allowed


@dataclass(frozen=True, slots=True)
class Credentials:
    """What one request carried."""

    authorization: str | None = None
    form_token: str | None = None
    session: str | None = None
    csrf: str | None = None

    @property
    def is_api(self) -> bool:
        return self.authorization is not None


def _mac(token: str, label: bytes) -> str:
    return hmac.new(token.encode(), label, hashlib.sha256).hexdigest()


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


class TokenGuard:
    """Checks credentials against the configured token (``None``: read-only)."""

    def __init__(self, token: str | None) -> None:
        self._token = token or None

    @property
    def read_only(self) -> bool:
        return self._token is None

    def session_value(self) -> str | None:
        """The session cookie's value for this token."""
        return None if self._token is None else _mac(self._token, _SESSION_LABEL)

    def csrf_value(self) -> str | None:
        """The CSRF field value forms carry along with the session cookie."""
        return None if self._token is None else _mac(self._token, _CSRF_LABEL)

    def has_session(self, session: str | None) -> bool:
        expected = self.session_value()
        return expected is not None and session is not None and _same(session, expected)

    def check(self, creds: Credentials) -> Verdict:
        if self._token is None:
            return Verdict.READ_ONLY
        if creds.authorization is not None:
            scheme, _, value = creds.authorization.strip().partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                return Verdict.MISSING
            return (
                Verdict.ALLOWED if _same(value.strip(), self._token) else Verdict.WRONG
            )
        if creds.form_token:
            return (
                Verdict.ALLOWED
                if _same(creds.form_token, self._token)
                else Verdict.WRONG
            )
        if creds.session is not None:
            expected_csrf = self.csrf_value()
            assert expected_csrf is not None  # noqa: S101 - a token is configured
            if not self.has_session(creds.session):
                return Verdict.WRONG
            if creds.csrf is None or not _same(creds.csrf, expected_csrf):
                return Verdict.WRONG
            return Verdict.ALLOWED
        return Verdict.MISSING
