"""Deliveries an AMQP subscription gave back unsettled, so that they count.

On AMQP the delivery count travels in the header ``x-sagakit-deliveries``: a
message whose handler failed is republished, confirmed, with the count
incremented (:mod:`~sagakit.adapters.transport.amqp_settle`). When that
publish, or the dead-letter publish, fails (the broker refuses it: a nack of
the confirm, an unroutable queue; or the connection drops), the subscription
gives the delivery back (``basic.reject`` with ``requeue``, after
:data:`~sagakit.adapters.transport.amqp_subscription.REQUEUE_PAUSE`; or its
channel closed) and the broker delivers it again with the header it had.
Uncounted, a handler that keeps failing would run for as long as the broker
keeps refusing.

:class:`GivenBack` remembers, per envelope id, how many times the
subscription gave a delivery back after its handler ran, and, when it was
being dead-lettered, the reason; an LRU of :data:`SIZE` entries, each
forgotten once its message is settled. On a delivery the broker flags
``redelivered``, that count is added to the header's, and a message whose
dead-lettering was refused goes to the dead-letter queue again with its
reason, without running its handler again. So a handler runs at most
``max_deliveries`` times, and a message the dead-letter queue refuses stays in
its queue, given back after each pause, until the dead-letter queue takes it.

What is counted, and what is not:

- a delivery without ``redelivered`` (a new message, or one republished with
  its count in the header) is counted from its header alone: it is never
  looked up, so a first delivery is never over-counted, also when another
  copy of the same envelope was given back;
- a delivery given back after its handler ran counts, in the subscription
  that gave it back (the memory is its own; it survives reconnects). Another
  consumer that gets it counts from the header, so with ``n`` consumers a
  handler runs at most ``n * max_deliveries`` times in the worst case;
- a delivery the broker requeued because its consumer crashed, was cancelled
  or lost its channel while the handler ran does not count (the broker sets
  the same ``redelivered`` flag on messages that sat in a prefetch buffer and
  never reached a handler: counting the flag would count those). A handler
  that kills its process is not stopped by ``max_deliveries``;
- an entry pushed out of the LRU (more than :data:`SIZE` messages given back
  and not yet delivered again) is forgotten: counted from its header again.
"""

from __future__ import annotations

from collections import OrderedDict

from sagakit.messaging.envelope import Envelope

__all__ = ["SIZE", "GivenBack"]

SIZE = 4096
"""Envelopes a subscription remembers giving back (the least recent go first)."""


class GivenBack:
    """The envelopes a subscription gave back unsettled after their handler
    ran: how many times, and the reason where it was dead-lettering them."""

    def __init__(self, size: int = SIZE) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        self._size = size
        self._entries: OrderedDict[str, tuple[int, str | None]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def past(self, opened: Envelope | str) -> tuple[int, Envelope | str]:
        """For a delivery the broker flagged ``redelivered``: how many times
        ``opened`` was given back, and what to deliver (``opened``, or the
        reason its dead-lettering was refused: it goes to the DLQ unhandled)."""
        if not self._entries or isinstance(opened, str):
            return 0, opened
        entry = self._entries.get(opened.id)
        if entry is None:
            return 0, opened
        times, reason = entry
        return times, opened if reason is None else reason

    def gave_back(self, envelope_id: str, times: int, reason: str | None) -> None:
        """The delivery of ``envelope_id`` was given back, the ``times``-th
        time; ``reason`` set if it was being dead-lettered."""
        entries = self._entries
        entries[envelope_id] = (times, reason)
        entries.move_to_end(envelope_id)
        while len(entries) > self._size:
            entries.popitem(last=False)

    def forget(self, envelope_id: str) -> None:
        """``envelope_id`` was settled (handled, sent on or dead-lettered)."""
        self._entries.pop(envelope_id, None)
