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
