"""Names and payloads shared by orchestrators and step handlers (as saga-framework)."""

from __future__ import annotations

import traceback
from dataclasses import asdict, dataclass
from typing import Any

from sagakit.engine.state import ErrorInfo


def NO_ACTION(*args: Any) -> None:
    """The default action and compensation: does nothing."""


def success_task_name(task_name: str) -> str:
    return f"{task_name}.response.success"


def failure_task_name(task_name: str) -> str:
    return f"{task_name}.response.failure"


@dataclass
class SagaErrorPayload:
    """How a failure travels: in a ``.response.failure`` task and to callbacks."""

    type: str
    message: str
    module: str
    traceback: list[str]


def format_exception_as_python_does(exc: BaseException) -> list[str]:
    return traceback.format_exception(type(exc), exc, exc.__traceback__)


def serialize_saga_error(exc: BaseException) -> SagaErrorPayload:
    kind = type(exc)
    return SagaErrorPayload(
        type=getattr(kind, "__qualname__", kind.__name__),
        message=str(exc),
        module=kind.__module__,
        traceback=format_exception_as_python_does(exc),
    )


def failure_payload(
    exc: BaseException | None, info: ErrorInfo | None
) -> dict[str, Any]:
    """The failure payload of an exception, or of its record after a restart."""
    if exc is not None:
        return asdict(serialize_saga_error(exc))
    if info is None:
        return {}
    module, _, name = info.type.rpartition(".")
    return {
        "type": name,
        "message": info.message,
        "module": module or "builtins",
        "traceback": (info.traceback or "").splitlines(keepends=True),
    }


__all__ = [
    "NO_ACTION",
    "SagaErrorPayload",
    "failure_payload",
    "failure_task_name",
    "format_exception_as_python_does",
    "serialize_saga_error",
    "success_task_name",
]
