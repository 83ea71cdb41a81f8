"""Being told: hooks called when a saga ends ``failed`` or
``compensation_failed``, is stuck, or waits on a lock too long.

::

    from sagakit.hooks import Hooks

    hooks = Hooks(
        callback=page_on_call,                       # given each HookEvent
        webhook="https://ops.example.com/sagakit",   # signed JSON POSTs
        secret=os.environ["SAGAKIT_WEBHOOK_SECRET"],
    )
    worker = Worker(store, sagas, hooks=hooks)       # runs a Notifier

A receiver checks each request with :func:`verify_signature` (or the
standard-library lines in its docstring's module). See
:mod:`sagakit.hooks.notifier` for how nothing is lost or sent twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sagakit._lazy import lazy_exports

if TYPE_CHECKING:  # imported on first use: see sagakit._lazy
    from sagakit.hooks.config import Callback, HookRetry, Hooks
    from sagakit.hooks.event import ALL_EVENTS, EventKind, HookEvent
    from sagakit.hooks.notifier import Notifier
    from sagakit.hooks.signature import SIGNATURE_HEADER, sign, verify_signature
    from sagakit.hooks.webhook import Webhook

__all__ = [
    "ALL_EVENTS",
    "SIGNATURE_HEADER",
    "Callback",
    "EventKind",
    "HookEvent",
    "HookRetry",
    "Hooks",
    "Notifier",
    "Webhook",
    "sign",
    "verify_signature",
]

lazy_exports(
    __name__,
    {
        "sagakit.hooks.config": ("Callback", "HookRetry", "Hooks"),
        "sagakit.hooks.event": ("ALL_EVENTS", "EventKind", "HookEvent"),
        "sagakit.hooks.notifier": ("Notifier",),
        "sagakit.hooks.signature": ("SIGNATURE_HEADER", "sign", "verify_signature"),
        "sagakit.hooks.webhook": ("Webhook",),
    },
)
