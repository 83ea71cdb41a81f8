"""AsyncAPI documents and Mermaid diagrams generated from the examples.

Every generated document is checked by the official parser,
``@asyncapi/parser`` (``tests/asyncapi/validate.mjs``, installed by ``make
test`` with ``npm ci``): zero errors. Without node or the parser the check
skips, or fails when ``CI=true``.
"""

from __future__ import annotations

import datetime
import importlib
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
import yaml
from examples.create_order import order_service
from pydantic import BaseModel, Field

from sagakit.adapters.store.event_memory import InMemoryEventStore
from sagakit.adapters.transport.inprocess import InProcessTransport
from sagakit.asyncapi import (
    EventSpec,
    describe,
    document,
    from_target,
    mermaid,
    parse_server,
    to_json,
    to_yaml,
)
from sagakit.choreography import EventBus, EventContext
from sagakit.definition import Parallel, Remote, Saga, Step
from sagakit.errors import DefinitionError, SagaError
from sagakit.examples.trip import trip_saga
from sagakit.participant import Participant

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "tests" / "asyncapi"
VALIDATE = NODE_DIR / "validate.mjs"
PARSER = NODE_DIR / "node_modules" / "@asyncapi" / "parser"

EXAMPLES = ["examples.create_order", "sagakit.examples.trip"]
# choreography examples join as they appear: any examples/choreography* package
EXAMPLES += sorted(
    f"examples.{p.name}"
    for p in (ROOT / "examples").glob("choreograph*")
    if (p / "__init__.py").exists()
)


def doc_of(target: str, **servers: str) -> dict[str, Any]:
    return document(
        from_target(importlib.import_module(target), servers=servers).model()
    )


# -- the official parser ----------------------------------------------------------


def node_or_skip() -> str:
    node = shutil.which("node")
    reason = None
    if node is None:
        reason = "node is not installed: the AsyncAPI parser cannot run"
    elif not PARSER.is_dir():
        reason = f"@asyncapi/parser is not installed: run npm ci --prefix {NODE_DIR}"
    if reason is not None or node is None:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return node


def parse(node: str, path: Path) -> tuple[list[str], list[str], int]:
    """(errors, other diagnostics, exit status) from the official parser."""
    result = subprocess.run(
        [node, str(VALIDATE), str(path)],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        cwd=NODE_DIR,
    )
    lines = result.stdout.splitlines()
    errors = [line for line in lines if f"{path}: error " in line]
    others = [
        line
        for line in lines
        if line not in errors
        and not line.startswith((f"{path}: valid", f"{path}: INV"))
    ]
    if result.returncode not in (0, 1):
        errors.append(f"validate.mjs exited {result.returncode}: {result.stderr}")
    return errors, others, result.returncode


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["yaml", "json"])
@pytest.mark.parametrize("target", EXAMPLES)
def test_official_parser_accepts_example_documents(
    target: str, fmt: str, tmp_path: Path
) -> None:
    node = node_or_skip()
    doc = doc_of(target, amqp="amqp://u:secret@rabbit:5672/", redis="redis://r:6379/0")
    path = tmp_path / f"{target}.{fmt}"
    path.write_text(to_yaml(doc) if fmt == "yaml" else to_json(doc), encoding="utf-8")
    errors, others, status = parse(node, path)
    for line in others:  # warnings are allowed; show them with -s or on failure
        print(line)
    assert errors == [], "\n".join(errors)
    assert status == 0


class Cat(BaseModel):
    kind: Literal["cat"] = "cat"


class Dog(BaseModel):
    kind: Literal["dog"] = "dog"


class Feed(BaseModel):
    """Types pydantic renders in newer JSON Schema: tuples, unions, enums."""

    pet: Annotated[Cat | Dog, Field(discriminator="kind")]
    pair: tuple[int, str]
    when: datetime.datetime
    maybe: int | None = None


@pytest.mark.slow
def test_official_parser_accepts_events_and_dynamic_replies(tmp_path: Path) -> None:
    node = node_or_skip()
    zoo = Participant("zoo")

    @zoo.handler("zoo.feed")
    def feed(cmd: Feed) -> Cat:
        return Cat()

    fed = EventSpec("zoo.fed", "zoo.events", Cat, ("zoo",), ("vet", "keeper"))
    doc = document(describe(participants=[zoo], events=[fed]).model())
    path = tmp_path / "zoo.yaml"
    path.write_text(to_yaml(doc), encoding="utf-8")
    errors, _, status = parse(node, path)
    assert errors == [], "\n".join(errors)
    assert status == 0


class Booked(BaseModel):
    """A parking space is held."""

    space: int


def choreography_app() -> Any:
    from sagakit.choreography import Choreography, EventBus, Flow  # noqa: PLC0415

    parking = Choreography(
        "parking",
        [
            Flow("booking.created", "booking.cancelled", "booking.rejected"),
            Flow("bill.paid"),
        ],
    )
    billing = EventBus("billing", choreographies=[parking])

    @billing.on("booking.created")
    async def bill(event: Booked) -> None:
        return None

    return describe(events=[billing, parking], title="parking")


@pytest.mark.slow
def test_official_parser_accepts_choreography_events(tmp_path: Path) -> None:
    pytest.importorskip("sagakit.choreography")
    node = node_or_skip()
    doc = document(choreography_app().model())
    assert doc["channels"]["events.billing"]["messages"] == {
        "booking.created": {"$ref": "#/components/messages/booking.created"}
    }
    assert doc["operations"]["billing.receive.booking.created"]["action"] == "receive"
    messages = doc["components"]["messages"]
    assert set(messages) == {
        "booking.created",
        "booking.cancelled",
        "booking.rejected",
        "bill.paid",
    }
    body = messages["booking.created"]["payload"]["properties"]["payload"]
    assert body == {"$ref": "#/components/schemas/Booked"}
    path = tmp_path / "parking.yaml"
    path.write_text(to_yaml(doc), encoding="utf-8")
    errors, _, status = parse(node, path)
    assert errors == [], "\n".join(errors)
    assert status == 0


class Paid(BaseModel):
    """A bill is paid."""

    amount: int


def publishing_app() -> Any:
    """billing publishes bill.paid (two subscribers, untyped handlers) and
    bill.refunded (audit's handler has a model); parking publishes
    parking.reserved, which nothing here handles."""
    billing = EventBus("billing", publishes={"bill.paid": Paid, "bill.refunded": Paid})
    parking = EventBus("parking", publishes=["parking.reserved"])
    audit = EventBus("audit")

    @parking.on("bill.paid")
    async def reserve(event: dict[str, Any]) -> None:
        return None

    @audit.on("bill.paid")
    async def note(event: dict[str, Any]) -> None:
        return None

    @audit.on("bill.refunded")
    async def refunded(event: Booked) -> None:
        return None

    # the publisher first: its sends still find the subscribers listed after it
    return describe(events=[billing, parking, audit], title="publishers")


def publishing_doc(target: str) -> dict[str, Any]:
    if target == "publishing_app":
        return document(publishing_app().model())
    for module in ("fastapi", "asyncpg"):  # examples.parking's services need them
        pytest.importorskip(module)
    return doc_of(target)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["publishing_app", "examples.parking"])
def test_official_parser_accepts_declared_publishers(
    target: str, tmp_path: Path
) -> None:
    node = node_or_skip()
    doc = publishing_doc(target)
    assert any(o["action"] == "send" for o in doc["operations"].values())
    path = tmp_path / f"{target}.yaml"
    path.write_text(to_yaml(doc), encoding="utf-8")
    errors, others, status = parse(node, path)
    assert errors == [], "\n".join(errors)
    warnings = [line for line in others if f"{path}: warning " in line]
    assert warnings == [], "\n".join(warnings)
    assert status == 0


@pytest.mark.slow
def test_official_parser_reports_errors(tmp_path: Path) -> None:
    node = node_or_skip()
    doc = doc_of("sagakit.examples.trip")
    doc["operations"] = {"bad": {"action": "fly"}}
    path = tmp_path / "bad.json"
    path.write_text(to_json(doc), encoding="utf-8")
    errors, _, status = parse(node, path)
    assert errors
    assert status == 1


# -- the model ------------------------------------------------------------------


def test_create_order_channels_operations_and_messages() -> None:
    doc = doc_of("examples.create_order")
    assert doc["asyncapi"] == "3.0.0"
    assert set(doc["channels"]) == {
        "consumer",
        "kitchen",
        "accounting",
        "sagakit.replies",
    }
    assert doc["channels"]["kitchen"]["address"] == "kitchen"
    commands = {
        "consumer.verify",
        "kitchen.create_ticket",
        "kitchen.cancel_ticket",
        "accounting.authorize",
        "kitchen.approve_ticket",
    }
    replies = {f"{c}.reply" for c in commands}
    assert set(doc["components"]["messages"]) == commands | replies
    assert set(doc["channels"]["sagakit.replies"]["messages"]) == replies
    ops = doc["operations"]
    # the saga sends each command and receives every reply; each service
    # receives its commands and sends its replies
    assert len(ops) == 5 + 1 + 3 * 2
    sends = [o for o in ops.values() if "saga:create_order" in str(o["tags"])]
    assert sorted(o["action"] for o in sends) == ["receive"] + ["send"] * 5
    send = ops["create_order.send.kitchen.create_ticket"]
    assert send["channel"] == {"$ref": "#/channels/kitchen"}
    assert send["reply"]["channel"] == {"$ref": "#/channels/sagakit.replies"}
    kitchen = ops["kitchen.receive.commands"]
    assert kitchen["action"] == "receive"
    assert len(kitchen["messages"]) == 3


def test_payload_schemas_are_embedded_in_the_envelope() -> None:
    doc = doc_of("examples.create_order")
    schemas = doc["components"]["schemas"]
    for name in ("CreateTicket", "TicketCreated", "CancelTicket", "AuthorizeCard"):
        assert name in schemas
    assert schemas["AuthorizeCard"]["properties"]["amount"]["exclusiveMinimum"] == 0
    messages = doc["components"]["messages"]
    command = messages["kitchen.create_ticket"]
    envelope = command["payload"]
    assert envelope["properties"]["kind"]["const"] == "command"
    assert envelope["properties"]["type"]["const"] == "kitchen.create_ticket"
    assert envelope["properties"]["payload"] == {
        "$ref": "#/components/schemas/CreateTicket"
    }
    assert "correlation_id" in envelope["required"]
    assert command["correlationId"] == {
        "$ref": "#/components/correlationIds/correlation_id"
    }
    location = doc["components"]["correlationIds"]["correlation_id"]["location"]
    assert location == "$message.payload#/correlation_id"
    reply = messages["kitchen.create_ticket.reply"]["payload"]
    assert reply["properties"]["kind"]["const"] == "reply"
    assert {"$ref": "#/components/schemas/TicketCreated"} in reply["properties"][
        "payload"
    ]["anyOf"]
    assert "ok" in reply["required"]
    # the handler's return annotation when the saga names no reply model
    approve = messages["kitchen.approve_ticket.reply"]["payload"]["properties"]
    assert {"$ref": "#/components/schemas/TicketApproved"} in approve["payload"][
        "anyOf"
    ]
    # no model on either side: any object
    cancel = messages["kitchen.cancel_ticket.reply"]["payload"]["properties"]
    assert {"type": "object"} in cancel["payload"]["anyOf"]


def test_servers_keep_protocols_and_drop_credentials() -> None:
    doc = doc_of(
        "examples.create_order",
        prod="amqp://orders:s3cr3t@rabbit.internal:5672/orders?token=t0k3n",
        cache="rediss://:hunter2@redis.internal:6380/1",
        legacy="celery+amqp://guest:guest@celery.internal//",
        stream="nats://bus:pa55@nats.internal:4222?ack_wait=5",
    )
    text = json.dumps(doc)
    for secret in ("s3cr3t", "hunter2", "t0k3n", "guest", "orders:", "pa55"):
        assert secret not in text
    servers = doc["servers"]
    assert servers["prod"]["host"] == "rabbit.internal:5672"
    assert servers["prod"]["protocol"] == "amqp"
    assert servers["prod"]["pathname"] == "/orders"
    assert servers["cache"]["protocol"] == "rediss"
    assert servers["legacy"]["protocol"] == "amqp"
    assert servers["stream"]["protocol"] == "nats"
    assert servers["stream"]["host"] == "nats.internal:4222"
    assert servers["prod"]["security"] == [
        {"$ref": "#/components/securitySchemes/userPassword"}
    ]
    binding = doc["channels"]["kitchen"]["bindings"]["amqp"]
    assert binding["queue"]["name"] == "sagakit.kitchen"


@pytest.mark.parametrize(
    "url", ["memory://", "http://x", "amqp:///vhost", "amqp://h:x/", "celery+nats://h"]
)
def test_bad_server_urls_are_definition_errors(url: str) -> None:
    with pytest.raises(DefinitionError, match="server 'x'"):
        parse_server("x", url)


def test_trip_saga_has_no_messages() -> None:
    doc = doc_of("sagakit.examples.trip")
    assert doc["channels"] == {}
    assert doc["operations"] == {}
    assert "confirm_trip [pivot]" in doc["info"]["description"]


def test_yaml_and_json_are_the_same_document() -> None:
    doc = doc_of("examples.create_order")
    assert yaml.safe_load(to_yaml(doc)) == json.loads(to_json(doc))


class Ping(BaseModel):
    """Is anyone there?"""

    n: int


class Pong(BaseModel):
    n: int


def test_participant_alone_replies_to_a_dynamic_address() -> None:
    svc = Participant("echo", queue="echo.in")

    @svc.handler("echo.ping")
    def ping(cmd: Ping) -> Pong:
        return Pong(n=cmd.n)

    doc = document(describe(participants=[svc]).model())
    assert doc["channels"]["reply_to"]["address"] is None
    reply = doc["operations"]["echo.receive.commands"]["reply"]
    assert reply["address"]["location"] == "$message.payload#/reply_to"
    body = doc["components"]["messages"]["echo.ping"]["payload"]["properties"]
    assert body["payload"] == {"$ref": "#/components/schemas/Ping"}
    assert doc["components"]["messages"]["echo.ping"]["summary"] == "Is anyone there?"


def test_events_extension_point() -> None:
    class Bus:
        def asyncapi_events(self) -> list[EventSpec]:
            return [
                EventSpec(
                    "order.placed", "orders.events", Pong, ("orders",), ("kitchen",)
                )
            ]

    doc = document(describe(events=[Bus()]).model())
    assert doc["channels"]["orders.events"]["messages"] == {
        "order.placed": {"$ref": "#/components/messages/order.placed"}
    }
    assert doc["operations"]["orders.send.order.placed"]["action"] == "send"
    assert doc["operations"]["kitchen.receive.order.placed"]["action"] == "receive"
    payload = doc["components"]["messages"]["order.placed"]["payload"]
    assert payload["properties"]["kind"]["const"] == "event"


def sends(doc: dict[str, Any], actor: str) -> dict[str, tuple[str, list[str]]]:
    """``actor``'s send operations: id -> (channel, message refs)."""
    return {
        key: (op["channel"]["$ref"], [m["$ref"] for m in op["messages"]])
        for key, op in doc["operations"].items()
        if op["action"] == "send" and {"name": f"publisher:{actor}"} in op["tags"]
    }


def test_declared_publishers_send_on_each_subscribers_channel() -> None:
    doc = document(publishing_app().model())
    assert sends(doc, "billing") == {
        "billing.send.bill.paid.to.events.parking": (
            "#/channels/events.parking",
            ["#/channels/events.parking/messages/bill.paid"],
        ),
        "billing.send.bill.paid.to.events.audit": (
            "#/channels/events.audit",
            ["#/channels/events.audit/messages/bill.paid"],
        ),
        "billing.send.bill.refunded.to.events.audit": (
            "#/channels/events.audit",
            ["#/channels/events.audit/messages/bill.refunded"],
        ),
    }
    fan_out = doc["operations"]["billing.send.bill.paid.to.events.audit"]
    assert "by route, at run time" in fan_out["summary"]
    assert fan_out["summary"].endswith("here audit.")
    # nothing here handles parking.reserved: a message, and no operation
    assert sends(doc, "parking") == {}
    messages = doc["components"]["messages"]
    assert messages["parking.reserved"]["x-sagakit-usages"] == [
        {"actor": "parking", "role": "publisher"}
    ]
    assert all(
        "parking.reserved" not in channel["messages"]
        for channel in doc["channels"].values()
    )
    # the declared model, unless a handler validates with its own
    body = {k: m["payload"]["properties"]["payload"] for k, m in messages.items()}
    assert body["bill.paid"] == {"$ref": "#/components/schemas/Paid"}
    assert body["bill.refunded"] == {"$ref": "#/components/schemas/Booked"}
    assert body["parking.reserved"] == {"type": "object"}
    assert messages["bill.paid"]["summary"] == "A bill is paid."


def test_a_bus_that_declares_nothing_has_no_send_operations() -> None:
    doc = document(choreography_app().model())
    assert [o["action"] for o in doc["operations"].values()] == ["receive"]


def test_parking_services_declare_what_they_publish() -> None:
    for module in ("fastapi", "asyncpg"):
        pytest.importorskip(module)
    doc = doc_of("examples.parking")
    published = {
        actor: sorted(sends(doc, actor)) for actor in ("booking", "billing", "parking")
    }
    assert published == {
        "booking": ["booking.send.booking.created.to.events.billing"],
        "billing": ["billing.send.bill.paid.to.events.parking"],
        "parking": [
            "parking.send.parking.reserved.to.events.booking",
            "parking.send.parking.unavailable.to.events.billing",
            "parking.send.parking.unavailable.to.events.booking",
        ],
    }
    # handled by nobody in the example: described, without an operation
    usages = doc["components"]["messages"]["bill.refunded"]["x-sagakit-usages"]
    assert usages == [{"actor": "billing", "role": "publisher"}]


@pytest.mark.parametrize(
    ("publishes", "match"),
    [
        ("bill.paid", "expected a list of event types or a mapping"),
        (42, "expected a list of event types or a mapping"),
        (["bill.paid", ""], "'' is not an event type name"),
        ([7], "7 is not an event type name"),
        (["bill.paid", "bill.paid"], "'bill.paid' appears twice"),
        ({"bill.paid": dict}, "the payload of 'bill.paid' must be a pydantic model"),
        ({"x.y": Paid(amount=1)}, "the payload of 'x.y' .* class, got Paid"),
    ],
)
def test_publishes_is_checked_when_the_bus_is_made(publishes: Any, match: str) -> None:
    with pytest.raises(DefinitionError, match=f"event bus billing: publishes: {match}"):
        EventBus("billing", publishes=publishes)


def test_publishes_is_kept_with_its_models() -> None:
    assert EventBus("a", publishes=["x.y"]).publishes == {"x.y": None}
    both = EventBus("a", publishes={"x.y": Paid, "x.z": None})
    assert both.publishes == {"x.y": Paid, "x.z": None}
    assert EventBus("a").publishes == {}


async def test_publishing_an_undeclared_event_raises_and_sends_nothing() -> None:
    transport, store = InProcessTransport(), InMemoryEventStore()
    billing = EventBus("billing", transport, store, publishes=["bill.paid"])
    await store.subscribe("audit", "events.audit", ["bill.paid", "bill.lost"], now=0)

    @billing.on("bill.asked")
    async def ask(event: dict[str, Any], ctx: EventContext) -> None:
        await ctx.publish("bill.lost", event)

    undeclared = "event bus billing does not publish 'bill.lost': it declared bill.paid"
    try:
        with pytest.raises(SagaError, match=undeclared):
            await billing.publish("bill.lost", {}, correlation_id="c")
        with pytest.raises(SagaError, match=undeclared):
            await billing.publish_on(None, "bill.lost", correlation_id="c")
        with pytest.raises(SagaError, match=undeclared):
            await billing.handle(billing.event("bill.asked", {}, correlation_id="c"))
        assert await billing.publish_staged() == 0
        assert transport.pending("events.audit") == 0
        lines = await store.timeline("c")
        assert [(r.event_type, r.outcome.value) for r in lines] == [
            ("bill.asked", "failed")
        ]
        # a declared type goes out as before
        await billing.publish("bill.paid", {}, correlation_id="c")
        await billing.publish_on(None, "bill.paid", correlation_id="c")
        assert await billing.publish_staged() == 1
        assert transport.pending("events.audit") == 2
    finally:
        await transport.close()
        await store.close()


def test_payload_model_comes_from_the_builder_annotation() -> None:
    def build(ctx: BaseModel) -> Ping:
        return Ping(n=1)

    saga: Saga[Any] = Saga(
        "pinger", [Step("ping", Remote("echo.ping", build, reply=Pong))]
    )
    doc = document(describe(sagas=[saga]).model())
    messages = doc["components"]["messages"]
    assert messages["echo.ping"]["payload"]["properties"]["payload"] == {
        "$ref": "#/components/schemas/Ping"
    }
    assert messages["echo.ping"]["x-sagakit-usages"] == [
        {"actor": "pinger", "role": "action", "step": "ping"}
    ]


def fire_and_forget_saga() -> Saga[Any]:
    def cancel(ctx: BaseModel) -> Ping:
        return Ping(n=2)

    return Saga(
        "forgetful",
        [
            Step(
                "ping",
                Remote(
                    "echo.ping",
                    reply=Pong,
                    on_timeout=Remote("echo.cancel_ping", cancel),
                ),
                compensate=Remote("echo.unping", awaited=False),
            ),
            Step("pong", Remote("echo.pong")),
        ],
    )


def test_commands_sent_without_a_reply_wait_have_no_reply() -> None:
    doc = document(describe(sagas=[fire_and_forget_saga()]).model())
    messages = doc["components"]["messages"]
    for command in ("echo.ping", "echo.pong", "echo.unping", "echo.cancel_ping"):
        assert command in messages
    assert "echo.ping.reply" in messages
    assert "echo.unping.reply" not in messages
    assert "echo.cancel_ping.reply" not in messages
    assert messages["echo.cancel_ping"]["payload"]["properties"]["payload"] == {
        "$ref": "#/components/schemas/Ping"
    }
    assert messages["echo.cancel_ping"]["x-sagakit-usages"] == [
        {"actor": "forgetful", "role": "on_timeout", "step": "ping"}
    ]
    ops = doc["operations"]
    assert "reply" in ops["forgetful.send.echo.ping"]
    for command in ("echo.unping", "echo.cancel_ping"):
        op = ops[f"forgetful.send.{command}"]
        assert "reply" not in op
        assert "no reply awaited" in op["summary"]
    replies = ops["forgetful.receive.replies"]["messages"]
    assert len(replies) == 2  # echo.ping's and echo.pong's


@pytest.mark.slow
def test_official_parser_accepts_commands_without_replies(tmp_path: Path) -> None:
    node = node_or_skip()
    doc = document(describe(sagas=[fire_and_forget_saga()]).model())
    path = tmp_path / "forgetful.yaml"
    path.write_text(to_yaml(doc), encoding="utf-8")
    errors, _, status = parse(node, path)
    assert errors == [], "\n".join(errors)
    assert status == 0


def test_mermaid_shows_what_is_sent_without_a_reply_wait() -> None:
    chart = mermaid(fire_and_forget_saga())
    assert "on timeout: echo.cancel_ping" in chart
    assert "command echo.unping<br/>queue echo<br/>no reply awaited" in chart


# -- Mermaid ----------------------------------------------------------------------


def test_mermaid_of_the_trip_saga() -> None:
    chart = mermaid(trip_saga)
    assert chart.startswith("flowchart TD\n")
    for step in trip_saga.step_names:
        assert f"<b>{step}</b>" in chart
    assert 'subgraph parallel0 ["parallel group"]' in chart
    assert "fork0 --> s0" in chart
    assert "s2 --> join0" in chart
    assert 's3{{"<b>confirm_trip</b><br/>PIVOT' in chart
    assert "class s3 pivot" in chart
    for n in range(3):  # each booking is undone by its cancellation
        assert f"s{n} -. undo .-> u{n}" in chart
        assert f"u{n} -.-> compensated" in chart
    assert "u3" not in chart


def test_mermaid_of_remote_steps_chains_compensations_in_reverse() -> None:
    chart = mermaid(order_service.create_order_saga)
    assert "command kitchen.create_ticket<br/>queue kitchen" in chart
    assert "undo create_ticket<br/>command kitchen.cancel_ticket" in chart
    assert "u2 -.-> u0" in chart  # cancel the ticket, then reject the order
    assert "u0 -.-> compensated" in chart
    assert "PIVOT" in chart.split("authorize_card")[1].splitlines()[0]


def test_mermaid_escapes_nothing_it_does_not_need_to() -> None:
    saga: Saga[Any] = Saga(
        "s", [Parallel(Step("a", lambda c: None), Step("b", lambda c: None))]
    )
    chart = mermaid(saga)
    assert "compensated" not in chart
    assert "join0 --> succeeded" in chart


def test_mermaid_of_a_dag_draws_its_dependencies() -> None:
    def act(ctx: Any) -> None:
        return None

    saga: Saga[Any] = Saga(
        "dag",
        [
            Step("reserve", act, act),
            Step("pack", act, act, after=("reserve",)),
            Step("invoice", act, after=()),
            Step("ship", act, pivot=True, after=("pack", "invoice")),
        ],
    )
    chart = mermaid(saga)
    assert "parallel group" not in chart
    for edge in ("start --> s0", "start --> s2", "s0 --> s1", "s1 --> s3"):
        assert f"    {edge}\n" in chart
    assert "s2 --> s3" in chart
    assert "s3 --> succeeded" in chart
    assert "s0 --> succeeded" not in chart
    assert "u1 -.-> u0" in chart  # pack is undone before reserve


# -- the CLI ----------------------------------------------------------------------


def sagakit(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sagakit.cli.main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_one_error_line(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")


@pytest.mark.e2e
def test_cli_asyncapi_writes_json_and_yaml(tmp_path: Path) -> None:
    out = tmp_path / "doc.json"
    result = sagakit(
        "asyncapi",
        "examples.create_order",
        "--format",
        "json",
        "--output",
        str(out),
        "--server",
        "prod=amqp://u:pw@rabbit/",
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    assert doc["servers"]["prod"]["host"] == "rabbit"
    assert "pw" not in json.dumps(doc["servers"])
    result = sagakit("asyncapi", "sagakit.examples.trip:trip_saga")
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["asyncapi"] == "3.0.0"


@pytest.mark.e2e
def test_cli_diagram_prints_mermaid() -> None:
    result = sagakit("diagram", "sagakit.examples.trip:trip_saga")
    assert result.returncode == 0, result.stderr
    assert result.stdout == mermaid(trip_saga)


@pytest.mark.e2e
@pytest.mark.parametrize(
    "args",
    [
        ("asyncapi", "no_such_module_here"),
        ("asyncapi", "sagakit.errors"),
        ("asyncapi", "sagakit.examples.trip:nothing"),
        ("asyncapi", "sagakit.examples.trip", "--format", "xml"),
        ("asyncapi", "sagakit.examples.trip", "--server", "prod"),
        ("asyncapi", "sagakit.examples.trip", "--server", "x=memory://"),
        ("diagram", "sagakit.examples.trip:TripContext"),
        ("diagram", "no_such_module_here:saga"),
    ],
)
def test_cli_bad_targets_fail_with_one_line(args: tuple[str, ...]) -> None:
    assert_one_error_line(sagakit(*args))


def test_redis_stream_names_match_the_transport() -> None:
    """The document names each channel's stream as RedisTransport keys it."""
    redis = pytest.importorskip("sagakit.adapters.transport.redis")
    doc = doc_of(EXAMPLES[0], redis="redis://r:6379/0")
    named = {
        channel["address"]: channel["x-sagakit-redis-stream"]
        for channel in doc["channels"].values()
        if "x-sagakit-redis-stream" in channel
    }
    assert named
    keys = types.SimpleNamespace(prefix="sagakit", cluster=False)
    for queue, stream in named.items():
        assert stream == redis.RedisTransport.stream_key(keys, queue)
