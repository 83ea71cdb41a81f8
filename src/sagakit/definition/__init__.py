"""Pure saga definitions: what runs, in which order, and how it is undone."""

from __future__ import annotations

from sagakit.definition.lock import Lock
from sagakit.definition.remote import DEFAULT_REPLY_TIMEOUT, Remote
from sagakit.definition.retry import COMPENSATION_RETRY, NO_RETRY, RetryPolicy
from sagakit.definition.saga import DictContext, Parallel, Saga, Step
from sagakit.definition.subsaga import SubSaga

__all__ = [
    "COMPENSATION_RETRY",
    "DEFAULT_REPLY_TIMEOUT",
    "NO_RETRY",
    "DictContext",
    "Lock",
    "Parallel",
    "Remote",
    "RetryPolicy",
    "Saga",
    "Step",
    "SubSaga",
]
