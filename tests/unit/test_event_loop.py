"""The event loop the CLI runs on (``sagakit.runtime.loop``)."""

from __future__ import annotations

import asyncio

import pytest

from sagakit import SagaError
from sagakit.runtime import loop


async def _running_loop() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_auto_takes_uvloop_when_it_is_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("uvloop")  # a dev dependency: installed in CI
    monkeypatch.delenv(loop.LOOP_ENV, raising=False)
    assert loop.loop_name() == "uvloop"
    assert loop.run(_running_loop()).startswith("uvloop")


@pytest.mark.parametrize("value", ["asyncio", " AsyncIO "])
def test_asyncio_can_be_chosen(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(loop.LOOP_ENV, value)
    assert loop.loop_factory() is None
    assert loop.run(_running_loop()).startswith("asyncio")


def test_an_unknown_choice_is_refused_and_the_coroutine_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(loop.LOOP_ENV, "trio")
    main = _running_loop()
    with pytest.raises(SagaError, match="SAGAKIT_EVENT_LOOP='trio' is not one of"):
        loop.run(main)
    assert main.cr_frame is None  # closed: no "never awaited" warning


def test_uvloop_required_but_missing_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(loop.LOOP_ENV, "uvloop")
    monkeypatch.setitem(__import__("sys").modules, "uvloop", None)  # not importable
    with pytest.raises(SagaError, match=r"pip install 'sagakit\[fast\]'"):
        loop.loop_factory()


def test_a_brief_run_takes_asyncio_unless_uvloop_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("uvloop")
    monkeypatch.delenv(loop.LOOP_ENV, raising=False)
    assert loop.loop_factory(brief=True) is None  # auto: no uvloop import to pay
    assert loop.run(_running_loop(), brief=True).startswith("asyncio")
    monkeypatch.setenv(loop.LOOP_ENV, "uvloop")
    assert loop.run(_running_loop(), brief=True).startswith("uvloop")


def test_the_cli_turns_the_collector_back_on_for_a_loop_that_runs_long() -> None:
    import gc  # noqa: PLC0415

    from sagakit.cli.common import run_async  # noqa: PLC0415

    was = gc.isenabled()
    try:
        gc.disable()  # as sagakit.cli.main.main starts a command
        run_async(_running_loop(), brief=True)
        assert not gc.isenabled()  # a read's few statements: still off
        run_async(_running_loop())
        assert gc.isenabled()  # a worker runs for days
    finally:
        if was:
            gc.enable()
        else:
            gc.disable()
