"""How the runtime calls a step's functions, read once from their signatures.

Actions, compensations and ``Remote`` payload builders take the saga context
(and a compensation, optionally, its own step's result) positionally. Any of
them may also declare a parameter named ``results``: the runtime then passes
the results of the steps completed so far by keyword (see
:class:`~sagakit.engine.results.Results`). Everything is decided when the
definition is built; calling costs nothing more than the call.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sagakit.errors import DefinitionError

RESULTS = "results"
"""The parameter name that asks for the results of earlier steps."""

_MANY = 1 << 16


@dataclass(frozen=True, slots=True)
class CallShape:
    """What a function accepts: ``required`` to ``maximum`` positional
    arguments, ``results`` by keyword if it declares it, and the parameters no
    call could fill (``unsuppliable``: required keyword-only ones, or required
    positional ones after ``results``)."""

    required: int = 0
    maximum: int = _MANY
    results: bool = False
    unsuppliable: tuple[str, ...] = ()
    known: bool = True
    """False when the signature could not be read (some builtins)."""

    def accepts(self, positional: int) -> bool:
        """Whether a call with ``positional`` arguments (and ``results`` if
        declared) fills every parameter."""
        return not self.unsuppliable and self.required <= positional <= self.maximum


UNKNOWN = CallShape(known=False)
"""The shape of a function whose signature cannot be read (or of none, for a
``Remote`` without payload builder): any positional call is tried, the
``results`` are never passed, nor a compensation's own result."""


def call_shape(fn: Callable[..., Any]) -> CallShape:
    """Read ``fn``'s signature (``UNKNOWN`` when it cannot be read)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return UNKNOWN
    required = maximum = 0
    results = after_results = False
    unsuppliable: list[str] = []
    for p in sig.parameters.values():
        needed = p.default is p.empty
        if p.name == RESULTS and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            results = after_results = True
        elif p.kind is p.VAR_POSITIONAL:
            if not after_results:
                maximum = _MANY
        elif p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            if after_results:  # a positional call would fill ``results`` first
                if needed:
                    unsuppliable.append(p.name)
            else:
                maximum += 1
                required += needed
        elif p.kind is p.KEYWORD_ONLY and needed:
            unsuppliable.append(p.name)
    return CallShape(required, maximum, results, tuple(unsuppliable))


def checked_shape(
    step: str, fn: Callable[..., Any], counts: tuple[int, ...], rule: str
) -> CallShape:
    """``fn``'s shape; a ``DefinitionError`` naming ``step`` and stating
    ``rule`` unless a call with one of ``counts`` positional arguments (and
    ``results`` if declared) fills its parameters."""
    shape = call_shape(fn)
    if any(shape.accepts(n) for n in counts):
        return shape
    unfilled = ""
    if shape.unsuppliable:
        names = ", ".join(repr(n) for n in shape.unsuppliable)
        unfilled = f"; nothing can fill its parameter(s) {names}"
    raise DefinitionError(
        f"step {step!r}: {rule}, and may take the earlier steps' results as a "
        f"parameter named {RESULTS!r}{unfilled}"
    )
