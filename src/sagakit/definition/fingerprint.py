"""A saga definition's structural fingerprint.

Two definitions with the same fingerprint drive a stored instance the same
way, so an instance started on one can finish on the other. What is in it:

- the stages in order, and which steps run together in a parallel group
  (not their order inside it);
- each step's name, whether it is the pivot, whether it has a compensation
  and ``compensate_on_failure``;
- for a remote action or compensation: the command name, the queue, the
  JSON schema of the reply model and of the payload builder's return
  annotation when it names a pydantic model;
- the JSON schema of a local step's ``output`` model, when it declares one.

What is not: function bodies and docstrings, retry policies and timeouts
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
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from sagakit.definition.remote import Remote

if TYPE_CHECKING:
    from sagakit.definition.saga import Step

FINGERPRINT_LENGTH = 16
"""Hex digits kept of the SHA-256 (64 bits: plenty to tell shapes apart)."""


def fingerprint(stages: Sequence[Sequence[Step]]) -> str:
    """The fingerprint of a saga made of ``stages``."""
    # steps of a parallel group start together: their order there is no shape
    return digest([sorted((_step(s) for s in group), key=_name) for group in stages])


def digest(shape: Any) -> str:
    """The fingerprint of any JSON ``shape``: SHA-256 of its canonical JSON
    (sorted keys, no spaces), cut to :data:`FINGERPRINT_LENGTH` hex digits.
    Workflow apps and choreographies fingerprint their shapes with it too."""
    text = json.dumps(shape, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:FINGERPRINT_LENGTH]


def _name(described: dict[str, Any]) -> str:
    return str(described["name"])


def _step(step: Step) -> dict[str, Any]:
    described = {
        "name": step.name,
        "pivot": step.pivot,
        "action": _callee(step.action),
        "compensation": None if step.compensate is None else _callee(step.compensate),
        "compensate_on_failure": step.compensate_on_failure,
    }
    if step.output is not None:  # absent otherwise: older shapes hash the same
        described["output"] = _schema(step.output)
    return described


def _callee(fn: Callable[..., Any] | Remote) -> Any:
    if not isinstance(fn, Remote):
        return "local"
    return {
        "command": fn.command,
        "queue": fn.destination,
        "reply": _schema(fn.reply),
        "payload": _schema(_returned_model(fn.payload)),
    }


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
