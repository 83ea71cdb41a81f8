"""Optional dependencies: a missing one is named with the extra that installs it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def needs_extra(needs: str, extra: str, *alternatives: str) -> Iterator[None]:
    """Turn an ``ImportError`` raised by the imports in the block into one
    that says what needs the package and which extra installs it:
    ``<needs>: pip install 'sagakit[<extra>]'``, then ``(or 'sagakit[<alt>]')``
    for each alternative extra. The original error is the ``__cause__``."""
    try:
        yield
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        hint = f"pip install 'sagakit[{extra}]'"
        hint += "".join(f" (or 'sagakit[{alt}]')" for alt in alternatives)
        raise ImportError(f"{needs}: {hint}") from exc
