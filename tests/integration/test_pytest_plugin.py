"""sagakit's pytest plugin, run by pytest itself (``pytester``): each test
writes a user's test module, runs pytest on it in this process and reads the
outcome."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

# imported here, so pytester's in-process runs, which drop the modules they
# import, share these (and their classes) with each other
import sagakit.adapters.store.scratch
import sagakit.adapters.store.sqlite
import sagakit.testing.check
import sagakit.testing.testbed  # noqa: F401
from tests.conftest import POSTGRES_URL, admin, run_sync

pytest_plugins = ["pytester"]

ROOT = Path(__file__).parents[2]
PLUGIN = "sagakit.testing.pytest_plugin"
HOW_TO = ROOT / "docs/how-to/testing.md"

SAGA = """
from pydantic import BaseModel
from sagakit import Saga, Step
from sagakit.definition import Remote


class Order(BaseModel):
    order_id: int = 1


def ticket(ctx: Order) -> dict:
    return {"order_id": ctx.order_id}


def order_saga(timeout: float = 30) -> Saga[Order]:
    return Saga(
        "order",
        [
            Step("reserve", lambda ctx: "r1", compensate=lambda ctx, result: None),
            Step(
                "ticket",
                Remote("kitchen.create_ticket", ticket),
                compensate=Remote("kitchen.cancel_ticket", ticket),
                timeout=timeout,
            ),
        ],
        context=Order,
    )
"""


@pytest.fixture
def user(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A user's project: strict asyncio mode (the plugin must not need auto),
    no PostgreSQL configured, the plugin loaded as its entry point loads it."""
    monkeypatch.delenv("SAGAKIT_TEST_POSTGRES_URL", raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))
    pytester.makeini(
        "[pytest]\nasyncio_mode = strict\n"
        "asyncio_default_fixture_loop_scope = function\n"
        "filterwarnings = error\n"
    )
    pytester.makepyfile(sagas=SAGA)
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """pytest on the user's project; ``-p`` loads the plugin where the entry
    point is not installed yet (with it, ``-p`` finds the plugin loaded)."""
    return pytester.runpytest_inprocess("-p", PLUGIN, "-rs", *args)


def test_the_entry_point_names_the_plugin_module() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["pytest11"] == {PLUGIN: PLUGIN}


def test_loading_the_plugin_imports_nothing_of_sagakit_s_runtime() -> None:
    code = (
        f"import sys, {PLUGIN}; "
        "print(sorted(m for m in sys.modules if m.startswith('sagakit.')))"
    )
    found = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    loaded = ast.literal_eval(found.stdout)
    assert loaded == ["sagakit._lazy", "sagakit.errors", "sagakit.testing", PLUGIN]


def test_no_fixture_of_the_project_s_tests_takes_a_plugin_name() -> None:
    plugin = ast.parse((ROOT / "src/sagakit/testing/pytest_plugin.py").read_text())
    ours = {
        node.name
        for node in ast.walk(plugin)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("sagakit_")
    }
    assert len(ours) == 10
    theirs = {
        node.name
        for path in (ROOT / "tests").rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    assert not ours & theirs


def test_stores_clock_and_a_testbed_with_a_participant(user: pytest.Pytester) -> None:
    user.makepyfile(
        test_user="""
        import pytest
        from sagakit import SagaStatus
        from sagakit.participant import CommandRejected
        from sagas import Order, order_saga

        pytestmark = pytest.mark.asyncio

        async def test_stores(sagakit_memory_store, sagakit_sqlite_store, tmp_path):
            assert await sagakit_memory_store.list_sagas() == []
            assert await sagakit_sqlite_store.list_sagas() == []
            assert (tmp_path / "sagakit.db").exists()

        async def test_a_remote_step_succeeds(sagakit_testbed, sagakit_orchestrator):
            kitchen = sagakit_testbed.participant("kitchen")
            kitchen.handler("kitchen.create_ticket")(lambda cmd: {"ticket": 7})
            kitchen.handler("kitchen.cancel_ticket")(lambda cmd: None)
            await sagakit_testbed.start()  # the participant too
            result = await sagakit_orchestrator.run(order_saga(), Order())
            assert result.status is SagaStatus.SUCCEEDED

        async def test_a_refusal_compensates(sagakit_testbed):
            kitchen = sagakit_testbed.participant("kitchen")

            @kitchen.handler("kitchen.create_ticket")
            def refuse(cmd: dict) -> None:
                raise CommandRejected("kitchen closed")

            result = await sagakit_testbed.run(order_saga(), Order())
            assert result.status is SagaStatus.COMPENSATED

        async def test_time_skips_to_the_reply_deadline(sagakit_testbed, sagakit_clock):
            start = sagakit_clock.now()
            saga_id = await sagakit_testbed.start_saga(order_saga(timeout=600), Order())
            # no kitchen: the command waits for a reply that never comes
            assert (await sagakit_testbed.result(saga_id)).status is SagaStatus.RUNNING
            assert await sagakit_testbed.advance(601) == [saga_id]
            result = await sagakit_testbed.result(saga_id)
            assert result.status is SagaStatus.COMPENSATED
            assert sagakit_clock.now() - start >= 601
        """
    )
    run(user).assert_outcomes(passed=4)


def test_sagakit_check_fails_with_the_report(user: pytest.Pytester) -> None:
    user.makepyfile(
        test_check="""
        import pytest
        from sagakit.adapters.store.memory import InMemoryStore
        from sagakit.participant import Participant
        from sagas import Order, order_saga

        pytestmark = pytest.mark.asyncio

        class ForgetfulInbox(InMemoryStore):
            # never remembers a command: a duplicate runs the handler again

            async def inbox_reply(self, consumer, message_id):
                return None

            async def record_inbox(self, consumer, message_id, reply):
                return True

        def forgetful_kitchen(transport, store):
            kitchen = Participant("kitchen", transport, ForgetfulInbox())
            kitchen.handler("kitchen.create_ticket")(lambda cmd: {})
            kitchen.handler("kitchen.cancel_ticket")(lambda cmd: None)
            return [kitchen]

        @pytest.mark.sagakit_check(max_points=3)
        async def test_good(sagakit_check):
            report = await sagakit_check(order_saga(), Order())
            assert report.ok and report.skipped > 0

        @pytest.mark.sagakit_check(max_points=3)
        async def test_broken(sagakit_check):
            await sagakit_check(order_saga(), Order(), participants=forgetful_kitchen)
        """
    )
    result = run(user)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*check_saga('order'):*failure points*violations*", "*handled 2 times*"]
    )


def test_postgres_unconfigured_skips_and_says_how_to_configure(
    user: pytest.Pytester,
) -> None:
    user.makepyfile(
        test_pg="""
        import pytest

        @pytest.mark.asyncio
        async def test_pg(sagakit_postgres_store):
            raise AssertionError("never runs")
        """
    )
    result = run(user)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        [
            "*no PostgreSQL server configured*--sagakit-postgres-url*"
            "sagakit_postgres_url ini option*SAGAKIT_TEST_POSTGRES_URL*"
        ]
    )


@pytest.mark.postgres
def test_postgres_gets_a_throw_away_database(
    user: pytest.Pytester, pg_template: str, tmp_path: Path
) -> None:
    seen = tmp_path / "url.txt"
    user.makepyfile(
        test_pg=f"""
        from pathlib import Path
        import pytest
        from sagakit import SagaStatus
        from sagakit.testing import Testbed
        from sagas import Order, order_saga

        @pytest.mark.asyncio
        async def test_pg(sagakit_postgres_store, sagakit_postgres_url):
            Path({str(seen)!r}).write_text(sagakit_postgres_url)
            saga = order_saga()
            async with Testbed(sagakit_postgres_store) as bed:
                kitchen = bed.participant("kitchen")
                kitchen.handler("kitchen.create_ticket")(lambda cmd: {{}})
                result = await bed.run(saga, Order())
            assert result.status is SagaStatus.SUCCEEDED
            assert len(await sagakit_postgres_store.list_sagas()) == 1
        """
    )
    run(user, "--sagakit-postgres-url", POSTGRES_URL).assert_outcomes(passed=1)
    name = seen.read_text().rsplit("/", 1)[1]
    assert name.startswith("sagakit_test_")
    # dropped: creating it again works
    run_sync(admin(f"CREATE DATABASE {name}", f"DROP DATABASE {name}"))


def test_the_how_to_s_test_module_passes(user: pytest.Pytester) -> None:
    """docs/how-to/testing.md: its test module, with its conftest.py (the
    testbed on SQLite), as a user would copy them."""
    blocks = re.findall(r"```python\n(.*?)```", HOW_TO.read_text(), re.DOTALL)
    # the test module and the conftest.py (the page's check_saga snippet,
    # outside pytest, runs in tests/e2e/test_docs.py)
    module, conftest = (b for b in blocks if b.startswith("import pytest"))
    user.makepyfile(test_how_to=module)
    user.makeconftest(conftest)
    run(user).assert_outcomes(passed=4)
