"""What a message handler takes (the pydantic model of its first parameter)
and gives back (a payload)."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from sagakit.errors import SagaError


def payload_model(
    fn: Callable[..., Any], handler: str, payload: str
) -> type[BaseModel] | None:
    """The pydantic model ``fn``'s first parameter is annotated with, or None
    (no model, or annotations that do not resolve: the handler takes a dict).

    A handler with no parameter raises ``SagaError``: "``<handler> <name>``
    must take the ``<payload>``"."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolved annotations: the handler takes a dict
        return None
    params = list(inspect.signature(fn).parameters)
    if not params:
        raise SagaError(f"{handler} {fn.__name__} must take the {payload}")
    hint = hints.get(params[0])
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        return hint
    return None


def payload_dict(value: Any, wrong: Callable[[str], str]) -> dict[str, Any]:
    """``value`` (a pydantic model, a dict or None) as an envelope payload;
    anything else raises ``SagaError(wrong(<the name of its type>))``."""
    if value is None:
        return {}
    data = to_jsonable_python(value)
    if not isinstance(data, dict):
        raise SagaError(wrong(type(value).__name__))
    return data
