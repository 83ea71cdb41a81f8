"""The saga page's pictures, laid out here and drawn as SVG by
``templates/charts.html`` (server-side, no script, no CDN; colours come from
the stylesheet's classes, so the page's CSP needs no inline style).

- :func:`gantt`: a lane per step and one per compensation, a bar per
  attempt from its start to its end, the saga's own events (started,
  claimed, an operator's request, its end) as marks on a lane of their own.
  Steps that ran at the same time (a parallel group, independent branches)
  are bars side by side in time, on lanes next to each other.
- :func:`step_graph`: the definition's steps in stages (a column per
  stage, each step at its longest distance from a root), an arrow per
  dependency, each step coloured by its status in this instance; a
  sub-saga step links to its child.

Pure functions over records; nothing here touches HTTP or the store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sagakit.definition.saga import Saga, Step
from sagakit.engine.state import StepStatus
from sagakit.ports.store import HistoryEntry, SagaRecord
from sagakit.views.format import clip, milliseconds, short_error

WIDTH = 960
LABEL = 170
RIGHT = 24
TOP = 24
LANE = 24
BAR = 14
MARK_GAP = 90
TICKS = 4
STEP_KINDS = ("action", "compensation")


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    css: str
    title: str


@dataclass(frozen=True, slots=True)
class Mark:
    x: float
    css: str
    label: str
    title: str
    anchor: str = "start"
    """Where the label sits: ``start`` (right of the mark) or ``end``."""


@dataclass(frozen=True, slots=True)
class Lane:
    y: float
    label: str
    css: str


@dataclass(frozen=True, slots=True)
class Tick:
    x: float
    label: str
    anchor: str = "middle"


@dataclass(frozen=True, slots=True)
class Gantt:
    """A timeline chart: ``lanes`` (the first is the saga's), ``bars`` on
    them, ``marks`` on the saga lane, and the time axis ``ticks``."""

    width: int
    height: float
    label_width: int
    lanes: list[Lane]
    bars: list[Bar]
    marks: list[Mark]
    ticks: list[Tick]
    now: float | None
    """Where "now" is on an unfinished saga's chart."""

    @property
    def bar_height(self) -> int:
        return BAR

    @property
    def lane_height(self) -> int:
        return LANE


def _lane_key(entry: HistoryEntry) -> tuple[str, str]:
    return (entry.kind, entry.step or "")


def _lanes(
    first: dict[tuple[str, str], float], order: Sequence[str]
) -> list[tuple[str, str]]:
    """Action lanes first, in ``order`` (the definition's) or else by first
    start; then compensation lanes, in the order they started. ``first``:
    when each lane's first bar starts."""
    rank = {name: i for i, name in enumerate(order)}

    def place(key: tuple[str, str]) -> tuple[int, float, float, str]:
        kind, step = key
        if kind == "action":
            return (0, rank.get(step, len(rank)), first[key], step)
        return (1, 0, first[key], step)

    return sorted(first, key=place)


def _offset(seconds: float, span: float) -> str:
    """An axis label: ms for a short saga, seconds (minutes) for longer."""
    if span < 10:  # noqa: PLR2004 - up to 10 s, in ms
        return f"{milliseconds(seconds)} ms"
    if span < 600:  # noqa: PLR2004 - up to 10 min, in s
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def _in_flight(record: SagaRecord) -> list[tuple[str, str]]:
    """The lanes of the steps and compensations under way (none once the
    saga ended): their history line is written when they end."""
    if record.status.terminal:
        return []
    found = []
    for name, state in record.state.steps.items():
        if state.status is StepStatus.RUNNING:
            found.append(("action", name))
        elif state.status is StepStatus.COMPENSATING:
            found.append(("compensation", name))
    return found


def _bar_title(h: HistoryEntry, start: float) -> str:
    what = "undo " if h.kind == "compensation" else ""
    outcome = h.outcome
    if h.error is not None:
        outcome += f": {short_error(h.error)}"
    return (
        f"{what}{h.step} · try {h.attempt} · {outcome} · "
        f"{milliseconds(h.duration)} ms, from +{milliseconds(h.started_at - start)} ms"
    )


def gantt(
    record: SagaRecord,
    history: Sequence[HistoryEntry],
    now: float,
    order: Sequence[str] = (),
) -> Gantt:
    """The timeline of ``record`` from its ``history`` (an unfinished saga's
    axis runs to ``now``); ``order``: the definition's step order."""
    start = record.created_at
    steps = [h for h in history if h.kind in STEP_KINDS]
    events = [h for h in history if h.kind not in STEP_KINDS]
    ends = [record.updated_at, *(h.finished_at for h in history)]
    if not record.status.terminal:
        ends.append(now)
    span = max(max(ends) - start, 1e-3)
    plot = WIDTH - LABEL - RIGHT

    def x(moment: float) -> float:
        return round(LABEL + max(0.0, moment - start) / span * plot, 1)

    in_flight = _in_flight(record)
    first: dict[tuple[str, str], float] = {}
    for h in steps:
        first.setdefault(_lane_key(h), h.started_at)
    for key in in_flight:
        first.setdefault(key, record.updated_at)
    keys = _lanes(first, order)
    lanes = [Lane(TOP, "saga", "lane saga")]
    for i, (kind, step) in enumerate(keys, start=1):
        label = f"undo {step}" if kind == "compensation" else step
        lanes.append(Lane(TOP + i * LANE, clip(label, 24), f"lane {kind}"))
    where = {key: TOP + i * LANE for i, key in enumerate(keys, start=1)}
    bars = []
    for h in steps:
        left = x(h.started_at)
        width = max(2.0, x(h.finished_at) - left)
        css = f"bar {h.kind} {h.outcome}"
        bars.append(
            Bar(left, where[_lane_key(h)], round(width, 1), css, _bar_title(h, start))
        )
    since = x(record.updated_at)
    for kind, step in in_flight:  # started at the last change, at the latest
        status = "compensating" if kind == "compensation" else "running"
        title = (
            f"{step}: {status} since the last change (+"
            f"{milliseconds(record.updated_at - start)} ms): in flight, or left "
            "by a process that is gone"
        )
        width = round(max(2.0, x(now) - since), 1)
        css = f"bar {kind} inflight"
        bars.append(Bar(since, where[(kind, step)], width, css, title))
    marks = []
    labelled = -float(MARK_GAP)  # a label only where it does not run into the last
    for h in sorted(events, key=lambda e: e.started_at):
        at = x(h.started_at)
        label = ""
        if at - labelled >= MARK_GAP:
            label, labelled = clip(h.outcome.replace("_", " "), 16), at
        title = f"{h.outcome} at +{milliseconds(h.started_at - start)} ms"
        anchor = "end" if at > WIDTH - RIGHT - MARK_GAP else "start"
        marks.append(Mark(at, f"mark {h.outcome}", label, title, anchor))
    ticks = [
        Tick(
            round(LABEL + plot * i / TICKS, 1),
            _offset(span * i / TICKS, span),
            "end" if i == TICKS else "middle",
        )
        for i in range(TICKS + 1)
    ]
    return Gantt(
        width=WIDTH,
        height=TOP + (len(keys) + 1) * LANE + 8,
        label_width=LABEL,
        lanes=lanes,
        bars=bars,
        marks=marks,
        ticks=ticks,
        now=None if record.status.terminal else x(now),
    )


# -- the step graph -----------------------------------------------------------

COLUMN = 184
NODE_W = 152
NODE_H = 42
ROW = 58
PAD = 12


@dataclass(frozen=True, slots=True)
class Node:
    x: float
    y: float
    name: str
    label: str
    detail: str
    css: str
    title: str
    href: str


@dataclass(frozen=True, slots=True)
class Edge:
    path: str
    css: str


@dataclass(frozen=True, slots=True)
class StepGraph:
    width: int
    height: int
    nodes: list[Node]
    edges: list[Edge]

    @property
    def node_width(self) -> int:
        return NODE_W

    @property
    def node_height(self) -> int:
        return NODE_H


def _what(step: Step) -> str:
    if step.is_sub_saga:
        return "sub-saga"
    action: Any = step.action
    if step.is_remote:
        return clip(str(action.command), 22)
    return "compensable" if step.compensate is not None else "local"


def definition_of(sagas: Sequence[Saga[Any]], record: SagaRecord) -> Saga[Any] | None:
    """The definition ``record`` runs on, among ``sagas`` and their sub-sagas
    (by name and version); None if it is not there."""
    for saga in sagas:
        for one in (saga, *saga.family):
            if (one.name, one.version) == (record.saga_name, record.definition_version):
                return one
    return None


def step_graph(
    saga: Saga[Any], record: SagaRecord, child_url: Callable[[str], str]
) -> StepGraph:
    """``saga``'s steps coloured by their status in ``record``; a sub-saga
    step links to ``child_url(child id)``."""
    stages = saga.stages
    tallest = max(len(stage) for stage in stages)
    at: dict[str, tuple[float, float]] = {}
    nodes = []
    for col, stage in enumerate(stages):
        offset = (tallest - len(stage)) * ROW / 2
        for row, step in enumerate(stage):
            x, y = PAD + col * COLUMN, PAD + offset + row * ROW
            at[step.name] = (x, y)
            state = record.state.steps.get(step.name)
            status = StepStatus.PENDING if state is None else state.status
            css = ["node", status.value]
            if step.pivot:
                css.append("pivot")
            if step.is_sub_saga:
                css.append("sub")
            detail = status.value.replace("_", " ")
            if step.pivot:
                detail += " · pivot"
            title = f"{step.name}: {status.value} ({_what(step)})"
            if state is not None and state.error is not None:
                title += f" · {short_error(state.error)}"
            child = f"{record.saga_id}/{step.name}" if step.is_sub_saga else ""
            nodes.append(
                Node(
                    x=x,
                    y=y,
                    name=step.name,
                    label=clip(step.name, 20),
                    detail=detail,
                    css=" ".join(css),
                    title=title,
                    href=child_url(child) if child else "",
                )
            )
    edges = []
    for name, deps in saga.graph.deps.items():
        x2, y2 = at[name]
        for dep in deps:
            x1, y1 = at[dep]
            sx, sy, ex, ey = x1 + NODE_W, y1 + NODE_H / 2, x2, y2 + NODE_H / 2
            bend = (ex - sx) / 2
            curve = f"C{sx + bend:g},{sy:g} {ex - bend:g},{ey:g} {ex:g},{ey:g}"
            path = f"M{sx:g},{sy:g} {curve}"
            edges.append(Edge(path, "edge"))
    return StepGraph(
        width=int(2 * PAD + (len(stages) - 1) * COLUMN + NODE_W),
        height=int(2 * PAD + (tallest - 1) * ROW + NODE_H),
        nodes=nodes,
        edges=edges,
    )


__all__ = ["Gantt", "StepGraph", "definition_of", "gantt", "step_graph"]
