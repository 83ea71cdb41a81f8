"""The dashboard's operator tokens: who may retry, resume or cancel.

Each operator has a token of at least :data:`MIN_TOKEN` characters (one
token is the operator ``operator``; ``tokens={"alice": ..., "bob": ...}``
names several). API clients send ``Authorization: Bearer TOKEN``. The HTML
forms send the token in a ``token`` field once (an action's form, or
``/login``); the answer then opens a server-side session: the cookie holds a
random session id (``HttpOnly``, ``SameSite=Strict``), never the token, and
later forms carry that session's random CSRF value. A session ends at
logout (it is forgotten on the server, so a copied cookie stops working) or
after :data:`SESSION_TTL` seconds. Every token comparison is constant-time,
and a client that sends wrong tokens :data:`FAILURES` times within
:data:`WINDOW` seconds is refused (429) until the window has passed.
Without a token the dashboard is read-only.

Who acts goes into the saga's history with every action. A named token names
its operator. The single shared token names nobody: whoever uses it says who
they are when signing in (a ``operator`` field next to the token) or in each
API call (an ``operator`` field or an ``X-Sagakit-Operator`` header), and an
action without a name is refused.
"""

from __future__ import annotations

import hmac
import secrets
import string
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from sagakit.errors import SagaError
from sagakit.ports.clock import Clock, SystemClock

SESSION_COOKIE = "sagakit_dashboard_session"
MIN_TOKEN = 16
"""Shortest token accepted: shorter ones are refused, not just warned about."""
DEFAULT_OPERATOR = "operator"
"""The name of the one operator a single token stands for."""
MAX_NAME = 64
SESSION_TTL = 8 * 3600.0
"""Seconds a session lasts after it opened."""
MAX_SESSIONS = 10_000
"""Open sessions kept; opening one more ends the oldest."""
FAILURES = 5
"""Wrong tokens a client may send within :data:`WINDOW` seconds."""
WINDOW = 60.0
MAX_CLIENTS = 10_000
"""Clients whose failures are remembered; beyond, the oldest are forgotten."""
_NAME_CHARS = frozenset(string.ascii_letters + string.digits + "._@+-")


class Verdict(Enum):
    ALLOWED = "allowed"
    MISSING = "missing"  # 401: no credentials at all
    WRONG = "wrong"  # 403: credentials that do not match
    READ_ONLY = "read_only"  # 403: no token configured, no action allowed
    THROTTLED = "throttled"  # 429: too many wrong tokens from this client


@dataclass(frozen=True, slots=True)
class Credentials:
    """What one request carried; ``client`` is its address (throttling)."""

    authorization: str | None = None
    form_token: str | None = None
    session: str | None = None
    csrf: str | None = None
    client: str = ""
    operator: str | None = None
    """The name an API call or a sign-in form gives (used with the shared
    token, which names nobody)."""

    @property
    def is_api(self) -> bool:
        return self.authorization is not None


@dataclass(frozen=True, slots=True)
class Checked:
    """A verdict on credentials: who they name, and when to try again."""

    verdict: Verdict
    operator: str | None = None
    retry_after: float = 0.0


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in browser: the cookie carries ``session_id`` only."""

    session_id: str
    operator: str
    csrf: str
    expires_at: float


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, else None."""
    if authorization is None:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def operator_name(text: str | None) -> str | None:
    """``text`` as an operator's name (stripped), or None if it is blank,
    longer than :data:`MAX_NAME` or holds control characters."""
    name = (text or "").strip()
    if not name or len(name) > MAX_NAME or not name.isprintable():
        return None
    return name


def operator_tokens(token: str | Mapping[str, str] | None) -> dict[str, str]:
    """``{operator: token}`` from one token or a mapping; a SagaError for a
    token shorter than :data:`MIN_TOKEN`, a blank one, or a bad name."""
    if token is None:
        return {}
    tokens = {DEFAULT_OPERATOR: token} if isinstance(token, str) else dict(token)
    for name, value in tokens.items():
        if not name or len(name) > MAX_NAME or not set(name) <= _NAME_CHARS:
            raise SagaError(
                f"invalid operator name {name[:MAX_NAME]!r}: use 1 to {MAX_NAME} "
                "letters, digits and ._@+-"
            )
        if len(value.strip()) < MIN_TOKEN:
            raise SagaError(
                f"the token of operator {name!r} is too short: use at least "
                f"{MIN_TOKEN} random characters"
            )
    if len(set(tokens.values())) < len(tokens):
        raise SagaError("two operators have the same token")
    return tokens


class Sessions:
    """Server-side sessions: random ids, an expiry, and revocation."""

    def __init__(
        self, clock: Clock, *, ttl: float = SESSION_TTL, most: int = MAX_SESSIONS
    ) -> None:
        self.clock = clock
        self.ttl = ttl
        self.most = most
        self._open: dict[str, Session] = {}  # oldest first

    def __len__(self) -> int:
        return len(self._open)

    def open(self, operator: str) -> Session:
        now = self.clock.now()
        for session_id, session in list(self._open.items()):
            if session.expires_at > now and len(self._open) < self.most:
                break  # the rest opened later: alive
            del self._open[session_id]
        session = Session(
            secrets.token_hex(32), operator, secrets.token_hex(32), now + self.ttl
        )
        self._open[session.session_id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session of this id (None: unknown, ended or expired)."""
        if not session_id:
            return None
        session = self._open.get(session_id)
        if session is None:
            return None
        if session.expires_at <= self.clock.now():
            del self._open[session_id]
            return None
        return session

    def close(self, session_id: str | None) -> None:
        """End the session: its cookie no longer signs anyone in."""
        if session_id:
            self._open.pop(session_id, None)


class Throttle:
    """Refuses a client for a while after :data:`FAILURES` wrong tokens
    within :data:`WINDOW` seconds."""

    def __init__(
        self,
        clock: Clock,
        *,
        failures: int = FAILURES,
        window: float = WINDOW,
        most: int = MAX_CLIENTS,
    ) -> None:
        self.clock = clock
        self.failures = failures
        self.window = window
        self.most = most
        self._seen: dict[str, deque[float]] = {}

    def wait(self, client: str) -> float:
        """Seconds before ``client`` may try a token again (0: now)."""
        times = self._seen.get(client)
        if times is None:
            return 0.0
        now = self.clock.now()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._seen[client]
            return 0.0
        if len(times) < self.failures:
            return 0.0
        return times[0] + self.window - now

    def failed(self, client: str) -> None:
        times = self._seen.pop(client, None) or deque(maxlen=self.failures)
        times.append(self.clock.now())
        self._seen[client] = times  # the most recent last
        while len(self._seen) > self.most:
            del self._seen[next(iter(self._seen))]


class TokenGuard:
    """Checks credentials against the operators' tokens (none: read-only),
    and keeps the sessions and the throttle."""

    def __init__(
        self,
        token: str | Mapping[str, str] | None,
        *,
        clock: Clock | None = None,
        session_ttl: float = SESSION_TTL,
    ) -> None:
        self._tokens = operator_tokens(token or None)
        clock = clock or SystemClock()
        self.sessions = Sessions(clock, ttl=session_ttl)
        self.throttle = Throttle(clock)

    @property
    def read_only(self) -> bool:
        return not self._tokens

    @property
    def shared(self) -> bool:
        """One token for everyone (``token="..."``): it names nobody."""
        return list(self._tokens) == [DEFAULT_OPERATOR]

    def operator_of(self, token: str) -> str | None:
        """The operator whose token this is; every token is compared, in
        constant time, whichever matches."""
        found = None
        for name, expected in self._tokens.items():
            if _same(token, expected):
                found = name
        return found

    def session(self, session_id: str | None) -> Session | None:
        return None if self.read_only else self.sessions.get(session_id)

    def check(self, creds: Credentials) -> Checked:
        if self.read_only:
            return Checked(Verdict.READ_ONLY)
        wait = self.throttle.wait(creds.client)
        if wait > 0:
            return Checked(Verdict.THROTTLED, retry_after=wait)
        checked = self._check(creds)
        guessed = creds.authorization is not None or bool(creds.form_token)
        if checked.verdict is Verdict.WRONG and guessed:  # not a stale session
            self.throttle.failed(creds.client)
        return checked

    def _check(self, creds: Credentials) -> Checked:
        token: str | None = None
        if creds.authorization is not None:
            token = bearer_token(creds.authorization)
            if token is None:
                return Checked(Verdict.MISSING)
        elif creds.form_token:
            token = creds.form_token
        if token is not None:
            operator = self.operator_of(token)
            if operator is None:
                return Checked(Verdict.WRONG)
            if self.shared:  # the caller says who they are
                return Checked(Verdict.ALLOWED, operator_name(creds.operator))
            return Checked(Verdict.ALLOWED, operator)
        if creds.session is not None:
            session = self.sessions.get(creds.session)
            if session is None or creds.csrf is None:
                return Checked(Verdict.WRONG)
            if not _same(creds.csrf, session.csrf):
                return Checked(Verdict.WRONG)
            return Checked(Verdict.ALLOWED, session.operator)
        return Checked(Verdict.MISSING)
