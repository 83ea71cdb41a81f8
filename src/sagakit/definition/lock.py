"""Semantic locks: the business keys a step holds while its saga runs.

A step declares locks on keys made from the saga's context and the results
of the steps before it, as format templates::

    Step("reserve", reserve, compensate=release,
         locks=["seat:{ctx.flight}:{ctx.seat}"])
    Step("charge", charge, locks=[Lock("card:{results.reserve.card}",
                                       mode="fail", until="charge")])

A field is ``ctx.<field>[.<attribute or key>...]`` or
``results.<step>[.<key>...]``, where ``<step>`` must run before the locking
step (one of its ancestors). Everything is checked when the saga is built;
rendering happens when the step is about to start (:meth:`Lock.render`).

``mode="wait"`` (the default) queues the saga behind the holder (first come,
first served), for at most ``timeout`` seconds if one is given (then the step
fails and the saga compensates); ``mode="fail"`` fails the step at once when
the key is held. ``until`` names the step after whose success the lock is
released (the locking step itself, or one after it); without it the lock is
held until the saga ends.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from sagakit.errors import DefinitionError

LockMode = Literal["wait", "fail"]
ROOTS = ("ctx", "results")


@dataclass(frozen=True, slots=True)
class Lock:
    """A lock a step takes on the key ``key`` renders to (see the module)."""

    key: str
    mode: LockMode = "wait"
    timeout: float | None = None
    until: str | None = None
    fields: tuple[tuple[str, ...], ...] = field(default=(), init=False, repr=False)
    """Each ``{...}`` field of the template, as its dotted path."""

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key.strip():
            raise DefinitionError(
                f"lock key must be a non-empty template string, got {self.key!r}"
            )
        object.__setattr__(self, "fields", parse_template(self.key))
        if self.mode not in ("wait", "fail"):
            raise DefinitionError(
                f"lock {self.key!r}: mode must be 'wait' or 'fail', got {self.mode!r}"
            )
        timeout = self.timeout
        if timeout is not None:
            if (
                isinstance(timeout, bool)
                or not isinstance(timeout, (int, float))
                or not 0 < timeout < float("inf")
            ):
                raise DefinitionError(
                    f"lock {self.key!r}: timeout must be a number of seconds > 0, "
                    f"got {timeout!r}"
                )
            if self.mode == "fail":
                raise DefinitionError(
                    f"lock {self.key!r}: a timeout applies to mode='wait' only"
                )
        if self.until is not None and not isinstance(self.until, str):
            raise DefinitionError(
                f"lock {self.key!r}: until must name a step, got {self.until!r}"
            )

    def render(self, ctx: BaseModel, results: Mapping[str, Any]) -> str:
        """The key for this context and these results; ``LookupError`` (with
        what is missing) if a field names nothing."""
        values = {"ctx": ctx, "results": results}
        parts = []
        for literal, name, _, _ in string.Formatter().parse(self.key):
            parts.append(literal)
            if name is not None:
                parts.append(str(_lookup(values, name)))
        return "".join(parts)


def _lookup(values: Mapping[str, Any], name: str) -> Any:
    root, *path = name.split(".")
    value: Any = values[root]
    walked = root
    for part in path:
        if isinstance(value, Mapping):
            if part not in value:
                raise LookupError(f"{walked} has no key {part!r}")
            value = value[part]
        elif isinstance(value, BaseModel) or hasattr(value, part):
            try:
                value = getattr(value, part)
            except AttributeError:
                raise LookupError(f"{walked} has no field {part!r}") from None
        else:
            raise LookupError(f"{walked} ({type(value).__name__}) has no {part!r}")
        walked = f"{walked}.{part}"
    if value is None:
        raise LookupError(f"{walked} is None")
    return value


def parse_template(template: str) -> tuple[tuple[str, ...], ...]:
    """The dotted paths of ``template``'s fields; ``DefinitionError`` for a
    malformed template or a field that is not ``ctx.…`` or ``results.…``."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise DefinitionError(f"lock key {template!r} is malformed: {exc}") from None
    found = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if spec or conversion:
            raise DefinitionError(
                f"lock key {template!r}: field {{{name}}} cannot have a format "
                "spec or conversion"
            )
        path = tuple(name.split("."))
        if (
            path[0] not in ROOTS
            or len(path) < 2  # noqa: PLR2004 - a root and a name
            or not all(p.isidentifier() or p.isdigit() for p in path[1:])
            or "[" in name
        ):
            raise DefinitionError(
                f"lock key {template!r}: field {{{name}}} must be "
                "{ctx.<field>...} or {results.<step>...}"
            )
        found.append(path)
    return tuple(found)


def step_locks(step: str, declared: object) -> tuple[Lock, ...]:
    """A step's ``locks=`` as ``Lock`` objects (a string is a ``Lock`` with
    the defaults); ``DefinitionError`` naming the step otherwise."""
    if declared is None or declared == ():
        return ()
    if isinstance(declared, (str, Lock)) or not isinstance(declared, Iterable):
        raise DefinitionError(
            f"step {step!r}: locks must be a list of key templates or Lock, "
            f"got {declared!r}"
        )
    out = []
    for item in declared:
        try:
            lock = Lock(item) if isinstance(item, str) else item
        except DefinitionError as exc:
            raise DefinitionError(f"step {step!r}: {exc}") from None
        if not isinstance(lock, Lock):
            raise DefinitionError(
                f"step {step!r}: locks must be key templates or Lock, got {item!r}"
            )
        out.append(lock)
    return tuple(out)


def check_saga_locks(
    saga: str,
    locks: Mapping[str, Sequence[Lock]],
    descendants: Mapping[str, frozenset[str]],
    context: type[BaseModel],
) -> frozenset[str]:
    """Check every step's locks against the saga (``until`` is the step or
    one after it, ``results.<step>`` one before it, ``ctx.<field>`` a field
    of the context model unless it takes any field); returns the names of the
    steps that take locks."""
    open_context = context.model_config.get("extra") == "allow"
    for name, declared in locks.items():
        ancestors = {a for a, below in descendants.items() if name in below}
        for lock in declared:
            where = f"saga {saga!r}, step {name!r}, lock {lock.key!r}"
            if lock.until is not None and lock.until != name:
                if lock.until not in descendants:
                    raise DefinitionError(
                        f"{where}: until names no step {lock.until!r}"
                    )
                if lock.until not in descendants[name]:
                    raise DefinitionError(
                        f"{where}: until={lock.until!r} must be this step or one "
                        "that runs after it"
                    )
            for path in lock.fields:
                if path[0] == "ctx" and not open_context:
                    if path[1] not in context.model_fields:
                        raise DefinitionError(
                            f"{where}: the context {context.__name__} has no "
                            f"field {path[1]!r}"
                        )
                elif path[0] == "results" and path[1] not in ancestors:
                    raise DefinitionError(
                        f"{where}: results.{path[1]} must be the result of a step "
                        "that runs before this one"
                    )
    return frozenset(name for name, declared in locks.items() if declared)


__all__ = ["Lock", "LockMode", "check_saga_locks", "parse_template", "step_locks"]
