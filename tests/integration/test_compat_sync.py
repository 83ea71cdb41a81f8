"""The compat layers' synchronous ``execute()`` adds nothing to user exceptions.

Asking whether an event loop runs raises ``RuntimeError: no running event
loop`` when none does; an ``asyncio.run`` started inside that ``except``
chained the RuntimeError to every exception the user's actions raised, as
``__context__``, and so into stored tracebacks and failure details.
"""

from __future__ import annotations

import traceback
from typing import Any

import pytest

from sagakit.compat import saga_py
from sagakit.compat.saga_framework import BaseSaga, SyncStep
from sagakit.compat.sync import call_sync, loop_running


def chain(exc: BaseException | None) -> list[BaseException]:
    """``exc`` and every exception it carries as cause or context."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def no_runtime_error(exc: BaseException) -> None:
    text = "".join(traceback.format_exception(exc))
    assert "no running event loop" not in text
    assert "During handling of the above exception" not in text
    assert not any(isinstance(e, RuntimeError) for e in chain(exc))


def declined() -> None:
    raise ValueError("card declined")


def failing_saga_py() -> saga_py.Saga:
    return saga_py.SagaBuilder.create().action(declined, lambda: None).build()


def test_call_sync_adds_no_context() -> None:
    async def fail() -> None:
        raise KeyError("missing")

    assert not loop_running()
    with pytest.raises(KeyError) as caught:
        call_sync(fail())
    assert caught.value.__context__ is None
    no_runtime_error(caught.value)


def test_saga_py_execute_without_a_loop() -> None:
    with pytest.raises(saga_py.SagaError) as caught:
        failing_saga_py().execute()
    assert isinstance(caught.value.action, ValueError)
    assert caught.value.action.__context__ is None
    no_runtime_error(caught.value)
    no_runtime_error(caught.value.action)


async def test_saga_py_execute_inside_a_running_loop() -> None:
    assert loop_running()
    with pytest.raises(saga_py.SagaError) as caught:
        failing_saga_py().execute()  # runs in a helper thread
    assert caught.value.action.__context__ is None
    no_runtime_error(caught.value.action)


def test_saga_framework_failure_details_carry_no_runtime_error() -> None:
    payloads: list[dict[str, Any]] = []

    def charge(step: Any) -> None:
        raise ValueError("card declined")

    class OrderSaga(BaseSaga):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.steps = [SyncStep(name="charge", action=charge)]

        def on_saga_failure(
            self, failed_step: Any, initial_failure_payload: dict[str, Any]
        ) -> None:
            payloads.append(initial_failure_payload)

    OrderSaga(1).execute()
    [payload] = payloads
    text = "".join(payload["traceback"])
    assert "ValueError: card declined" in text
    assert "RuntimeError" not in text
    assert "During handling of the above exception" not in text
