"""pg-saga's inputs and states as JSON, their Python types kept where it can.

pg-saga pickles a saga's input and state. Here they are JSON: plain values
(``None``, booleans, numbers, strings, lists, dicts with string keys) as
they are; a tuple, set or frozenset as a tagged list; any other object (a
dataclass, a pydantic model, an enum, a ``datetime``, a ``Decimal``...) as
its JSON form tagged with its class, ``{"__pg_saga__": "typed", "type":
"module:QualName", "value": ...}``, which :func:`decode` validates back into
that class (pydantic does the work, nested typed fields included).

Only classes that can be imported by name come back as themselves (one
defined inside a function comes back as its plain JSON form), and only
dataclasses, pydantic models, enums and a few standard value types are
rebuilt: no other code runs on load.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import importlib
import uuid
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic_core import to_jsonable_python

from sagakit.errors import DefinitionError

TAG = "__pg_saga__"
_CONTAINERS: dict[str, type[Any]] = {
    "tuple": tuple,
    "set": set,
    "frozenset": frozenset,
}
_VALUES = (
    datetime.datetime,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    decimal.Decimal,
    uuid.UUID,
)


def encode(value: Any) -> Any:
    """``value`` as JSON (see the module)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: encode(v) for k, v in value.items()}
    for name, kind in _CONTAINERS.items():
        if type(value) is kind:
            return {TAG: name, "value": [encode(v) for v in value]}
    try:
        plain = to_jsonable_python(value)
    except Exception as exc:
        raise DefinitionError(
            f"pg-saga compat: a {type(value).__name__} cannot be stored as JSON: {exc}"
        ) from exc
    path = _path(type(value))
    if path is None:
        return plain
    return {TAG: "typed", "type": path, "value": plain}


def decode(raw: Any) -> Any:
    """What :func:`encode` stored, as Python values again."""
    if isinstance(raw, list):
        return [decode(v) for v in raw]
    if not isinstance(raw, dict):
        return raw
    kind = raw.get(TAG)
    if kind in _CONTAINERS and set(raw) == {TAG, "value"}:
        return _CONTAINERS[kind](decode(v) for v in raw["value"])
    if kind == "typed" and set(raw) == {TAG, "type", "value"}:
        cls = _resolve(raw["type"])
        if cls is None:
            return raw["value"]
        return TypeAdapter(cls).validate_python(raw["value"])
    return {k: decode(v) for k, v in raw.items()}


def _rebuilt(cls: type[Any]) -> bool:
    return (
        dataclasses.is_dataclass(cls)
        or issubclass(cls, BaseModel | enum.Enum)
        or cls in _VALUES
    )


def _path(cls: type[Any]) -> str | None:
    if "<locals>" in cls.__qualname__ or not _rebuilt(cls):
        return None
    return f"{cls.__module__}:{cls.__qualname__}"


def _resolve(path: Any) -> type[Any] | None:
    if not isinstance(path, str) or ":" not in path:
        return None
    module, _, qualname = path.partition(":")
    try:
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        return None
    return found if isinstance(found, type) and _rebuilt(found) else None


__all__ = ["decode", "encode"]
