"""The saga page's pictures and the list's page cursor: pure layouts."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from sagakit import Parallel, Saga, SagaStatus, Step
from sagakit.dashboard.charts import definition_of, gantt, step_graph
from sagakit.dashboard.search import Cursor, parse_cursor
from sagakit.dashboard.views import FilterError
from sagakit.engine.state import SagaState, StepState, StepStatus
from sagakit.errors import ErrorInfo
from sagakit.ports.store import HistoryEntry, SagaRecord, saga_line


def ok(ctx: object) -> None:
    return None


def undo(ctx: object) -> None:
    return None


saga: Saga[Any] = Saga(
    "trip",
    [
        Parallel(Step("flight", ok, compensate=undo), Step("hotel", ok)),
        Step("pay", ok, pivot=True),
        Step("mail", ok),
    ],
)


def record(status: SagaStatus, steps: dict[str, StepStatus]) -> SagaRecord:
    state = SagaState(
        saga_id="t-1",
        saga_name="trip",
        status=status,
        steps={name: StepState(s) for name, s in steps.items()},
    )
    return SagaRecord(
        saga_id="t-1",
        saga_name="trip",
        status=status,
        version=5,
        state=state,
        context={},
        idempotency_key=None,
        created_at=100.0,
        updated_at=100.9,
    )


def line(step: str, kind: str, start: float, end: float, outcome: str) -> HistoryEntry:
    return HistoryEntry(
        saga_id="t-1",
        step=step,
        kind=kind,
        attempt=1,
        outcome=outcome,
        started_at=start,
        finished_at=end,
        error=ErrorInfo("LookupError", "no room") if outcome == "failed" else None,
    )


ROLLED_BACK = [
    saga_line("t-1", "started", 100.0),
    line("hotel", "action", 100.1, 100.5, "failed"),
    line("flight", "action", 100.1, 100.3, "succeeded"),
    line("flight", "compensation", 100.6, 100.9, "succeeded"),
    saga_line("t-1", "compensated", 100.9),
]


def test_a_lane_per_step_and_compensation_parallel_bars_side_by_side() -> None:
    done = record(
        SagaStatus.COMPENSATED,
        {"flight": StepStatus.COMPENSATED, "hotel": StepStatus.FAILED},
    )
    chart = gantt(done, ROLLED_BACK, now=500.0, order=saga.graph.order)
    assert [lane.label for lane in chart.lanes] == [
        "saga",
        "flight",
        "hotel",
        "undo flight",
    ]
    bars = {b.title.split(" ")[0]: b for b in chart.bars if "action" in b.css}
    flight, hotel = bars["flight"], bars["hotel"]
    assert flight.y != hotel.y
    assert flight.x == hotel.x  # started together
    assert hotel.width == pytest.approx(2 * flight.width, abs=1)
    (comp,) = [b for b in chart.bars if "compensation" in b.css]
    assert comp.x > hotel.x + hotel.width  # the undo after the failure
    assert comp.css == "bar compensation succeeded"
    assert "LookupError: no room" in hotel.title
    assert [m.css for m in chart.marks] == ["mark started", "mark compensated"]
    assert chart.now is None  # ended: the axis stops at its end
    assert [t.label for t in chart.ticks] == [
        "0 ms",
        "225 ms",
        "450 ms",
        "675 ms",
        "900 ms",
    ]


def test_an_unfinished_saga_shows_what_is_in_flight_until_now() -> None:
    running = record(
        SagaStatus.RUNNING,
        {"flight": StepStatus.SUCCEEDED, "hotel": StepStatus.RUNNING},
    )
    history = [saga_line("t-1", "started", 100.0), ROLLED_BACK[2]]
    chart = gantt(running, history, now=160.0)
    (in_flight,) = [b for b in chart.bars if "inflight" in b.css]
    assert "hotel: running since the last change" in in_flight.title
    assert chart.now == pytest.approx(in_flight.x + in_flight.width, abs=0.2)
    assert chart.ticks[-1].label == "60.0 s"


def test_the_graph_has_a_column_per_stage_and_an_arrow_per_dependency() -> None:
    rolled = record(
        SagaStatus.COMPENSATED,
        {"flight": StepStatus.COMPENSATED, "hotel": StepStatus.FAILED},
    )
    graph = step_graph(saga, rolled, lambda child: f"/sagas/{child}")
    nodes = {n.name: n for n in graph.nodes}
    assert nodes["flight"].x == nodes["hotel"].x < nodes["pay"].x < nodes["mail"].x
    assert nodes["flight"].css == "node compensated"
    assert nodes["hotel"].css == "node failed"
    assert nodes["pay"].css == "node pending pivot"
    assert nodes["pay"].detail == "pending · pivot"
    assert len(graph.edges) == 3
    assert all(n.href == "" for n in graph.nodes)
    assert definition_of([saga], rolled) is saga
    assert definition_of([saga], replace(rolled, definition_version=2)) is None


@pytest.mark.parametrize(
    ("text", "cursor"),
    [
        (None, None),
        ("", None),
        ("1700000000.25:order-1", Cursor(1_700_000_000.25, "order-1")),
        ("5:a:b/c", Cursor(5.0, "a:b/c")),  # the id keeps its colons
    ],
)
def test_page_cursors(text: str | None, cursor: Cursor | None) -> None:
    assert parse_cursor(text) == cursor
    if cursor is not None:
        assert parse_cursor(cursor.text()) == cursor


@pytest.mark.parametrize("text", ["x:order-1", "nan:a", "inf:a", "5:", "5"])
def test_bad_page_cursors_are_refused(text: str) -> None:
    with pytest.raises(FilterError, match="invalid page"):
        parse_cursor(text)
