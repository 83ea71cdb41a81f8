"""Security invariants of the source tree, checked statically.

* No unsafe deserialisation or code execution: ``pickle``, ``marshal``,
  ``shelve``, ``dill``, ``yaml.load``/``unsafe_load``, ``eval``, ``exec``.
* Messages are JSON only: every broker adapter publishes ``application/json``
  (the Celery adapter dead-letters pickle: ``tests/contracts/test_transports.py``
  ``test_non_json_task_messages_are_dead_lettered``, and
  ``tests/integration/test_celery_interop.py`` with a real pickled task).
* SQL is parameterised: no SQL text is built in Python with f-strings, ``%`` or
  ``format`` and passed to a driver; the ``.sql`` files hold no interpolation.
* The dashboard compares tokens in constant time (``hmac.compare_digest``);
  the negative HTTP tests are in ``tests/integration/test_dashboard.py``.
* The bandit-style lint stays on: ruff's ``S`` rules are selected, none is
  ignored for the package, and each ``# noqa: S...`` in it says why.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "sagakit"
PYTHON = sorted(SRC.rglob("*.py"))
SQL_FILES = sorted(SRC.rglob("*.sql"))

BANNED_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill"}
BANNED_CALLS = {"eval", "exec", "compile", "__import__"}
UNSAFE_YAML = {"load", "load_all", "unsafe_load", "unsafe_load_all", "full_load"}
DRIVER_CALLS = {
    "execute",
    "executemany",
    "executescript",
    "fetch",
    "fetchrow",
    "fetchval",
    "copy_from_query",
    "cursor",
}
ALLOWED_BUILT_SQL = {
    # PRAGMA takes no bound parameters: the value is checked against
    # _SYNC_MODES first, the sizes are checked to be ints
    "adapters/store/sqlite_database.py": {
        "f'PRAGMA synchronous={synchronous.upper()}'",
        "f'PRAGMA cache_size=-{cache_mb * 1024}'",
        "f'PRAGMA mmap_size={mmap_mb * 1024 * 1024}'",
        "f'PRAGMA wal_autocheckpoint={checkpoint_pages}'",
    },
}
SQL_WORDS = re.compile(
    r"\b(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|"
    r"CREATE\s+(TABLE|INDEX)|DROP\s+TABLE|ALTER\s+TABLE)\b",
    re.IGNORECASE | re.DOTALL,
)


def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(SRC.parent)}:{getattr(node, 'lineno', '?')}"


def test_the_scan_sees_the_source_tree() -> None:
    assert len(PYTHON) > 50
    assert len(SQL_FILES) >= 4


def test_no_unsafe_deserialisation_or_code_execution() -> None:
    found = []
    for path in PYTHON:
        for node in ast.walk(tree(path)):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [(node.module or "").split(".")[0]]
            else:
                names = []
            found += [
                f"{where(path, node)} imports {n}" for n in names if n in BANNED_MODULES
            ]
            if isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Name) and func.id in BANNED_CALLS:
                    found.append(f"{where(path, node)} calls {func.id}()")
                if (
                    isinstance(func, ast.Attribute)
                    and func.attr in UNSAFE_YAML
                    and isinstance(func.value, ast.Name)
                    and func.value.id == "yaml"
                ):
                    found.append(f"{where(path, node)} calls yaml.{func.attr}()")
    assert found == []


def _built_string(node: ast.expr) -> bool:
    """An f-string, ``%``-formatting, concatenation or ``.format`` call."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mod, ast.Add)):
        return True
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "format"
    )


def test_no_sql_is_built_in_python() -> None:
    found = []
    for path in PYTHON:
        for node in ast.walk(tree(path)):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in DRIVER_CALLS
                and node.args
                and _built_string(node.args[0])
                and ast.unparse(node.args[0])
                not in ALLOWED_BUILT_SQL.get(str(path.relative_to(SRC)), set())
            ):
                found.append(f"{where(path, node)}: {node.func.attr}(<built string>)")
            if isinstance(node, ast.JoinedStr):
                text = "".join(
                    v.value
                    for v in node.values
                    if isinstance(v, ast.Constant) and isinstance(v.value, str)
                )
                if SQL_WORDS.search(text):
                    found.append(f"{where(path, node)}: SQL in an f-string")
    assert found == []


@pytest.mark.parametrize("path", SQL_FILES, ids=lambda p: str(p.relative_to(SRC)))
def test_sql_files_hold_no_interpolation_markers(path: Path) -> None:
    text = re.sub(r"--[^\n]*", "", path.read_text(encoding="utf-8"))  # comments
    text = re.sub(r"'(?:[^']|'')*'", "''", text)  # string literals
    markers = re.findall(r"\{[^}]*\}|%\(?\w*\)?s|%s|\$\{", text)
    assert markers == [], f"{path.name}: {markers}"


def test_every_broker_adapter_publishes_json_only() -> None:
    transport = SRC / "adapters" / "transport"
    # the Celery adapter is celery.py (AMQP) and celery_wire.py (task messages)
    sources = {
        "rabbitmq": (transport / "rabbitmq.py").read_text(),
        "celery": (transport / "celery.py").read_text()
        + (transport / "celery_wire.py").read_text(),
    }
    for name, source in sources.items():
        types = set(re.findall(r"content_type=([A-Za-z_\.\"/-]+)", source))
        constants = set(re.findall(r'^(\w+) = "(application/[^"]+)"', source, re.M))
        assert constants, name
        for constant, value in constants:
            if constant in {"CONTENT_TYPE", "JSON"}:
                assert value == "application/json", (name, constant, value)
        assert types, name
        assert types <= {
            "CONTENT_TYPE",
            "JSON",
            "content_type",
            "incoming.content_type",
        }, (
            name,
            types,
        )
    assert set(re.findall(r'serializer="(\w+)"', sources["celery"])) == {"json"}
    redis_source = (SRC / "adapters" / "transport" / "redis.py").read_text()
    assert "pickle" not in redis_source
    # Celery over Redis: every kombu message it writes says JSON, from celery.py
    kombu = (SRC / "adapters" / "transport" / "celery_redis.py").read_text()
    assert set(re.findall(r'"content-type": ([\w\."]+)', kombu)) == {"JSON"}
    assert "import pickle" not in kombu
    assert "loads(" not in kombu.replace("json.loads(", "")


def test_the_envelope_codec_is_json() -> None:
    from sagakit.messaging.envelope import Envelope, decode, encode  # noqa: PLC0415

    body = encode(Envelope(kind="event", type="t", correlation_id="c"))
    assert body.startswith(b"{")
    assert decode(body).type == "t"


def test_dashboard_tokens_are_compared_in_constant_time() -> None:
    source = (SRC / "dashboard" / "auth.py").read_text()
    module = ast.parse(source)
    assert "hmac.compare_digest" in source
    for node in ast.walk(module):
        if isinstance(node, ast.Compare) and any(
            isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops
        ):
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            attrs = {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
            assert not ({"token", "given", "expected", "session", "csrf"} & names), (
                ast.unparse(node)
            )
            assert "_token" not in attrs, ast.unparse(node)


def test_the_bandit_rules_stay_on() -> None:
    config = tomllib.loads((SRC.parents[1] / "pyproject.toml").read_text("utf-8"))
    lint = config["tool"]["ruff"]["lint"]
    assert "S" in lint["select"]
    assert not [code for code in lint.get("ignore", []) if code.startswith("S")]
    for files, codes in lint.get("per-file-ignores", {}).items():
        if files.startswith("src/"):  # the contract suites are tests: S101 only
            assert [c for c in codes if c.startswith("S")] in ([], ["S101"]), files
    unexplained = [
        f"{path.relative_to(SRC.parent)}:{n}"
        for path in PYTHON
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"# noqa: S\d+(,\s*\w+)*\s*$", line)
    ]
    assert unexplained == []
