"""Every compensation error of a saga is shown by ``sagakit show`` and the
dashboard, not only the first."""

from __future__ import annotations

from dataclasses import replace

from rich.console import Console

from sagakit.cli import render
from sagakit.dashboard import views
from sagakit.engine.state import ErrorInfo, SagaStatus
from sagakit.ports.store import SagaRecord
from sagakit.testing.contracts.records import make_record

BOOM = ErrorInfo("Boom", "no courier")
REFUND = ErrorInfo("RefundError", "refund API down")
STOCK = ErrorInfo("StockError", "warehouse offline")


def failed_twice() -> SagaRecord:
    record = make_record("s-1", status=SagaStatus.COMPENSATION_FAILED)
    state = replace(
        record.state,
        status=SagaStatus.COMPENSATION_FAILED,
        failed_step="ship",
        error=BOOM,
        compensation_step="pay",
        compensation_error=REFUND,
        later_compensation_errors=(("reserve", STOCK),),
    )
    return replace(record, state=state)


def test_show_lists_every_compensation_error() -> None:
    record = failed_twice()
    console = Console(width=200, record=True)
    console.print(render.saga_report(record, []))
    text = console.export_text()
    assert "compensation failed  pay, reserve" in text
    assert "refund API down" in text
    assert "warehouse offline" in text


def test_the_dashboard_lists_every_compensation_error() -> None:
    record = failed_twice()
    facts = {f.label: f.value for f in views.header(record)}
    assert facts["compensation failed"] == "pay, reserve"
    assert "refund API down" in facts["undo pay error"]
    assert "warehouse offline" in facts["undo reserve error"]
    assert views.summary(record, []).endswith("; compensating pay, reserve failed")
    payload = views.record_json(record)
    assert [e["step"] for e in payload["compensation_errors"]] == ["pay", "reserve"]
    assert payload["compensation_step"] == "pay"
