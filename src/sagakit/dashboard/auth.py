"""The dashboard's operator token and who signed in with it: who may act.

API clients send ``Authorization: Bearer TOKEN`` and name themselves in
each action (an ``operator`` field, or an ``X-Sagakit-Operator`` header).
The HTML forms send the token and the operator's name in ``token`` and
``operator`` fields once; the answer then sets a session cookie (the name,
and an HMAC of it under the token, never the token itself; ``HttpOnly``,
``SameSite=Strict``), and later forms carry a CSRF field derived from the
token and the name as well. The name goes into the saga's history with
every action. Every comparison is constant-time. Without a configured
token the dashboard is read-only.
"""

from __future__ import annotations

import base64
import binascii
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
    operator: str | None = None
    """The name an API call or a sign-in form gives."""

    @property
    def is_api(self) -> bool:
        return self.authorization is not None


def _mac(token: str, label: bytes, name: str = "") -> str:
    message = label + b"\0" + name.encode() if name else label
    return hmac.new(token.encode(), message, hashlib.sha256).hexdigest()


def _encoded(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")


def _decoded(text: str) -> str | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except (binascii.Error, ValueError):
        return None


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


MAX_NAME = 100


def operator_name(text: str | None) -> str | None:
    """``text`` as an operator's name (stripped), or None if it is blank,
    longer than :data:`MAX_NAME` or holds control characters."""
    name = (text or "").strip()
    if not name or len(name) > MAX_NAME or not name.isprintable():
        return None
    return name


class TokenGuard:
    """Checks credentials against the configured token (``None``: read-only)."""

    def __init__(self, token: str | None) -> None:
        self._token = token or None

    @property
    def read_only(self) -> bool:
        return self._token is None

    def session_value(self, operator: str) -> str | None:
        """The session cookie's value for ``operator`` signed in with this
        token: the name and its HMAC."""
        if self._token is None:
            return None
        return f"{_encoded(operator)}.{_mac(self._token, _SESSION_LABEL, operator)}"

    def csrf_value(self, operator: str) -> str | None:
        """The CSRF field value forms carry along with the session cookie."""
        if self._token is None:
            return None
        return _mac(self._token, _CSRF_LABEL, operator)

    def session_operator(self, session: str | None) -> str | None:
        """Who signed in, if ``session`` is a session cookie of this token."""
        if self._token is None or session is None:
            return None
        encoded, _, _mac_text = session.partition(".")
        name = _decoded(encoded)
        if not name:
            return None
        expected = self.session_value(name)
        return name if expected is not None and _same(session, expected) else None

    def has_session(self, session: str | None) -> bool:
        return self.session_operator(session) is not None

    def operator_of(self, creds: Credentials) -> str | None:
        """Who acts with ``creds`` (allowed by :meth:`check`): the name the
        call or the sign-in form gives, else the one the session holds."""
        if creds.authorization is not None or creds.form_token:
            return operator_name(creds.operator)
        return self.session_operator(creds.session)

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
            operator = self.session_operator(creds.session)
            if operator is None:
                return Verdict.WRONG
            expected_csrf = self.csrf_value(operator)
            assert expected_csrf is not None  # noqa: S101 - a token is configured
            if creds.csrf is None or not _same(creds.csrf, expected_csrf):
                return Verdict.WRONG
            return Verdict.ALLOWED
        return Verdict.MISSING
