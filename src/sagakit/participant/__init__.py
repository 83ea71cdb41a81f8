"""The participant side: command handlers that reply, retry and deduplicate."""

from __future__ import annotations

from sagakit.participant.locks import require_lock
from sagakit.participant.service import CommandRejected, Participant

__all__ = ["CommandRejected", "Participant", "require_lock"]
