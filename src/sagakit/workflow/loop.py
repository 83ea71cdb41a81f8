"""The worker loop of a ``WorkflowApp``: claim what is due, run it, and sleep
until the next instance is due.

Claims take a batch (up to ``batch``, and no more than the free slots of
``max_active``) in one statement; their steps run concurrently. A full batch
means more may be due: the loop claims again at once. At ``max_active`` it
waits for a step to finish and claims again as soon as a slot frees. With
nothing more due it asks the store when the next instance becomes claimable
(one index probe) and sleeps until then (:data:`SLACK` at least), but never
longer than ``poll_interval``: instances that other processes start, wake or
leave behind are found within it. Woken by that cap, it asks again before it
claims, so an idle loop only reads. Its own app's starts and delivered
events, and the next calls its steps commit, wake it at once when they are
due before it planned to look again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import TYPE_CHECKING

from sagakit.errors import StoreError
from sagakit.ports.workflow_store import WorkflowRecord
from sagakit.workflow.runner import Ran, run_claimed
from sagakit.workflow.versions import claim_due, next_due
from sagakit.workflow.waiting import REPORT_INTERVAL, report_unregistered

if TYPE_CHECKING:
    from sagakit.workflow.app import WorkflowApp

logger = logging.getLogger("sagakit.workflow")

SLACK = 0.005
"""Seconds the loop sleeps at least once nothing more is due now: timers due
within it are claimed together (fewer claims at high rates, each timer at
most this much later)."""


class Alarm:
    """Wakes a sleeping loop when something becomes due before it planned to
    look (``at``), or when a slot frees while it waits for one (``full``).
    Safe to ring from another thread."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        self.at = math.inf
        """When the loop plans to look again (inf: it is looking now)."""
        self.full = False
        """The loop waits for a step to finish before it claims again."""

    def due(self, when: float | None) -> None:
        """Something the loop may claim becomes due at ``when`` (None: never
        by itself)."""
        if when is not None and when < self.at:
            self.ring()

    def freed(self) -> None:
        """A step finished: its slot is free."""
        if self.full:
            self.ring()

    def ring(self) -> None:
        try:
            here = asyncio.get_running_loop() is self._loop
        except RuntimeError:  # no loop in this thread
            here = False
        if here:
            self._event.set()
        else:
            with contextlib.suppress(RuntimeError):  # its loop has closed
                self._loop.call_soon_threadsafe(self._event.set)

    def looking(self) -> None:
        """The loop looks at the store now: whatever is rung from here on
        counts (it may have missed it)."""
        self._event.clear()
        self.at = math.inf
        self.full = False

    async def sleep(self, seconds: float, *, at: float, full: bool = False) -> bool:
        """Sleep ``seconds`` at most, until ``at`` (or a free slot if
        ``full``); rung meanwhile, return at once. True if it was rung."""
        self.at, self.full = at, full
        if seconds <= 0 or self._event.is_set():
            await asyncio.sleep(0)  # let the steps run (a SQLite store never waits)
        else:
            try:
                async with asyncio.timeout(seconds):
                    await self._event.wait()
            except TimeoutError:
                pass
        self.at, self.full = math.inf, False
        return self._event.is_set()


async def run_loop(app: WorkflowApp, stop: asyncio.Event, poll_interval: float) -> None:
    """Claim and run ``app``'s due steps until ``stop`` is set (then finish
    the steps in flight). Cancelling stops at once: leases then expire."""
    alarm = Alarm()
    app.alarms.add(alarm)
    active: set[asyncio.Task[Ran]] = set()

    def finished(task: asyncio.Task[Ran]) -> None:
        active.discard(task)
        alarm.freed()
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            alarm.due(task.result().due)
        else:  # run_claimed handles what a step raises: this is a bug
            logger.error(
                "running a step failed",
                exc_info=error,
                extra={"action": "run_failed", "app": app.name},
            )

    async def stopped() -> None:
        await stop.wait()
        alarm.ring()

    def going() -> bool:
        """Whether a step may run next without a claim: not once stopping."""
        return not stop.is_set()

    watch = asyncio.create_task(stopped())
    due_now = True  # whether to claim before asking when the next one is due
    try:
        while not stop.is_set():
            alarm.looking()
            room = app.max_active - len(active)
            if room <= 0:
                await alarm.sleep(poll_interval, at=-math.inf, full=True)
                continue
            claimed: list[tuple[WorkflowApp, WorkflowRecord]] = []
            if due_now:
                wanted = min(room, app.batch)
                try:
                    claimed = await claim_due(app, wanted)
                except StoreError:
                    logger.exception("claim failed", extra={"action": "claim_failed"})
                for version, record in claimed:
                    task = asyncio.create_task(run_claimed(version, record, going))
                    active.add(task)
                    task.add_done_callback(finished)
                if len(claimed) == wanted:
                    continue  # more may be due now
            if not claimed:
                await _report(app)
            due_now = await _sleep_until_due(app, alarm, poll_interval)
        if active:
            await asyncio.gather(*active)
    finally:
        app.alarms.discard(alarm)
        watch.cancel()
        for task in active:
            task.cancel()


async def _report(app: WorkflowApp) -> None:
    """Mark waiting what ``app`` cannot run, every REPORT_INTERVAL seconds."""
    try:
        await report_unregistered(app, every=REPORT_INTERVAL)
    except StoreError:
        logger.exception("report failed", extra={"action": "report_failed"})


async def _sleep_until_due(app: WorkflowApp, alarm: Alarm, cap: float) -> bool:
    """Sleep until the next instance is due, ``cap`` seconds at most; True if
    something may be due now (its time came, or the alarm rang), False if
    the cap ran out first (then the store is asked again before a claim:
    an idle loop only reads)."""
    try:
        due = await next_due(app)
    except StoreError:
        logger.exception("next due failed", extra={"action": "next_due_failed"})
        due = None
    now = app.clock.now()
    wait = cap if due is None else min(max(due - now, SLACK), cap)
    rung = await alarm.sleep(wait, at=now + wait)
    return rung or (due is not None and due <= now + wait)
