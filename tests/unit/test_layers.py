"""The layer map: every module under ``src/sagakit`` has one place, and its
imports point only down the map.

Sources are parsed with ``ast``; nothing is imported. Every import counts: at
module level, inside functions, and under ``if TYPE_CHECKING:`` too (a
type-only import still makes the lower layer speak the upper one's language,
and it is one refactoring away from a real import), as do
``importlib.import_module("x")`` and ``__import__("x")`` with a literal name.

A new module outside every layer fails :func:`test_every_module_has_a_layer`:
place it below, with the reason, rather than widening a prefix by accident.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

import sagakit

PACKAGE = Path(sagakit.__file__).parent
ROOT = "sagakit"


@dataclass(frozen=True, slots=True)
class Layer:
    """One rung of the map. ``members`` are module prefixes; with
    ``independent``, members of the layer must not import each other."""

    name: str
    members: tuple[str, ...]
    independent: bool = False


# Bottom first: a module may import its own member and any layer below it.
LAYERS: tuple[Layer, ...] = (
    # The exception tree and ErrorInfo/error_info (what a failure looks like
    # once recorded): everyone raises and records errors, so it is the bottom
    # and imports nothing of sagakit. Beside it, _extras: the install hint
    # for a missing optional package, which the adapters, observers, compat
    # and the dashboard share, and _lazy: the re-exporting packages' names
    # imported on first use (both standard library only).
    Layer("errors", ("sagakit.errors", "sagakit._extras", "sagakit._lazy")),
    # The pure DSL: no engine, no I/O (tests/unit/test_purity.py).
    Layer("definition", ("sagakit.definition",)),
    # Pure, deterministic decide() over state, events and commands.
    Layer("engine", ("sagakit.engine",)),
    # Protocols (with the one standard-library clock beside the Clock port)
    # and the message envelope/codec: messaging is the ports' wire vocabulary
    # (Transport speaks Envelope; the codec transport wraps a Transport), so
    # the two sit on one rung and may use each other.
    Layer("ports", ("sagakit.ports", "sagakit.messaging")),
    # Observer hooks the runtime calls; below the runtime so the runtime and
    # the programming models can report to it. otel.py and prometheus.py are
    # the only modules importing their libraries (see CONFINED below).
    Layer("observability", ("sagakit.observability",)),
    # The orchestrator, its driver, workers, relay and recovery; beside it,
    # locks.py: semantic locks from outside a saga (who holds a key, an
    # operator's release) on the ports, for participants and operators.
    # Hooks (the notifier, webhooks) run beside the orchestrator on the same
    # ports; Worker runs a notifier, so they share the rung.
    Layer("runtime", ("sagakit.runtime", "sagakit.locks", "sagakit.hooks")),
    # The three programming models: each stands on the runtime and the ports
    # alone, never on another model.
    Layer(
        "models",
        ("sagakit.participant", "sagakit.workflow", "sagakit.choreography"),
        independent=True,
    ),
    # Built on the models, independent of each other: the adapters (stores,
    # transports); the AsyncAPI describer (reads definitions, participants
    # and choreographies, opens nothing); admin.py, the operations library
    # the CLI and the dashboard share (works on the ports it is given);
    # examples (definitions only, kept here so the CLI demo may use them).
    Layer(
        "adapters",
        ("sagakit.adapters", "sagakit.asyncapi", "sagakit.admin", "sagakit.examples"),
        independent=True,
    ),
    # The package root: the curated public API re-exports from the layers
    # above (and picks the default store adapter), so it sits right above them
    # and anything higher may use it (``from sagakit import __version__``).
    Layer("api", (ROOT,)),
    # Users of the library that are not front ends, independent of each
    # other: views (pure formatting shared by cli/ and dashboard/), testing
    # (FakeClock, check_saga, contract suites over real adapters), compat
    # (the saga_py / saga_framework shims, built on the runtime and stores).
    Layer(
        "tools",
        ("sagakit.views", "sagakit.testing", "sagakit.compat"),
        independent=True,
    ),
    # The two front ends: thin; neither imports the other.
    Layer("front ends", ("sagakit.cli", "sagakit.dashboard"), independent=True),
    # Framework integrations: a web app's lifespan, dependencies and the
    # dashboard mounted under the app's auth. They wire the library into a
    # host framework the way the CLI wires it into a shell, and mount the
    # dashboard, so they sit right above the front ends.
    Layer("integrations", ("sagakit.integrations",)),
    # The console script wires every command, and ``sagakit dashboard`` starts
    # the dashboard: the only modules that see both front ends.
    Layer("entry", ("sagakit.cli.main", "sagakit.cli.dashboard")),
)

CONFINED: dict[str, tuple[str, ...]] = {
    "opentelemetry": ("sagakit.observability.otel",),
    "prometheus_client": ("sagakit.observability.prometheus",),
    "fastapi": (
        "sagakit.dashboard",
        "sagakit.cli.dashboard",
        "sagakit.integrations.fastapi",
    ),
    "starlette": ("sagakit.dashboard", "sagakit.integrations.fastapi"),
    "jinja2": ("sagakit.dashboard", "sagakit.cli.dashboard"),
    "uvicorn": ("sagakit.cli.dashboard",),
    "typer": ("sagakit.cli",),
    "rich": ("sagakit.cli",),
}
"""Optional libraries and the only modules that may import them."""


@dataclass(frozen=True, slots=True)
class Import:
    """``names`` imported from ``module`` (empty for ``import module``)."""

    module: str
    names: tuple[str, ...] = ()


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool = False) -> list[Import]:
    """Every import in ``source`` (at any depth), relative ones made absolute."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend(Import(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{target}" if target else base
            found.append(Import(target, tuple(a.name for a in node.names)))
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Name) and node.func.id == "__import__")
                or (
                    isinstance(node.func, ast.Attribute)
                    and node.func.attr == "import_module"
                )
            )
        ):
            found.append(Import(node.args[0].value))
    return found


def read_graph() -> dict[str, list[Import]]:
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        source = path.read_text(encoding="utf-8")
        graph[name] = imports_of(source, name, is_package=path.name == "__init__.py")
    return graph


def _within(module: str, prefix: str) -> bool:
    if prefix == ROOT:  # the root holds only its own __init__
        return module == ROOT
    return module == prefix or module.startswith(prefix + ".")


def place(module: str) -> tuple[int, str] | None:
    """(rank, member) of ``module``: the longest member prefix wins."""
    best: tuple[int, str] | None = None
    for rank, layer in enumerate(LAYERS):
        for member in layer.members:
            if _within(module, member) and (best is None or len(member) > len(best[1])):
                best = (rank, member)
    return best


def targets(imp: Import, modules: Iterable[str]) -> list[tuple[str, tuple[str, ...]]]:
    """The sagakit modules ``imp`` reaches, each with the names taken from it:
    ``from pkg import mod`` reaches ``pkg.mod``, ``from mod import name``
    reaches ``mod``."""
    known = set(modules)
    if imp.module != ROOT and not imp.module.startswith(ROOT + "."):
        return []
    out: dict[str, list[str]] = {}
    for name in imp.names or ("",):
        full = f"{imp.module}.{name}" if name else imp.module
        if full in known:
            out.setdefault(full, [])
        else:
            module = imp.module
            while module not in known and "." in module:
                module = module.rpartition(".")[0]
            out.setdefault(module, []).append(name)
    return [(m, tuple(n for n in names if n)) for m, names in out.items()]


def layer_breaks(graph: Mapping[str, Iterable[Import]]) -> list[tuple[str, str, str]]:
    """(importer, imported, why) for every import running up the map or
    across independent members of one layer."""
    found = []
    for module, imports in graph.items():
        here = place(module)
        if here is None:
            continue
        for imp in imports:
            for target, _ in targets(imp, graph):
                there = place(target)
                if there is None or there[1] == here[1]:
                    continue
                if there[0] > here[0]:
                    why = f"up: {LAYERS[here[0]].name} -> {LAYERS[there[0]].name}"
                elif there[0] == here[0] and LAYERS[here[0]].independent:
                    why = f"across {LAYERS[here[0]].name}: {here[1]} -> {there[1]}"
                else:
                    continue
                found.append((module, target, why))
    return sorted(set(found))


def private_sibling_imports(
    graph: Mapping[str, Iterable[Import]],
) -> list[tuple[str, str, str]]:
    """(importer, adapter module, name) for every private name an adapter
    module takes from another adapter module."""
    found = []
    for module, imports in graph.items():
        if not _within(module, "sagakit.adapters"):
            continue
        for imp in imports:
            for target, names in targets(imp, graph):
                if target == module or not _within(target, "sagakit.adapters"):
                    continue
                found.extend(
                    (module, target, n)
                    for n in names
                    if n.startswith("_") and not n.startswith("__")
                )
    return sorted(set(found))


def confined_imports(graph: Mapping[str, Iterable[Import]]) -> list[tuple[str, str]]:
    """(importer, library) for an optional library imported outside its home."""
    found = []
    for module, imports in graph.items():
        for imp in imports:
            top = imp.module.partition(".")[0]
            homes = CONFINED.get(top)
            if homes is not None and not any(_within(module, h) for h in homes):
                found.append((module, top))
    return sorted(set(found))


GRAPH = read_graph()


def test_every_module_has_a_layer() -> None:
    assert [m for m in GRAPH if place(m) is None] == []


def test_every_layer_member_exists() -> None:
    missing = [
        member
        for layer in LAYERS
        for member in layer.members
        if not any(_within(m, member) for m in GRAPH)
    ]
    assert missing == []


def test_imports_point_down_the_map() -> None:
    assert layer_breaks(GRAPH) == []


def test_no_adapter_imports_a_siblings_private_name() -> None:
    assert private_sibling_imports(GRAPH) == []


def test_optional_libraries_stay_in_their_modules() -> None:
    assert confined_imports(GRAPH) == []


# -- the checker can fail --------------------------------------------------

FAKE_MODULES = (
    "sagakit",
    "sagakit.errors",
    "sagakit.engine",
    "sagakit.engine.state",
    "sagakit.runtime",
    "sagakit.runtime.clock",
    "sagakit.workflow.app",
    "sagakit.choreography.bus",
    "sagakit.adapters.transport.rabbitmq",
    "sagakit.adapters.transport.celery",
    "sagakit.cli.render",
    "sagakit.dashboard",
    "sagakit.dashboard.views",
    "sagakit.views",
    "sagakit.integrations.fastapi",
)


def fake_graph(source: Mapping[str, str]) -> dict[str, list[Import]]:
    graph: dict[str, list[Import]] = {m: [] for m in FAKE_MODULES}
    for module, text in source.items():
        graph[module] = imports_of(text, module)
    return graph


def test_checker_reports_an_upward_and_a_sibling_private_import() -> None:
    graph = fake_graph(
        {
            "sagakit.engine.state": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from sagakit.runtime.clock import SystemClock\n"
            ),
            "sagakit.adapters.transport.celery": (
                "from sagakit.adapters.transport.rabbitmq import _DEAD, QUEUE\n"
                "from .rabbitmq import _text\n"
            ),
        }
    )
    assert layer_breaks(graph) == [
        ("sagakit.engine.state", "sagakit.runtime.clock", "up: engine -> runtime")
    ]
    assert private_sibling_imports(graph) == [
        ("sagakit.adapters.transport.celery", "sagakit.adapters.transport.rabbitmq", n)
        for n in ("_DEAD", "_text")
    ]


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("sagakit.dashboard.views", "from sagakit.cli.render import age", 1),
        ("sagakit.dashboard.views", "def f():\n    import sagakit.cli.render\n", 1),
        ("sagakit.dashboard.views", "from sagakit.cli import render", 1),
        ("sagakit.cli.render", "from sagakit import dashboard", 1),
        ("sagakit.workflow.app", "from sagakit.choreography.bus import EventBus", 1),
        (
            "sagakit.errors",
            "import importlib\nimportlib.import_module('sagakit.engine')",
            1,
        ),
        ("sagakit.runtime.clock", "from ..adapters.transport import celery", 1),
        ("sagakit.views", "from sagakit import ErrorInfo", 0),
        ("sagakit.engine.state", "from sagakit import ErrorInfo", 1),
        ("sagakit.cli.render", "from sagakit.views import age", 0),
        ("sagakit.workflow.app", "from sagakit.runtime.clock import SystemClock", 0),
        ("sagakit.engine.state", "from sagakit.errors import SagaError", 0),
        ("sagakit.engine.state", "from .state import ErrorInfo", 0),
        ("sagakit.integrations.fastapi", "from sagakit.dashboard import x", 0),
        ("sagakit.integrations.fastapi", "from sagakit.runtime import clock", 0),
        ("sagakit.dashboard", "from sagakit.integrations import fastapi", 1),
        ("sagakit.cli.render", "import sagakit.integrations.fastapi", 1),
    ],
)
def test_checker_direction(module: str, source: str, expected: int) -> None:
    assert len(layer_breaks(fake_graph({module: source}))) == expected


def test_checker_places_longest_prefix_and_root_exactly() -> None:
    assert place("sagakit.cli.main") == (len(LAYERS) - 1, "sagakit.cli.main")
    assert place("sagakit.cli.render") is not None
    assert place("sagakit.nowhere") is None


def test_checker_reports_a_library_outside_its_home() -> None:
    graph = {"sagakit.runtime.worker": [Import("opentelemetry.trace", ("Tracer",))]}
    assert confined_imports(graph) == [("sagakit.runtime.worker", "opentelemetry")]
    web = {
        "sagakit.integrations.fastapi.lifespan": [Import("fastapi", ("FastAPI",))],
        "sagakit.integrations.flask": [Import("starlette.types", ("ASGIApp",))],
    }
    assert confined_imports(web) == [("sagakit.integrations.flask", "starlette")]
