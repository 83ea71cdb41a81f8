"""The dashboard against hostile or careless clients: Host headers of other
names (DNS rebinding), bodies too large (refused while read, also by a real
uvicorn server: an 80 MB POST is never buffered), sessions that end on the
server, wrong tokens throttled, JSON errors for API clients, short tokens
refused, pages behind a sign-in, and the operator's name on the request."""

from __future__ import annotations

import asyncio
import contextlib
import re
import select
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from starlette.types import Message

from sagakit import Orchestrator, Saga, SagaStatus, SQLiteStore, Step
from sagakit.dashboard import create_app
from sagakit.dashboard.auth import FAILURES, MIN_TOKEN, SESSION_COOKIE
from sagakit.dashboard.middleware import MAX_BODY
from sagakit.errors import SagaError
from sagakit.testing import FakeClock

ALICE = "alice-token-0123456789"  # test tokens
BOB = "bob-token-9876543210xyz"
WRONG = "wrong-token-0000000000"
EIGHTY_MB = 80 * 1024 * 1024
CHUNK = 64 * 1024


def charged(ctx: object) -> None:
    """The pivot: what fails after it ends the saga ``failed``."""


def broken(ctx: object) -> None:
    raise OSError("down")


failing: Saga[Any] = Saga(
    "failing", [Step("charge", charged, pivot=True), Step("ship", broken)]
)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "dash.db")
    yield opened
    await opened.close()


def dashboard(store: SQLiteStore, clock: FakeClock, **options: Any) -> FastAPI:
    """The dashboard with two operators, and ``/whoami`` showing who a
    request is signed in as (``request.state.operator``)."""
    app = create_app(
        store, [failing], token={"alice": ALICE, "bob": BOB}, clock=clock, **options
    )

    async def whoami(request: Request) -> dict[str, str | None]:
        return {"operator": request.state.operator}

    app.get("/whoami")(whoami)
    return app


@contextlib.asynccontextmanager
async def client(app: FastAPI, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, **options)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://127.0.0.1"
    ) as opened:
        yield opened


async def with_failed_saga(store: SQLiteStore) -> tuple[str, FastAPI, FakeClock]:
    """A saga that failed after its pivot (a retry fits it), the dashboard
    and its clock."""
    clock = FakeClock()
    run = await Orchestrator(store, [failing], clock=clock).run(failing)
    return run.saga_id, dashboard(store, clock), clock


async def sign_in(http: httpx.AsyncClient, token: str) -> httpx.Response:
    return await http.post("/login", data={"token": token, "next": "/whoami"})


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found is not None, page
    return found.group(1)


# -- the Host header -----------------------------------------------------------


async def test_a_host_not_configured_is_refused(store: SQLiteStore) -> None:
    app = dashboard(store, FakeClock(), hosts=["127.0.0.1", "localhost", "::1"])
    async with client(app) as http:
        rebound = await http.get("/", headers={"Host": "attacker.example"})
        rebound_api = await http.get(
            "/api/counts", headers={"Host": "attacker.example:8080"}
        )
        local = await http.get("/api/counts", headers={"Host": "localhost:8080"})
        ipv6 = await http.get("/api/counts", headers={"Host": "[::1]:8080"})
        empty = await http.get("/api/counts", headers={"Host": ""})

    assert rebound.status_code == 400
    assert "text/html" in rebound.headers["content-type"]
    assert "unexpected Host header" in rebound.text
    assert rebound.headers["content-security-policy"]  # security headers too
    assert rebound_api.status_code == 400
    assert rebound_api.json() == {"detail": "unexpected Host header 'attacker.example'"}
    assert local.status_code == 200
    assert ipv6.status_code == 200
    assert empty.status_code == 400


# -- request size ----------------------------------------------------------------


class Endless:
    """An 80 MB body arriving chunk by chunk; counts what the app read."""

    def __init__(self) -> None:
        self.read = 0

    async def receive(self) -> Message:
        self.read += CHUNK
        return {
            "type": "http.request",
            "body": b"x" * CHUNK,
            "more_body": self.read < EIGHTY_MB,
        }


async def post_endless(app: FastAPI, headers: list[tuple[bytes, bytes]]) -> Any:
    """POST an 80 MB form to an action through ASGI; (status, body, read)."""
    body = Endless()
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/sagas/x/retry",
        "raw_path": b"/sagas/x/retry",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/x-www-form-urlencoded"),
            *headers,
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }
    await app(scope, body.receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if "body" in m)
    return start["status"], content, body.read


async def test_a_huge_body_is_refused_while_it_is_read(store: SQLiteStore) -> None:
    app = dashboard(store, FakeClock())

    streamed = await post_endless(app, [])  # no Content-Length: counted
    announced = await post_endless(app, [(b"content-length", str(EIGHTY_MB).encode())])

    status, content, read = streamed
    assert status == 413
    assert b"request body too large" in content
    assert read <= MAX_BODY + CHUNK  # stopped at the limit, not buffered
    status, content, read = announced
    assert status == 413
    assert read == 0  # refused before a byte of it was read


@contextlib.contextmanager
def raw_connection(port: int) -> Iterator[socket.socket]:
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        yield conn
    finally:
        conn.close()


def post_80_mb(port: int, *, chunked: bool) -> tuple[bytes, int]:
    """Send an 80 MB POST as fast as the server takes it, until it answers;
    (the answer's first bytes, how many body bytes were sent by then)."""
    framing = (
        b"Transfer-Encoding: chunked\r\n"
        if chunked
        else f"Content-Length: {EIGHTY_MB}\r\n".encode()
    )
    head = (
        b"POST /sagas/x/retry HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n" + framing + b"\r\n"
    )
    piece = b"x" * CHUNK
    if chunked:
        piece = f"{CHUNK:x}\r\n".encode() + piece + b"\r\n"
    sent = 0
    with raw_connection(port) as conn:
        conn.sendall(head)
        conn.setblocking(False)
        while sent < EIGHTY_MB:
            readable, writable, _ = select.select([conn], [conn], [], 10)
            if readable:
                break
            if writable:
                with contextlib.suppress(BlockingIOError):
                    sent += conn.send(piece)
        conn.setblocking(True)
        try:
            answer = conn.recv(200)
        except ConnectionResetError:  # closed after answering
            answer = b""
    return answer, sent


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_an_80_mb_post_to_a_real_server_is_not_buffered(
    store: SQLiteStore, chunked: bool
) -> None:
    app = dashboard(store, FakeClock())
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    port = listening.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[listening]))
    try:
        while not server.started:  # noqa: ASYNC110 - uvicorn sets a flag
            await asyncio.sleep(0.01)
        answer, sent = await asyncio.to_thread(post_80_mb, port, chunked=chunked)
    finally:
        server.should_exit = True
        await serving
        listening.close()

    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert sent < EIGHTY_MB // 4  # it answered long before the body was in


# -- sessions ------------------------------------------------------------------


async def test_sign_in_opens_a_session_that_logout_ends_on_the_server(
    store: SQLiteStore,
) -> None:
    saga_id, app, _ = await with_failed_saga(store)
    async with client(app) as http:
        signed = await sign_in(http, BOB)
        cookie = http.cookies[SESSION_COOKIE]
        who = await http.get("/whoami")
        page = (await http.get(f"/sagas/{saga_id}")).text
        csrf = csrf_of(page)
        out = await http.post("/logout")
        assert SESSION_COOKIE not in http.cookies
        replayed = await http.post(
            f"/sagas/{saga_id}/retry",
            data={"csrf": csrf},
            headers={"Cookie": f"{SESSION_COOKIE}={cookie}", "Accept": "text/html"},
        )
        nobody = await http.get(
            "/whoami", headers={"Cookie": f"{SESSION_COOKIE}={cookie}"}
        )

    assert signed.status_code == 303
    assert signed.headers["location"] == "/whoami"
    assert BOB not in signed.headers["set-cookie"]
    assert re.fullmatch(r"[0-9a-f]{64}", cookie)
    assert who.json() == {"operator": "bob"}
    assert out.status_code == 303
    assert replayed.status_code == 403  # the copied cookie signs nobody in
    assert nobody.json() == {"operator": None}
    assert (await store.get(saga_id)).status is SagaStatus.FAILED


async def test_a_session_expires(store: SQLiteStore) -> None:
    clock = FakeClock()
    app = dashboard(store, clock, session_ttl=60.0)
    async with client(app) as http:
        await sign_in(http, ALICE)
        during = await http.get("/whoami")
        clock.advance(61.0)
        after = await http.get("/whoami")
    assert during.json() == {"operator": "alice"}
    assert after.json() == {"operator": None}


async def test_an_action_with_the_token_signs_its_operator_in(
    store: SQLiteStore,
) -> None:
    saga_id, app, _ = await with_failed_saga(store)
    async with client(app) as http:
        acted = await http.post(
            f"/sagas/{saga_id}/retry", data={"token": ALICE, "reason": "test"}
        )
        who = await http.get("/whoami")
    assert acted.status_code == 303
    assert who.json() == {"operator": "alice"}


# -- throttling ----------------------------------------------------------------


async def test_repeated_wrong_tokens_are_throttled(store: SQLiteStore) -> None:
    saga_id, app, clock = await with_failed_saga(store)
    url = f"/sagas/{saga_id}/retry"
    async with client(app) as http:
        wrong = [
            await http.post(url, headers={"Authorization": f"Bearer {WRONG}"})
            for _ in range(FAILURES)
        ]
        right_but_throttled = await http.post(
            url, headers={"Authorization": f"Bearer {ALICE}"}
        )
        login_throttled = await sign_in(http, ALICE)
        clock.advance(61.0)
        right = await http.post(
            url,
            headers={"Authorization": f"Bearer {ALICE}"},
            json={"reason": "carrier is back"},
        )

    assert [r.status_code for r in wrong] == [403] * FAILURES
    assert right_but_throttled.status_code == 429
    assert int(right_but_throttled.headers["retry-after"]) > 0
    assert "too many wrong tokens" in right_but_throttled.json()["detail"]
    assert login_throttled.status_code == 429
    assert right.status_code == 200
    assert (await store.get(saga_id)).status is SagaStatus.RUNNING


async def test_a_wrong_sign_in_shows_the_form_again(store: SQLiteStore) -> None:
    async with client(dashboard(store, FakeClock())) as http:
        wrong = await sign_in(http, WRONG)
        form = await http.get("/login?next=/whoami")
    assert wrong.status_code == 403
    assert "operator token is wrong" in wrong.text
    assert SESSION_COOKIE not in http.cookies
    assert 'name="token"' in form.text
    assert 'value="/whoami"' in form.text


async def test_forms_ask_a_shared_tokens_user_for_a_name(store: SQLiteStore) -> None:
    """The sign-in form and a saga's action forms ask for the token, and
    for the operator's name only where one token is shared by everyone."""
    saga_id, named, clock = await with_failed_saga(store)
    shared = create_app(store, [failing], token=ALICE, clock=clock)
    pages: dict[str, list[str]] = {}
    for kind, app in (("named", named), ("shared", shared)):
        async with client(app) as http:
            login = await http.get("/login")
            detail = await http.get(f"/sagas/{saga_id}")
        pages[kind] = [login.text, detail.text]
    for page in pages["named"] + pages["shared"]:
        assert 'name="token"' in page
    for page in pages["named"]:
        assert 'name="operator"' not in page
    for page in pages["shared"]:
        assert 'name="operator"' in page
    assert "autofocus" in pages["named"][0]  # the sign-in form's token field
    assert "autofocus" not in pages["named"][1]


# -- errors in the client's language ------------------------------------------


async def test_api_clients_get_json_errors_and_browsers_html(
    tmp_path: Path,
) -> None:
    closed = SQLiteStore(tmp_path / "closed.db")
    app = dashboard(closed, FakeClock())
    await closed.close()  # every read now fails: a 500
    json_accept = {"Accept": "application/json"}
    html_accept = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    async with client(app, raise_app_exceptions=False) as http:
        missing_json = await http.get("/no/such/page", headers=json_accept)
        missing_html = await http.get("/no/such/page", headers=html_accept)
        wrong_method = await http.delete("/api/counts")
        failed_json = await http.get("/api/counts")
        failed_html = await http.get("/", headers=html_accept)

    assert missing_json.status_code == 404
    assert missing_json.json() == {"detail": "no such page"}
    assert missing_html.status_code == 404
    assert "text/html" in missing_html.headers["content-type"]
    assert "no such page" in missing_html.text
    assert wrong_method.status_code == 405
    assert wrong_method.json() == {"detail": "method not allowed here"}
    assert failed_json.status_code == 500
    assert failed_json.json() == {"detail": "internal error: see the dashboard's log"}
    assert "Traceback" not in failed_html.text
    assert failed_html.status_code == 500


# -- tokens and sign-in ---------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    ["x" * (MIN_TOKEN - 1), {"alice": "short"}, {"": ALICE}, {"a b": ALICE}],
)
def test_short_tokens_and_bad_names_are_refused(
    tmp_path: Path, token: str | dict[str, str]
) -> None:
    with pytest.raises(SagaError, match=r"too short|invalid operator name"):
        create_app(SQLiteStore(":memory:"), token=token)


async def test_with_login_required_every_page_needs_an_operator(
    store: SQLiteStore,
) -> None:
    app = dashboard(store, FakeClock(), login_required=True)
    async with client(app) as http:
        page = await http.get("/workflows?status=failed")
        api = await http.get("/api/counts")
        static = await http.get("/static/dashboard.css")
        bearer = await http.get(
            "/api/counts", headers={"Authorization": f"Bearer {BOB}"}
        )
        signed = await http.post(
            "/login", data={"token": ALICE, "next": "//attacker.example/x"}
        )
        after = await http.get("/")

    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2Fworkflows%3Fstatus%3Dfailed"
    assert api.status_code == 401
    assert api.json()["detail"].startswith("sign in first")
    assert static.status_code == 200
    assert bearer.status_code == 200
    assert signed.headers["location"] == "/"  # never to another site
    assert after.status_code == 200
    with pytest.raises(SagaError, match="needs a token"):
        create_app(store, login_required=True)
