"""saga-framework's public behaviour, on sagakit and on saga-framework 0.1 side by side.

saga-framework's own tests (not on PyPI) drive its sagas with a fake Celery
app: a ``MagicMock`` ``send_task`` and a ``task()`` decorator that keeps
the response handlers, called with a stand-in task that has a ``name`` and
an ``app`` and nothing else. These tests do the same, in their own words:
the eight scenarios of saga-framework's suite (a BaseSaga that succeeds or
fails, an AsyncSaga whose async step succeeds or fails, the step handler's
success and failure responses, a StatefulSaga's status trail either way),
then what an application relies on: the exact ``send_task`` calls, a
compensation that sends another task, the same saga id in many tests, a
Celery app that answers at once, callbacks that raise, and no stray
exception context.

Each test runs twice: on ``sagakit.compat.saga_framework`` and on
saga-framework 0.1 itself (``pip download saga_framework==0.1`` into a
throw-away folder: without a network that half skips, or fails when
``CI=true``). They must agree, except where sagakit fixes saga-framework on
purpose: a duplicate reply runs nothing again (``if sf.original`` below).
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest.mock import MagicMock, call

import pytest

from tests.integration.pypi_originals import fetch

pytest.importorskip("celery")

MODULES = (
    "base_saga",
    "async_saga",
    "stateful_saga",
    "saga_handlers",
    "celery_utils",
    "utils",
)


@pytest.fixture(scope="module", params=["sagakit", "saga-framework 0.1"])
def sf(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The library under test: its modules' names in one namespace, and
    ``original`` (True for saga-framework itself)."""
    original = request.param != "sagakit"
    package = "sagakit.compat.saga_framework"
    if original:
        root = fetch("saga_framework==0.1", tmp_path_factory.mktemp("saga-framework"))
        sys.path.insert(0, str(root))
        package = "saga_framework"
    names: dict[str, Any] = {"original": original}
    for module in MODULES:
        loaded = importlib.import_module(f"{package}.{module}")
        names.update((n, getattr(loaded, n)) for n in loaded.__all__)
    return SimpleNamespace(**names)


class FakeTask:
    """What a bound Celery task is to the code under test: a name and an app."""

    def __init__(self, app: FakeCelery, name: str, handler: Any) -> None:
        self.app = app
        self.name = name
        self.handler = handler

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.handler(self, *args, **kwargs)


class FakeCelery:
    """``send_task`` is a mock; ``task()`` keeps handlers; ``launch`` runs one.

    With ``answer=True``, ``send_task`` runs a registered task at once (an
    app whose step handlers reply before the sender's call returns)."""

    def __init__(self, *, answer: bool = False) -> None:
        self.handlers: dict[str, FakeTask] = {}
        self.answer = answer
        self.send_task = MagicMock(side_effect=self._sent)

    def _sent(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if self.answer and name in self.handlers:
            self.handlers[name](*kwargs["args"])
        return MagicMock(id=f"task-{self.send_task.call_count}")

    def task(self, name: str, bind: bool = True, **options: Any) -> Any:
        def register(handler: Any) -> FakeTask:
            self.handlers[name] = FakeTask(self, name, handler)
            return self.handlers[name]

        return register

    def launch(self, name: str, **kwargs: Any) -> Any:
        return self.handlers[name](**kwargs)


@pytest.fixture(autouse=True)
def _nothing_configured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No database configured and a scratch working directory, as a user of
    saga-framework has: the compat must need neither."""
    monkeypatch.delenv("SAGAKIT_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)


def make_mocks() -> dict[str, MagicMock]:
    names = ("undo_1", "do_2", "ok_2", "failed_2", "do_3", "success", "failure")
    return {name: MagicMock(name=name) for name in names}


def three_steps(sf: Any, mocks: dict[str, MagicMock]) -> list[Any]:
    return [
        sf.SyncStep(name="step_1", compensation=mocks["undo_1"]),
        sf.AsyncStep(
            name="step_2",
            action=mocks["do_2"],
            queue="some_queue",
            base_task_name="step_2_task",
            on_success=mocks["ok_2"],
            on_failure=mocks["failed_2"],
        ),
        sf.SyncStep(name="step_3", action=mocks["do_3"]),
    ]


def async_saga(sf: Any, mocks: dict[str, MagicMock]) -> Any:
    class Saga(sf.AsyncSaga):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.steps = three_steps(sf, mocks)

        on_saga_success = mocks["success"]
        on_saga_failure = mocks["failure"]

    return Saga


@dataclass
class Row:
    id: int
    status: str | None = None
    last_message_id: Any = None
    ticket: Any = None


def repository(sf: Any, *ids: int) -> Any:
    """A repository keeping rows in a dict and every status written."""

    class Repository(sf.AbstractSagaStateRepository):  # type: ignore[misc]
        def __init__(self) -> None:
            self.rows = {i: Row(i) for i in ids}
            self.trail: list[str] = []
            self.failures: list[tuple[Any, str, Any]] = []

        def get_saga_state_by_id(self, saga_id: Any) -> Row:
            return self.rows[saga_id]

        def update_status(self, saga_id: Any, status: str) -> Row:
            self.trail.append(status)
            self.rows[saga_id].status = status
            return self.rows[saga_id]

        def update(self, saga_id: Any, **fields_to_update: Any) -> Row:
            for name, value in fields_to_update.items():
                setattr(self.rows[saga_id], name, value)
            return self.rows[saga_id]

        def on_step_failure(self, saga_id: Any, failed_step: Any, payload: Any) -> Row:
            self.failures.append((saga_id, failed_step.name, payload))
            return self.rows[saga_id]

    return Repository()


def stateful_saga(sf: Any, mocks: dict[str, MagicMock]) -> Any:
    class Saga(sf.StatefulSaga):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.steps = three_steps(sf, mocks)

    return Saga


# -- saga-framework's eight scenarios ----------------------------------------


def test_base_saga_runs_every_step_then_reports_success(sf: Any) -> None:
    undo_1, do_2, success, failure = (MagicMock() for _ in range(4))

    class Saga(sf.BaseSaga):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.steps = [
                sf.SyncStep(name="step_1", compensation=undo_1),
                sf.SyncStep(name="step_2", action=do_2),
            ]

        on_saga_success = success
        on_saga_failure = failure

    Saga(123).execute()
    do_2.assert_called_once()
    success.assert_called_once_with()
    undo_1.assert_not_called()
    failure.assert_not_called()


def test_base_saga_rolls_back_the_steps_before_the_one_that_raised(sf: Any) -> None:
    undo_1, do_3, undo_3, success, failure = (MagicMock() for _ in range(5))
    broken = MagicMock(side_effect=KeyError("some error in an action"))

    class Saga(sf.BaseSaga):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.steps = [
                sf.SyncStep(name="step_1", compensation=undo_1),
                sf.SyncStep(name="step_that_fails", action=broken),
                sf.SyncStep(name="step_3", action=do_3, compensation=undo_3),
            ]

        on_saga_success = success
        on_saga_failure = failure

    saga = Saga(123)
    saga.execute()
    undo_1.assert_called_once_with(saga.steps[0])
    failed_step, payload = failure.call_args.args
    assert failed_step is saga.steps[1]
    assert (payload["type"], payload["module"]) == ("KeyError", "builtins")
    assert payload["message"] == "'some error in an action'"
    assert any("KeyError" in line for line in payload["traceback"])
    do_3.assert_not_called()
    undo_3.assert_not_called()
    success.assert_not_called()


def test_async_saga_waits_for_the_step_handler_then_finishes(sf: Any) -> None:
    mocks = make_mocks()
    app = FakeCelery()
    Saga = async_saga(sf, mocks)
    Saga.register_async_step_handlers(app)
    assert set(app.handlers) == {
        "step_2_task.response.success",
        "step_2_task.response.failure",
    }

    Saga(app, 123).execute()
    mocks["do_2"].assert_called_once()
    mocks["do_3"].assert_not_called()  # not before step 2's response

    app.launch("step_2_task.response.success", saga_id=123, payload={"t": "111"})
    step_2 = mocks["ok_2"].call_args.args[0]
    mocks["ok_2"].assert_called_once_with(step_2, {"t": "111"})
    assert step_2.name == "step_2"
    mocks["do_3"].assert_called_once()
    mocks["success"].assert_called_once_with()
    for name in ("undo_1", "failed_2", "failure"):
        mocks[name].assert_not_called()


def test_async_saga_rolls_back_when_the_step_handler_fails(sf: Any) -> None:
    mocks = make_mocks()
    app = FakeCelery()
    Saga = async_saga(sf, mocks)
    Saga.register_async_step_handlers(app)

    Saga(app, 123).execute()
    payload = {"type": "KitchenFull", "message": "no room"}
    app.launch("step_2_task.response.failure", saga_id=123, payload=payload)
    step_2 = mocks["failed_2"].call_args.args[0]
    mocks["failed_2"].assert_called_once_with(step_2, payload)
    mocks["undo_1"].assert_called_once()
    mocks["failure"].assert_called_once_with(step_2, payload)
    for name in ("ok_2", "do_3", "success"):
        mocks[name].assert_not_called()


def test_step_handler_answers_success_with_what_the_task_returned(sf: Any) -> None:
    app = FakeCelery()

    @app.task(bind=True, name="step_1")
    @sf.saga_step_handler(response_queue="some_fake_queue")
    def handler(task: Any, saga_id: int, payload: dict[str, Any]) -> Any:
        assert payload == {"from": "orchestrator"}
        return {"some": "response"}

    app.launch("step_1", saga_id=123, payload={"from": "orchestrator"})
    assert app.send_task.call_args_list == [
        call(
            "step_1.response.success",
            args=[123, {"some": "response"}],
            queue="some_fake_queue",
        )
    ]


def test_step_handler_answers_failure_with_the_serialized_exception(sf: Any) -> None:
    app = FakeCelery()
    raised = Exception("some exception in a step handler")

    @app.task(bind=True, name="step_1")
    @sf.saga_step_handler(response_queue="some_fake_queue")
    def handler(task: Any, saga_id: int, payload: dict[str, Any]) -> Any:
        raise raised

    app.launch("step_1", saga_id=123, payload={})
    app.send_task.assert_called_once_with(
        "step_1.response.failure",
        args=[123, asdict(sf.serialize_saga_error(raised))],
        queue="some_fake_queue",
    )


def test_stateful_saga_trail_when_it_succeeds(sf: Any) -> None:
    rows, app = repository(sf, 123), FakeCelery()
    Saga = stateful_saga(sf, make_mocks())
    Saga.register_async_step_handlers(rows, app)
    Saga(rows, app, 123).execute()
    assert rows.rows[123].status == "step_2.running"
    app.launch("step_2_task.response.success", saga_id=123, payload={"t": "1"})
    assert rows.trail == [
        "step_1.running",
        "step_2.running",
        "step_3.running",
        "succeeded",
    ]


def test_stateful_saga_trail_when_it_fails(sf: Any) -> None:
    rows, app = repository(sf, 123), FakeCelery()
    Saga = stateful_saga(sf, make_mocks())
    Saga.register_async_step_handlers(rows, app)
    Saga(rows, app, 123).execute()
    payload = {"type": "E", "message": "refused"}
    app.launch("step_2_task.response.failure", saga_id=123, payload=payload)
    assert rows.trail == [
        "step_1.running",
        "step_2.running",
        "step_1.compensating",
        "step_1.compensated",
        "failed",
    ]
    assert rows.failures == [(123, "step_2", payload)]


# -- what applications rely on -------------------------------------------------


def test_one_saga_id_in_many_sagas_needs_no_database(sf: Any, tmp_path: Path) -> None:
    for _ in range(3):  # each test of a suite may use saga id 123 again
        mocks = make_mocks()
        app = FakeCelery()
        Saga = async_saga(sf, mocks)
        Saga.register_async_step_handlers(app)
        Saga(app, 123).execute()
        app.launch("step_2_task.response.success", saga_id=123, payload={})
        mocks["success"].assert_called_once_with()
    assert list(tmp_path.iterdir()) == []  # no ./sagakit.db


def test_send_task_sees_what_saga_framework_sends_and_nothing_more(sf: Any) -> None:
    sent: list[Any] = []

    class Saga(sf.AsyncSaga):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.steps = [
                sf.AsyncStep(
                    name="ticket",
                    base_task_name="kitchen.create_ticket",
                    queue="kitchen_commands",
                    action=self.create,
                )
            ]

        def create(self, step: Any) -> None:
            sent.append(self.send_message_to_other_service(step, {"order": 5}))

    app = FakeCelery()
    Saga(app, 5).execute()
    assert app.send_task.call_args_list == [
        call("kitchen.create_ticket", args=[5, {"order": 5}], queue="kitchen_commands")
    ]
    assert sent == ["task-1"]  # the id of what send_task returned


def create_order(sf: Any, orders: dict[int, str]) -> Any:
    """saga-framework's companion demo, shortened: the ticket's compensation
    sends another service's task."""

    class CreateOrder(sf.StatefulSaga):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.steps = [
                sf.SyncStep(name="reject_order", compensation=self.reject_order),
                sf.AsyncStep(
                    name="create_restaurant_ticket",
                    action=self.create_ticket,
                    compensation=self.reject_ticket,
                    base_task_name="restaurant_service.create_ticket",
                    queue="restaurant_service.commands",
                    on_success=self.ticket_created,
                ),
                sf.AsyncStep(
                    name="authorize_card",
                    action=self.authorize_card,
                    base_task_name="accounting_service.authorize_card",
                    queue="accounting_service.commands",
                ),
                sf.SyncStep(name="approve_order", action=self.approve_order),
            ]

        def reject_order(self, step: Any) -> None:
            orders[self.saga_id] = "rejected"

        def approve_order(self, step: Any) -> None:
            orders[self.saga_id] = "approved"

        def create_ticket(self, step: Any) -> None:
            self.send_message_to_other_service(step, {"order_id": self.saga_id})

        def ticket_created(self, step: Any, payload: dict[str, Any]) -> None:
            self.saga_state_repository.update(self.saga_id, ticket=payload["ticket_id"])

        def reject_ticket(self, step: Any) -> None:
            message_id = self.send_message_to_other_service(
                step,
                {"ticket_id": self.saga_state.ticket},
                # in a compensation, the task to send is named explicitly
                task_name="restaurant_service.reject_ticket",
            )
            self.saga_state_repository.update(self.saga_id, last_message_id=message_id)

        def authorize_card(self, step: Any) -> None:
            self.send_message_to_other_service(step, {"amount": 10})

    return CreateOrder


def test_a_compensation_that_sends_another_task_rejects_the_order(sf: Any) -> None:
    orders = {9: "pending"}
    rows, app = repository(sf, 9), FakeCelery()
    CreateOrder = create_order(sf, orders)
    CreateOrder.register_async_step_handlers(rows, app)
    CreateOrder(rows, app, 9).execute()
    app.launch(
        "restaurant_service.create_ticket.response.success",
        saga_id=9,
        payload={"ticket_id": 42},
    )
    app.launch(
        "accounting_service.authorize_card.response.failure",
        saga_id=9,
        payload={"type": "CardDeclined", "message": "declined"},
    )
    assert orders[9] == "rejected"
    assert app.send_task.call_args_list[-1] == call(
        "restaurant_service.reject_ticket",
        args=[9, {"ticket_id": 42}],
        queue="restaurant_service.commands",
    )
    assert rows.rows[9].last_message_id == "task-3"
    assert rows.trail[-5:] == [
        "create_restaurant_ticket.compensating",
        "create_restaurant_ticket.compensated",
        "reject_order.compensating",
        "reject_order.compensated",
        "failed",
    ]


def test_duplicate_replies(sf: Any) -> None:
    # the one difference on purpose: saga-framework runs step 3 and
    # on_saga_success (or the rollback) again for each copy of a reply
    runs = 3 if sf.original else 1
    mocks = make_mocks()
    app = FakeCelery()
    Saga = async_saga(sf, mocks)
    Saga.register_async_step_handlers(app)
    Saga(app, 1).execute()
    for _ in range(3):
        app.launch("step_2_task.response.success", saga_id=1, payload={})
    for name in ("ok_2", "do_3", "success"):
        assert mocks[name].call_count == runs

    Saga(app, 2).execute()
    for _ in range(3):
        app.launch("step_2_task.response.failure", saga_id=2, payload={})
    for name in ("failed_2", "undo_1", "failure"):
        assert mocks[name].call_count == runs


def test_a_reply_for_a_saga_this_process_never_ran_goes_on_from_its_step(
    sf: Any,
) -> None:
    # e.g. a response worker in another process than the one that executed
    mocks = make_mocks()
    app = FakeCelery()
    Saga = async_saga(sf, mocks)
    Saga.register_async_step_handlers(app)
    app.launch("step_2_task.response.success", saga_id=404, payload={"t": 1})
    mocks["do_2"].assert_not_called()  # sent by the other process
    mocks["ok_2"].assert_called_once()
    mocks["do_3"].assert_called_once()
    mocks["success"].assert_called_once_with()


def test_an_app_that_answers_at_once_finishes_the_saga_inside_execute(
    sf: Any,
) -> None:
    app = FakeCelery(answer=True)
    log: list[str] = []

    @app.task(bind=True, name="kitchen.cook")
    @sf.saga_step_handler(response_queue="responses")
    def cook(task: Any, saga_id: int, payload: dict[str, Any]) -> dict[str, Any]:
        log.append("cooked")
        return {"dish": "soup"}

    class Saga(sf.AsyncSaga):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.steps = [
                sf.AsyncStep(
                    name="cook",
                    base_task_name="kitchen.cook",
                    queue="kitchen",
                    action=lambda step: self.send_message_to_other_service(step, {}),
                    on_success=lambda step, payload: log.append(payload["dish"]),
                ),
                sf.SyncStep(name="serve", action=lambda step: log.append("served")),
            ]

        def on_saga_success(self) -> None:
            log.append("done")

    Saga.register_async_step_handlers(app)
    Saga(app, 3).execute()
    assert log == ["cooked", "soup", "served", "done"]


def test_when_a_compensation_fails_the_rollback_stops(sf: Any) -> None:
    seen: list[Any] = []
    boom = RuntimeError("undo broke")
    undo_1 = MagicMock()

    def undo_2(step: Any) -> None:
        raise boom

    class Saga(sf.BaseSaga):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.steps = [
                sf.SyncStep(name="a", compensation=undo_1),
                sf.SyncStep(name="b", compensation=undo_2),
                sf.SyncStep(name="c", action=MagicMock(side_effect=ValueError("no"))),
            ]

        def on_saga_failure(self, *args: Any) -> None:
            seen.append("failure")

        def on_compensation_failure(self, **kwargs: Any) -> None:
            seen.append(kwargs)

    saga = Saga(1)
    saga.execute()
    (args,) = seen
    assert args["initially_failed_step"] is saga.steps[2]
    assert args["compensation_failed_step"] is saga.steps[2]  # saga-framework's
    assert args["compensation_exception"] is boom
    assert args["initial_failure_payload"]["message"] == "no"
    undo_1.assert_not_called()


def test_on_saga_failure_raising_is_reported_as_a_compensation_failure(
    sf: Any,
) -> None:
    seen: list[Any] = []

    class Saga(sf.BaseSaga):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.steps = [sf.SyncStep(name="a", action=MagicMock(side_effect=OSError))]

        def on_saga_failure(self, *args: Any) -> None:
            raise LookupError("callback broke")

        def on_compensation_failure(self, **kwargs: Any) -> None:
            seen.append(kwargs["compensation_exception"])

    Saga(1).execute()  # nothing raised
    assert [type(e) for e in seen] == [LookupError]


def test_compensate_called_by_the_application_rolls_back(sf: Any) -> None:
    mocks = make_mocks()
    rows, app = repository(sf, 5), FakeCelery()
    Saga = stateful_saga(sf, mocks)
    saga = Saga(rows, app, 5)
    saga.execute()
    saga.compensate(saga.steps[1], {"reason": "timed out"})  # e.g. from a timer
    mocks["undo_1"].assert_called_once()
    assert rows.failures == [(5, "step_2", {"reason": "timed out"})]
    assert rows.trail[-1] == "failed"
    mocks["failed_2"].assert_not_called()  # no failure reply came


def test_execute_from_a_later_step(sf: Any) -> None:
    mocks = make_mocks()
    Saga = async_saga(sf, mocks)
    saga = Saga(FakeCelery(), 8)
    saga.execute(saga.steps[2])
    mocks["do_2"].assert_not_called()
    mocks["do_3"].assert_called_once()
    mocks["success"].assert_called_once_with()


def test_on_success_raising_leaves_the_reply_unapplied(sf: Any) -> None:
    mocks = make_mocks()
    mocks["ok_2"].side_effect = [ConnectionError("db down"), None]
    app = FakeCelery()
    Saga = async_saga(sf, mocks)
    Saga.register_async_step_handlers(app)
    Saga(app, 6).execute()
    with pytest.raises(ConnectionError, match="db down") as raised:
        app.launch("step_2_task.response.success", saga_id=6, payload={})
    assert raised.value.__context__ is None
    mocks["do_3"].assert_not_called()
    app.launch("step_2_task.response.success", saga_id=6, payload={})  # redelivered
    mocks["do_3"].assert_called_once()
    mocks["success"].assert_called_once_with()


@pytest.mark.parametrize("in_loop", [False, True])
def test_exceptions_reach_the_caller_without_event_loop_context(
    sf: Any, in_loop: bool
) -> None:
    class Saga(sf.BaseSaga):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.steps = [sf.SyncStep(name="a")]

        def on_saga_success(self) -> None:
            raise KeyError("callback broke")

    async def inside() -> None:
        Saga(1).execute()  # sagakit runs it in a helper thread

    with pytest.raises(KeyError, match="callback broke") as raised:
        asyncio.run(inside()) if in_loop else Saga(1).execute()
    assert raised.value.__context__ is None
    assert raised.value.__cause__ is None


def test_stateful_on_step_success_and_failure_write_their_status(sf: Any) -> None:
    # saga-framework's response handlers never call these; your code may
    rows, app = repository(sf, 4, 14), FakeCelery()
    Saga = stateful_saga(sf, make_mocks())
    saga = Saga(rows, app, 4)
    saga.execute()
    saga.on_step_success(saga.steps[1], {})
    assert rows.trail[-3:] == ["step_2.succeeded", "step_3.running", "succeeded"]
    other = Saga(rows, app, 14)
    other.execute()
    other.on_step_failure(other.steps[1], {"message": "no"})
    assert rows.trail[-4:] == [
        "step_2.failed",
        "step_1.compensating",
        "step_1.compensated",
        "failed",
    ]


class StubTask:
    """A bound-task double with only what ``auto_retry_then_reraise`` uses."""

    def __init__(self, retry: BaseException) -> None:
        self.raise_on_retry = retry
        self.retries: list[dict[str, Any]] = []

    def retry(self, **kwargs: Any) -> BaseException:
        self.retries.append(kwargs)
        raise self.raise_on_retry


def test_auto_retry_then_reraise_asks_celery_then_raises_the_tasks_error(
    sf: Any,
) -> None:
    from celery.exceptions import MaxRetriesExceededError, Retry  # noqa: PLC0415

    failure = ValueError("flaky")

    @sf.auto_retry_then_reraise(max_retries=2, countdown=1)
    def task(self: Any, saga_id: int, payload: dict[str, Any]) -> None:
        raise failure

    retrying = StubTask(Retry())
    with pytest.raises(Retry):
        task(retrying, 1, {})
    assert retrying.retries == [{"exc": failure, "max_retries": 2, "countdown": 1}]
    with pytest.raises(ValueError, match="flaky"):
        task(StubTask(MaxRetriesExceededError()), 1, {})


# -- sagakit only: where the runs are kept -----------------------------------


def test_execute_again_runs_the_saga_again_and_replies_go_to_the_newest_run(
    tmp_path: Path,
) -> None:
    from sagakit.adapters.store import open_store  # noqa: PLC0415
    from sagakit.compat.saga_framework import AsyncSaga  # noqa: PLC0415

    mocks = make_mocks()
    app = FakeCelery()
    url = f"sqlite:///{tmp_path / 'sagas.db'}"

    class Saga(AsyncSaga):
        store_url = url

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.steps = three_steps(
                sys.modules["sagakit.compat.saga_framework"], mocks
            )

    Saga.register_async_step_handlers(app)
    Saga(app, 7).execute()
    Saga(app, 7).execute()  # as saga-framework: the steps run again
    assert mocks["do_2"].call_count == 2
    app.launch("step_2_task.response.success", saga_id=7, payload={})
    app.launch("step_2_task.response.success", saga_id=7, payload={})
    mocks["do_3"].assert_called_once()  # the newest run took one; the copy dropped

    store = open_store(url)
    try:
        first = asyncio.run(store.get("Saga:7"))
        second = asyncio.run(store.get("Saga:7~2"))
    finally:
        asyncio.run(store.close())
    assert (first.status.value, second.status.value) == ("running", "succeeded")


def test_the_in_process_store_keeps_only_the_newest_finished_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sagakit.compat.saga_framework import BaseSaga, SyncStep, runtime  # noqa: PLC0415

    monkeypatch.setattr(runtime, "KEPT_IN_MEMORY", 2)

    class Kept(BaseSaga):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.steps = [SyncStep(name="a")]

    for saga_id in range(4):
        Kept(saga_id).execute()
    store = runtime._process_store.store
    kept = asyncio.run(store.ids_with_prefix("Kept:", limit=10))
    assert kept == ["Kept:2", "Kept:3"]
    assert asyncio.run(store.history("Kept:0")) == []  # its history went too
