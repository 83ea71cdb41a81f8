"""A saga definition's structural fingerprint.

Two definitions with the same fingerprint drive a stored instance the same
way, so an instance started on one can finish on the other. What is in it:

- the stages in order, and which steps run together in a parallel group
  (not their order inside it);
- each step's name, whether it is the pivot, whether it has a compensation
  and ``compensate_on_failure``;
- for a remote action or compensation: the command name, the queue, the
  JSON schema of the reply model and of the payload builder's return
  annotation when it names a pydantic model; ``awaited=False`` too;
- for a sub-saga: the child saga's name and version (the child's own shape
  is in the child instances' fingerprint);
- the JSON schema of a local step's ``output`` model, when it declares one.

For a graph (a step declares ``after``), each step's dependencies too; a
step of a ``fail_fast`` parallel group says so; a saga whose compensation
failures ``continue`` says so. These keys appear only when they differ from a
plain list of stages, so adding them left every older fingerprint unchanged.

What is not: function bodies and docstrings, retry policies and timeouts
and a fail-fast group's ``grace``, a remote action's ``on_timeout`` command
(tuning, safe to change under a running instance), ``blocking``, schema
titles and descriptions, and the context model (a new optional field must
not strand anything; a context that no longer validates fails on load).

The hash is SHA-256 of canonical JSON, so it is the same in every process
and Python run. The schemas are pydantic's: an upgrade of pydantic that
changes the schema it generates for a reply or payload model changes the
fingerprint too (``sagakit deploy-check`` shows it before a deploy).
"""

from __future__ import annotations

import hashlib
import json
import typing
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from sagakit.definition.remote import Remote
from sagakit.definition.subsaga import SubSaga

if TYPE_CHECKING:
    from sagakit.definition.step import Step

FINGERPRINT_LENGTH = 16
"""Hex digits kept of the SHA-256 (64 bits: plenty to tell shapes apart)."""


def fingerprint(
    stages: Sequence[Sequence[Step]],
    *,
    deps: Mapping[str, Sequence[str]] | None = None,
    fail_fast: Collection[str] = (),
    on_compensation_failure: str = "stop",
) -> str:
    """The fingerprint of a saga made of ``stages``; ``deps`` (each step's
    dependencies) for a graph, ``fail_fast`` the steps of fail-fast groups."""
    # steps of a parallel group start together: their order there is no shape
    shape: Any = [
        sorted((_step(s, deps, fail_fast) for s in group), key=_name)
        for group in stages
    ]
    if on_compensation_failure != "stop":
        shape = {"stages": shape, "on_compensation_failure": on_compensation_failure}
    return digest(shape)


def digest(shape: Any) -> str:
    """The fingerprint of any JSON ``shape``: SHA-256 of its canonical JSON
    (sorted keys, no spaces), cut to :data:`FINGERPRINT_LENGTH` hex digits.
    Workflow apps and choreographies fingerprint their shapes with it too."""
    text = json.dumps(shape, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:FINGERPRINT_LENGTH]


def _name(described: dict[str, Any]) -> str:
    return str(described["name"])


def _step(
    step: Step, deps: Mapping[str, Sequence[str]] | None, fail_fast: Collection[str]
) -> dict[str, Any]:
    out = {
        "name": step.name,
        "pivot": step.pivot,
        "action": _callee(step.action),
        "compensation": None if step.compensate is None else _callee(step.compensate),
        "compensate_on_failure": step.compensate_on_failure,
    }
    if step.output is not None:  # absent otherwise: older shapes hash the same
        out["output"] = _schema(step.output)
    if deps is not None:
        out["after"] = sorted(deps[step.name])
    if step.name in fail_fast:
        out["on_failure"] = "fail_fast"
    return out


def _callee(fn: Callable[..., Any] | Remote | SubSaga[Any]) -> Any:
    if isinstance(fn, SubSaga):
        return {"saga": fn.saga.name, "version": fn.saga.version}
    if not isinstance(fn, Remote):
        return "local"
    out = {
        "command": fn.command,
        "queue": fn.destination,
        "reply": _schema(fn.reply),
        "payload": _schema(_returned_model(fn.payload)),
    }
    if not fn.awaited:  # a stored compensation in flight waits, or does not
        out["awaited"] = False
    return out


def _returned_model(fn: Callable[..., Any] | None) -> type[BaseModel] | None:
    if fn is None:
        return None
    try:
        returned = typing.get_type_hints(fn).get("return")
    except Exception:  # an unresolvable annotation says nothing
        return None
    if isinstance(returned, type) and issubclass(returned, BaseModel):
        return returned
    return None


def _schema(model: type[BaseModel] | None) -> Any:
    if model is None:
        return None
    return structural(model.model_json_schema())


def structural(node: Any) -> Any:
    """A JSON schema ``node`` without the words (titles, descriptions) a
    docstring changes: what is left is its shape."""
    if isinstance(node, dict):
        return {
            key: structural(value)
            for key, value in node.items()
            if not (key in ("title", "description") and isinstance(value, str))
        }
    if isinstance(node, list):
        return [structural(value) for value in node]
    return node
