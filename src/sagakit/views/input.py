"""Input the commands and pages cannot use."""

from __future__ import annotations

from sagakit.errors import SagaError


class BadInput(SagaError):
    """An option value the commands cannot use."""
