"""saga-framework's API on sagakit: BaseSaga in memory, AsyncSaga/StatefulSaga
with real Celery workers over RabbitMQ.

The Celery part runs ``tests/integration/saga_framework_app.py`` in one
``celery worker`` subprocess (the step handlers and the orchestrator's
response tasks, on queues unique to this module), stopped and killed at the
end; its queues and exchanges are deleted.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sagakit.compat.saga_framework import BaseSaga, BaseStep, SyncStep
from tests.conftest import delete_rabbitmq_queues

ROOT = Path(__file__).resolve().parents[2]
WAIT = 60.0
"""Seconds a saga gets to finish through the worker."""


# -- BaseSaga: sync steps, in memory ----------------------------------------


class Recording(BaseSaga):
    """Three steps; ``fail_at`` fails an action, ``fail_compensation`` one undo."""

    def __init__(
        self,
        saga_id: int,
        log: list[tuple[str, ...]],
        fail_at: str | None = None,
        fail_compensation: str | None = None,
    ) -> None:
        super().__init__(saga_id)
        self.log = log

        def act(step: BaseStep) -> None:
            log.append(("action", step.name))
            if step.name == fail_at:
                raise ValueError(f"{step.name} broke")

        def undo(step: BaseStep) -> None:
            log.append(("compensation", step.name))
            if step.name == fail_compensation:
                raise RuntimeError(f"undo {step.name} broke")

        self.steps = [
            SyncStep(n, action=act, compensation=undo) for n in ("a", "b", "c")
        ]

    def on_saga_success(self) -> None:
        self.log.append(("success",))

    def on_saga_failure(self, failed_step: BaseStep, payload: dict[str, Any]) -> None:
        self.log.append(
            ("failure", failed_step.name, payload["type"], payload["message"])
        )

    def on_compensation_failure(
        self,
        initially_failed_step: BaseStep,
        initial_failure_payload: dict[str, Any],
        compensation_failed_step: BaseStep,
        compensation_exception: BaseException,
    ) -> None:
        self.log.append(
            (
                "compensation_failure",
                initially_failed_step.name,
                compensation_failed_step.name,
                str(compensation_exception),
            )
        )


def test_base_saga_runs_every_step_then_on_saga_success() -> None:
    log: list[tuple[str, ...]] = []
    Recording(1, log).execute()
    assert log == [("action", "a"), ("action", "b"), ("action", "c"), ("success",)]


@pytest.mark.parametrize(
    ("fail_at", "undone"), [("a", []), ("b", ["a"]), ("c", ["b", "a"])]
)
def test_base_saga_compensates_earlier_steps_in_reverse(
    fail_at: str, undone: list[str]
) -> None:
    log: list[tuple[str, ...]] = []
    Recording(1, log, fail_at=fail_at).execute()
    ran = [s for s in "abc" if s <= fail_at]
    assert log == [
        *[("action", s) for s in ran],
        *[("compensation", s) for s in undone],  # not the failed step itself
        ("failure", fail_at, "ValueError", f"{fail_at} broke"),
    ]


def test_a_failing_compensation_stops_the_rollback_as_saga_framework_does() -> None:
    # saga-framework 0.1 passes the step that failed as compensation_failed_step
    log: list[tuple[str, ...]] = []
    Recording(1, log, fail_at="c", fail_compensation="b").execute()
    assert log[-1] == ("compensation_failure", "c", "c", "undo b broke")
    assert ("compensation", "a") not in log  # the rollback stops there


def test_a_callback_error_is_raised_after_the_saga_ended() -> None:
    class Exploding(Recording):
        def on_saga_success(self) -> None:
            raise LookupError("callback broke")

    log: list[tuple[str, ...]] = []
    with pytest.raises(LookupError, match="callback broke"):
        Exploding(1, log).execute()
    assert log == [("action", "a"), ("action", "b"), ("action", "c")]


async def test_execute_inside_an_event_loop_and_execute_async() -> None:
    log: list[tuple[str, ...]] = []
    Recording(1, log).execute()  # runs in a helper thread
    await Recording(2, log).execute_async()
    assert log.count(("success",)) == 2


def test_execute_from_a_later_step_takes_the_earlier_ones_as_done() -> None:
    log: list[tuple[str, ...]] = []
    saga = Recording(1, log, fail_at="c")
    saga.execute(saga.steps[1])
    assert log == [
        ("action", "b"),
        ("action", "c"),
        ("compensation", "b"),
        ("compensation", "a"),  # done before this run, so undone too
        ("failure", "c", "ValueError", "c broke"),
    ]


def test_base_saga_stops_at_a_step_that_is_not_sync() -> None:
    from sagakit.compat.saga_framework import AsyncStep  # noqa: PLC0415

    log: list[tuple[str, ...]] = []
    saga = Recording(1, log)
    saga.steps.insert(
        1, AsyncStep("t.x", "q", name="remote", action=lambda s: log.append(("sent",)))
    )
    saga.execute()
    assert log == [("action", "a"), ("sent",)]  # then it waits for a reply


# -- AsyncSaga / StatefulSaga with a real Celery worker ----------------------


def _stop(worker: subprocess.Popen[bytes]) -> None:
    from tests.integration.test_celery_interop import stop  # noqa: PLC0415

    stop(worker)


@pytest.fixture(scope="module")
def service(
    rabbitmq_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    pytest.importorskip("celery")
    pytest.importorskip("sqlalchemy")
    from tests.integration import saga_framework_app as sf  # noqa: PLC0415
    from tests.integration.test_celery_interop import delete_exchanges  # noqa: PLC0415

    where = tmp_path_factory.mktemp("saga-framework")
    config = sf.Config(
        broker=rabbitmq_url,
        suffix=uuid.uuid4().hex[:12],
        store_url=f"sqlite:///{where / 'sagakit.db'}",
        state_url=f"sqlite:///{where / 'state.db'}",
        log=where / "notes.jsonl",
    )
    built = sf.build(config)
    env = {
        **os.environ,
        **config.env(),
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    }
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tests.integration.saga_framework_app",
        "worker",
        "--pool=solo",
        "-Q",
        f"{config.commands},{config.responses}",
        "-n",
        f"sf-{config.suffix}@%h",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--loglevel",
        "INFO",
    ]
    with built.worker_log.open("wb") as out:
        worker = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield built
    finally:
        _stop(worker)
        built.app.close()
        queues = [config.commands, config.responses]
        asyncio.run(delete_rabbitmq_queues(*queues))
        asyncio.run(delete_exchanges(rabbitmq_url, *queues))


def wait_until(service: Any, what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        if time.monotonic() > deadline:
            log = service.worker_log.read_text()[-4000:]
            pytest.fail(f"timed out waiting for {what}; worker log:\n{log}")
        time.sleep(0.05)


def notes(service: Any, saga_id: int) -> list[dict[str, Any]]:
    from tests.integration.saga_framework_app import read_notes  # noqa: PLC0415

    return [n for n in read_notes(service.config.log) if n.get("saga_id") == saga_id]


def finished(service: Any, saga_id: int) -> Callable[[], bool]:
    def check() -> bool:
        status = service.repository.get_saga_state_by_id(saga_id).status
        return status in {"succeeded", "failed"}

    return check


def statuses(service: Any, saga_id: int) -> list[str]:
    return [n["status"] for n in notes(service, saga_id) if n["kind"] == "status"]


def events(service: Any, saga_id: int) -> list[tuple[str, str]]:
    return [
        (n["kind"], n.get("step") or n.get("task") or "")
        for n in notes(service, saga_id)
        if n["kind"] != "status"
    ]


@pytest.mark.celery
@pytest.mark.rabbitmq
@pytest.mark.slow
def test_async_saga_runs_through_celery_and_ignores_duplicate_replies(
    service: Any,
) -> None:
    saga_id = service.start()
    wait_until(service, "the saga to succeed", finished(service, saga_id))
    assert statuses(service, saga_id) == [
        "reserve.running",
        "create_ticket.running",
        "authorize.running",
        "approve.running",
        "succeeded",
    ]
    assert events(service, saga_id) == [
        ("action", "reserve"),
        ("action", "create_ticket"),
        ("handler", "kitchen.create_ticket"),
        ("on_success", "create_ticket"),
        ("action", "authorize"),
        ("handler", "accounting.authorize"),
        ("on_success", "authorize"),
        ("action", "approve"),
        ("saga_success", ""),
    ]
    success = next(n for n in notes(service, saga_id) if n["kind"] == "on_success")
    assert success["payload"] == {"ticket_id": f"T-{saga_id}"}
    assert success["pid"] != os.getpid()  # the orchestrator's worker applied it
    row = service.repository.get_saga_state_by_id(saga_id)
    log = service.worker_log.read_text()
    assert f"accounting.authorize[{row.last_message_id}]" in log  # the task id

    # saga-framework would run the next step (and on_saga_success) again
    duplicates = []
    for task in ("kitchen.create_ticket", "accounting.authorize"):
        task_id = uuid.uuid4().hex
        duplicates.append(task_id)
        service.app.send_task(
            f"{task}.response.success",
            args=[saga_id, {"ticket_id": "again"}],
            queue=service.config.responses,
            task_id=task_id,
            serializer="json",
        )
    wait_until(
        service,
        "the duplicates to be handled",
        lambda: all(
            f"[{i}] succeeded" in service.worker_log.read_text() for i in duplicates
        ),
    )
    assert len(events(service, saga_id)) == 9  # nothing ran again
    assert statuses(service, saga_id)[-1] == "succeeded"


@pytest.mark.celery
@pytest.mark.rabbitmq
@pytest.mark.slow
def test_a_refused_step_is_reported_as_the_failed_step_and_rolled_back(
    service: Any,
) -> None:
    saga_id = service.start(refuse=True)
    wait_until(service, "the saga to fail", finished(service, saga_id))
    assert statuses(service, saga_id) == [
        "reserve.running",
        "create_ticket.running",
        "reserve.compensating",
        "reserve.compensated",
        "failed",
    ]
    assert events(service, saga_id) == [
        ("action", "reserve"),
        ("action", "create_ticket"),
        ("handler", "kitchen.create_ticket"),
        ("on_failure", "create_ticket"),
        ("compensation", "reserve"),
        ("saga_failure", "create_ticket"),
    ]
    row = service.repository.get_saga_state_by_id(saga_id)
    assert row.failed_step == "create_ticket"
    assert row.failed_at is not None
    assert row.failure_details["type"] == "KitchenFull"
    assert row.failure_details["message"] == "no room in the kitchen"
    assert any("KitchenFull" in line for line in row.failure_details["traceback"])


@pytest.mark.celery
@pytest.mark.rabbitmq
@pytest.mark.slow
def test_auto_retry_then_reraise_retries_before_replying(service: Any) -> None:
    saga_id = service.start(authorize_failures=2)  # succeeds on the 3rd try
    wait_until(service, "the saga to succeed", finished(service, saga_id))
    attempts = [
        n["attempt"]
        for n in notes(service, saga_id)
        if n.get("task") == "accounting.authorize"
    ]
    assert attempts == [1, 2, 3]
    assert statuses(service, saga_id)[-1] == "succeeded"


@pytest.mark.celery
@pytest.mark.rabbitmq
@pytest.mark.slow
def test_retries_exhausted_then_a_failing_compensation_names_both_steps(
    service: Any,
) -> None:
    saga_id = service.start(authorize_failures=9, fail_reserve_compensation=True)
    wait_until(
        service,
        "the rollback to stop",
        lambda: any(
            n["kind"] == "compensation_failure" for n in notes(service, saga_id)
        ),
    )
    attempts = [
        n["attempt"]
        for n in notes(service, saga_id)
        if n.get("task") == "accounting.authorize"
    ]
    assert attempts == [1, 2, 3]  # max_retries=2, then the failure response
    assert statuses(service, saga_id)[2:] == [
        "authorize.running",
        "create_ticket.compensating",
        "create_ticket.compensated",
        "reserve.compensating",  # where saga-framework leaves the row too
    ]
    failure = next(
        n for n in notes(service, saga_id) if n["kind"] == "compensation_failure"
    )
    assert failure["failed_step"] == "authorize"
    assert failure["compensation_step"] == "authorize"  # saga-framework's choice
    assert "stock service is down" in failure["error"]
    row = service.repository.get_saga_state_by_id(saga_id)
    assert row.failed_step == "authorize"
    assert row.failure_details["type"] == "ConnectionError"


# -- the SQLAlchemy saga state repository: SQLite and PostgreSQL -------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    pytest.importorskip("sqlalchemy")
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    url: str = request.getfixturevalue("pg_url")
    return "postgresql+psycopg://" + url.split("://", 1)[1]


def test_sqlalchemy_repository_keeps_a_stateful_sagas_progress(state_url: str) -> None:
    from sqlalchemy import create_engine  # noqa: PLC0415
    from sqlalchemy.orm import sessionmaker  # noqa: PLC0415

    from sagakit.compat.saga_framework import StatefulSaga  # noqa: PLC0415
    from sagakit.compat.saga_framework.sqlalchemy_state import (  # noqa: PLC0415
        SQLAlchemySagaStateRepository,
    )
    from sagakit.errors import SagaNotFound  # noqa: PLC0415
    from tests.integration.saga_framework_app import (  # noqa: PLC0415
        Base,
        CreateOrderSagaState,
    )

    engine = create_engine(state_url)
    Base.metadata.create_all(engine)
    try:
        repository = SQLAlchemySagaStateRepository(
            sessionmaker(engine), CreateOrderSagaState
        )
        seen: list[str] = []

        class Recorder(SQLAlchemySagaStateRepository[CreateOrderSagaState]):
            def update_status(self, saga_id: Any, status: str) -> CreateOrderSagaState:
                seen.append(status)
                return super().update_status(saga_id, status)

        recorder = Recorder(sessionmaker(engine), CreateOrderSagaState)

        def broken(step: BaseStep) -> None:
            raise PermissionError("card declined")

        class Checkout(StatefulSaga):
            store_url = "memory://"

            def __init__(self, *args: Any) -> None:
                super().__init__(*args)
                self.steps = [SyncStep("reserve"), SyncStep("charge", action=broken)]

        fresh = repository.create(refuse=True)
        assert fresh.status == "not_started"
        assert fresh.created_at is not None
        assert fresh.refuse is True
        Checkout(recorder, None, fresh.id).execute()

        row = repository.get_saga_state_by_id(fresh.id)
        assert seen == [
            "reserve.running",
            "charge.running",
            "reserve.compensating",
            "reserve.compensated",
            "failed",
        ]
        assert row.status == "failed"
        assert row.failed_step == "charge"
        assert row.failed_at is not None
        assert row.failure_details["type"] == "PermissionError"
        assert row.failure_details["message"] == "card declined"
        assert row.updated_at >= row.created_at

        updated = repository.update(fresh.id, last_message_id="m-1")
        assert updated.last_message_id == "m-1"
        with pytest.raises(SagaNotFound, match="no CreateOrderSagaState"):
            repository.get_saga_state_by_id(fresh.id + 1000)
        with pytest.raises(AttributeError, match="no column"):
            repository.update(fresh.id, nonsense=1)
    finally:
        Base.metadata.drop_all(engine)
        engine.dispose()
