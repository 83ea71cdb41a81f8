"""A saga-framework style deployment on sagakit's compat layer, for real workers.

One Celery app holds both sides, as two services would:

- the step handlers ``kitchen.create_ticket`` and ``accounting.authorize``
  (``saga_step_handler`` + ``auto_retry_then_reraise``), reading the queue
  ``sf-commands-<suffix>``;
- the orchestrator's response tasks (``register_async_step_handlers``),
  reading ``sf-responses-<suffix>``.

``build(Config)`` makes them; a worker gets its config from ``SF_*``
environment variables. Everything that happens is appended to the JSON lines
file ``SF_LOG`` so the test process can see what the worker did.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from celery import Celery
from sqlalchemy import create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from sagakit.compat.saga_framework import (
    AsyncStep,
    BaseStep,
    StatefulSaga,
    SyncStep,
    auto_retry_then_reraise,
    saga_step_handler,
)
from sagakit.compat.saga_framework.sqlalchemy_state import (
    SagaStateMixin,
    SQLAlchemySagaStateRepository,
)


@dataclass(frozen=True)
class Config:
    broker: str
    suffix: str
    store_url: str
    state_url: str
    log: Path

    @property
    def commands(self) -> str:
        return f"sf-commands-{self.suffix}"

    @property
    def responses(self) -> str:
        return f"sf-responses-{self.suffix}"

    def env(self) -> dict[str, str]:
        return {
            "SF_BROKER": self.broker,
            "SF_SUFFIX": self.suffix,
            "SF_STORE": self.store_url,
            "SF_STATE": self.state_url,
            "SF_LOG": str(self.log),
        }

    @classmethod
    def from_env(cls) -> Config:
        e = os.environ
        return cls(
            e["SF_BROKER"],
            e["SF_SUFFIX"],
            e["SF_STORE"],
            e["SF_STATE"],
            Path(e["SF_LOG"]),
        )


class Base(DeclarativeBase):
    pass


class CreateOrderSagaState(SagaStateMixin, Base):
    __tablename__ = "create_order_saga_state"
    # what this test's sagas are asked to do
    refuse: Mapped[bool] = mapped_column(default=False)
    authorize_failures: Mapped[int] = mapped_column(default=0)
    fail_reserve_compensation: Mapped[bool] = mapped_column(default=False)


@dataclass(frozen=True)
class Service:
    config: Config
    app: Celery
    repository: SQLAlchemySagaStateRepository[CreateOrderSagaState]
    saga: type[StatefulSaga]

    @property
    def worker_log(self) -> Path:
        """Where the test writes the worker's output."""
        return self.config.log.with_name("worker.log")

    def start(self, **fields: Any) -> int:
        row = self.repository.create(**fields)
        self.saga(self.repository, self.app, row.id).execute()
        return row.id


def note(log: Path, kind: str, **data: Any) -> None:
    line = json.dumps({"kind": kind, "pid": os.getpid(), **data}, default=str)
    with log.open("a") as out:
        out.write(line + "\n")


def read_notes(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line]


class KitchenFull(Exception):
    """The kitchen refuses the ticket."""


class LoggingRepository(SQLAlchemySagaStateRepository[CreateOrderSagaState]):
    log: Path

    def update_status(self, saga_id: Any, status: str) -> CreateOrderSagaState:
        note(self.log, "status", saga_id=saga_id, status=status)
        return super().update_status(saga_id, status)


def build(config: Config) -> Service:
    app = Celery(f"sf-{config.suffix}", broker=config.broker, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        task_default_queue=config.responses,
    )
    engine = create_engine(config.state_url)
    Base.metadata.create_all(engine)
    repository = LoggingRepository(sessionmaker(engine), CreateOrderSagaState)
    repository.log = config.log
    log = config.log

    class CreateOrderSaga(StatefulSaga):
        store_url: ClassVar[str | None] = config.store_url

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.steps = [
                SyncStep("reserve", action=self.act, compensation=self.undo),
                AsyncStep(
                    name="create_ticket",
                    base_task_name="kitchen.create_ticket",
                    queue=config.commands,
                    action=self.send,
                    compensation=self.undo,
                    on_success=self.succeeded,
                    on_failure=self.failed,
                ),
                AsyncStep(
                    name="authorize",
                    base_task_name="accounting.authorize",
                    queue=config.commands,
                    action=self.send,
                    compensation=self.undo,
                    on_success=self.succeeded,
                    on_failure=self.failed,
                ),
                SyncStep("approve", action=self.act, compensation=self.undo),
            ]

        def row(self) -> CreateOrderSagaState:
            state = self.saga_state
            assert isinstance(state, CreateOrderSagaState)
            return state

        def act(self, step: BaseStep) -> None:
            note(log, "action", saga_id=self.saga_id, step=step.name)

        def send(self, step: BaseStep) -> None:
            assert isinstance(step, AsyncStep)
            row = self.row()
            payload = {"refuse": row.refuse, "failures": row.authorize_failures}
            note(log, "action", saga_id=self.saga_id, step=step.name)
            message_id = self.send_message_to_other_service(step, payload)
            self.saga_state_repository.update(self.saga_id, last_message_id=message_id)

        def undo(self, step: BaseStep) -> None:
            note(log, "compensation", saga_id=self.saga_id, step=step.name)
            if step.name == "reserve" and self.row().fail_reserve_compensation:
                raise RuntimeError("stock service is down")

        def succeeded(self, step: BaseStep, payload: Any) -> None:
            note(
                log, "on_success", saga_id=self.saga_id, step=step.name, payload=payload
            )

        def failed(self, step: BaseStep, payload: Any) -> None:
            note(
                log, "on_failure", saga_id=self.saga_id, step=step.name, payload=payload
            )

        def on_saga_success(self) -> None:
            note(log, "saga_success", saga_id=self.saga_id)
            super().on_saga_success()

        def on_saga_failure(
            self, failed_step: BaseStep, payload: dict[str, Any]
        ) -> None:
            note(
                log,
                "saga_failure",
                saga_id=self.saga_id,
                step=failed_step.name,
                payload=payload,
            )
            super().on_saga_failure(failed_step, payload)

        def on_compensation_failure(
            self,
            initially_failed_step: BaseStep,
            initial_failure_payload: dict[str, Any],
            compensation_failed_step: BaseStep,
            compensation_exception: BaseException,
        ) -> None:
            note(
                log,
                "compensation_failure",
                saga_id=self.saga_id,
                failed_step=initially_failed_step.name,
                compensation_step=compensation_failed_step.name,
                error=repr(compensation_exception),
            )
            super().on_compensation_failure(
                initially_failed_step,
                initial_failure_payload,
                compensation_failed_step,
                compensation_exception,
            )

    @app.task(bind=True, name="kitchen.create_ticket")
    @saga_step_handler(response_queue=config.responses)
    def create_ticket(
        task: Any, saga_id: int, payload: dict[str, Any]
    ) -> dict[str, Any]:
        note(log, "handler", saga_id=saga_id, task=task.name)
        if payload["refuse"]:
            raise KitchenFull("no room in the kitchen")
        return {"ticket_id": f"T-{saga_id}"}

    @app.task(bind=True, name="accounting.authorize", default_retry_delay=0.05)
    @saga_step_handler(response_queue=config.responses)
    @auto_retry_then_reraise(max_retries=2)
    def authorize(task: Any, saga_id: int, payload: dict[str, Any]) -> None:
        attempt = task.request.retries + 1
        note(log, "handler", saga_id=saga_id, task=task.name, attempt=attempt)
        if attempt <= payload["failures"]:
            raise ConnectionError(f"card network timeout (attempt {attempt})")

    CreateOrderSaga.register_async_step_handlers(repository, app)
    return Service(config, app, repository, CreateOrderSaga)


if os.environ.get(
    "SF_SUFFIX"
):  # a worker: celery -A tests.integration.saga_framework_app
    service = build(Config.from_env())
    app = service.app
