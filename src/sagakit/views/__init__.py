"""Pure formatting shared by the CLI and the dashboard: times, relative ages,
compact JSON, clipped details, short errors, timer text, and the error for
input neither can use.

Standard library only (no rich, no FastAPI), so both front ends show the same
numbers and neither imports the other.

:mod:`sagakit.views.format` turns records and numbers into short text;
:mod:`sagakit.views.input` holds :class:`~sagakit.views.input.BadInput`.
"""

from __future__ import annotations
