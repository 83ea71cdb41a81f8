"""Steps of a workflow app and the calls they return.

Calling a registered step, ``credit(input, delay=5)``, runs nothing: it
returns a :class:`WorkflowCall` that the app commits as the instance's next
pending call. Inputs travel as JSON and are validated back into the step's
annotated input type when the step runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import logging
import typing
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter
from pydantic_core import PydanticSerializationError, to_jsonable_python

from sagakit.definition.fingerprint import structural
from sagakit.errors import DefinitionError

if TYPE_CHECKING:
    from sagakit.workflow.app import WorkflowApp

StepFunction = Callable[..., Any]
SetState = Callable[[dict[str, Any]], None]
_PARAMETERS = ("input", "state", "set_state", "logger")


def to_json(value: Any, *, about: str) -> Any:
    """``value`` as plain JSON (pydantic models and dataclasses included)."""
    try:
        plain = to_jsonable_python(value)
        json.dumps(plain)
    except (PydanticSerializationError, TypeError, ValueError) as exc:
        raise DefinitionError(f"{about} is not JSON: {exc}") from exc
    return plain


def start_digest(step: str, input: Any, state: dict[str, Any]) -> str:
    """A hash of the call that starts an instance (its JSON ``input`` and
    initial ``state``): equal for equal JSON, whatever the key order."""
    text = json.dumps(
        [step, input, state], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class WorkflowCall:
    """A call of ``step`` with ``input``, due after ``delay`` seconds
    (``None``: only when :meth:`WorkflowApp.call` delivers it)."""

    step: WorkflowStep
    input: Any
    delay: float | None = 0.0

    @property
    def name(self) -> str:
        return self.step.name


class WorkflowStep:
    """A step function registered on a :class:`WorkflowApp`.

    The function takes up to four positional arguments, in this order:
    ``input, state, set_state, logger``; it may be sync (run in a thread) or
    async. It returns a :class:`WorkflowCall` (the next step), or anything
    else: the instance succeeded with that value as its result (JSON: a
    pydantic model or a dataclass is dumped; ``None`` is fine). Raising
    :class:`~sagakit.errors.FatalError` fails the instance without retries.
    """

    def __init__(self, app: WorkflowApp, fn: StepFunction) -> None:
        if not callable(fn):
            raise DefinitionError(f"workflow {app.name}: a step must be a function")
        self.app = app
        self.fn = fn
        self.name: str = getattr(fn, "__name__", "")
        if not self.name.isidentifier():
            raise DefinitionError(
                f"workflow {app.name}: step {fn!r} has no usable __name__"
            )
        params = list(inspect.signature(fn).parameters.values())
        if any(p.kind is p.VAR_POSITIONAL for p in params):
            self.arity = len(_PARAMETERS)
        else:
            self.arity = len(params)
        if self.arity > len(_PARAMETERS) or any(
            p.kind in (p.KEYWORD_ONLY,) and p.default is p.empty for p in params
        ):
            raise DefinitionError(
                f"workflow {app.name}: step {self.name} takes at most "
                f"({', '.join(_PARAMETERS)})"
            )
        self.is_async = inspect.iscoroutinefunction(fn)
        self._adapter: TypeAdapter[Any] | None = None
        self._resolved = False

    def __call__(self, input: Any = None, *, delay: float = 0.0) -> WorkflowCall:
        """The call to commit as the next step (nothing runs now)."""
        if delay < 0:
            raise DefinitionError(f"step {self.name}: delay must be >= 0, got {delay}")
        return WorkflowCall(self, input, float(delay))

    def wait(self, input: Any = None) -> WorkflowCall:
        """A call that is never due by itself: it waits for ``app.call``."""
        return WorkflowCall(self, input, None)

    def _input_adapter(self) -> TypeAdapter[Any] | None:
        if not self._resolved:
            self._resolved = True
            try:
                hints = typing.get_type_hints(self.fn)
            except (NameError, TypeError):  # a local class: inputs stay plain JSON
                hints = {}
            params = list(inspect.signature(self.fn).parameters)
            hint = hints.get(params[0]) if params else None
            if hint is not None and hint is not Any:
                self._adapter = TypeAdapter(hint)
        return self._adapter

    def input_schema(self) -> Any:
        """The JSON schema of the annotated input type, without titles and
        descriptions (None: not annotated, or annotated with a type pydantic
        has no JSON schema for): part of the app's fingerprint."""
        try:
            adapter = self._input_adapter()
            return None if adapter is None else structural(adapter.json_schema())
        except Exception:  # no schema to compare: the name is the shape
            return None

    def decode(self, raw: Any) -> Any:
        """The stored JSON input, validated into the annotated input type."""
        adapter = self._input_adapter()
        return raw if adapter is None else adapter.validate_python(raw)

    async def invoke(
        self,
        input: Any,
        state: dict[str, Any],
        set_state: SetState,
        logger: logging.LoggerAdapter[logging.Logger],
    ) -> Any:
        args = (input, state, set_state, logger)[: self.arity]
        if self.is_async:
            return await self.fn(*args)
        result = await asyncio.to_thread(self.fn, *args)
        if inspect.isawaitable(result):
            return await result
        return result

    def __repr__(self) -> str:
        return f"<workflow step {self.app.name}.{self.name}>"


class StepLogger(logging.LoggerAdapter[logging.Logger]):
    """Adds the instance id and step to every record; keeps the caller's extra."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs


class CallbackHandler(logging.Handler):
    """Hands each record to a callable (the app's ``log_handler``)."""

    def __init__(self, callback: Callable[[logging.LogRecord], object]) -> None:
        super().__init__(logging.DEBUG)
        self.callback = callback

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.callback(record)
        except Exception:  # a broken hook must not fail the step
            self.handleError(record)


__all__ = [
    "CallbackHandler",
    "StepLogger",
    "WorkflowCall",
    "WorkflowStep",
    "start_digest",
    "to_json",
]
