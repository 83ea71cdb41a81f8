"""Every ```python block of the README and the documentation site runs as
written, twice in the same directory, and prints what the page says it prints.

The conventions (docs/contributing-docs.md):

- a ```python block runs in a fresh directory, then again in the same one: a
  snippet that writes a file must still work when a reader runs it a second
  time;
- a ```text block titled "Output" right after it is what the snippet prints,
  both times: ``...`` inside a line matches any text, a line that is only
  ``...`` any number of lines;
- ``<!-- docs: no-run REASON -->`` on the line before a block shows it without
  running it (a fragment, or code that needs a service of the reader's);
- ``<!-- docs: postgres -->`` runs it with ``SAGAKIT_DATABASE_URL`` naming a
  fresh, migrated PostgreSQL database.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
MARKER = re.compile(r"<!-- docs: (no-run|postgres)(.*?)-->")
OUTPUT_FENCE = '```text title="Output"'


@dataclass(frozen=True)
class Snippet:
    name: str
    code: str
    mode: str  # "run", "postgres" or "no-run"
    output: str | None  # what it prints, as the page shows it


def parse(name: str, text: str) -> list[Snippet]:
    """The ```python blocks of one page, each with its marker and output."""
    lines = text.splitlines()
    found: list[Snippet] = []
    i = 0
    while i < len(lines):
        if lines[i] != "```python":
            i += 1
            continue
        before = next((line for line in reversed(lines[:i]) if line.strip()), "")
        marker = MARKER.fullmatch(before.strip())
        end = lines.index("```", i + 1)
        code = "\n".join(lines[i + 1 : end]) + "\n"
        after = end + 1
        while after < len(lines) and not lines[after].strip():
            after += 1
        output = None
        if after < len(lines) and lines[after] == OUTPUT_FENCE:
            close = lines.index("```", after + 1)
            output = "\n".join(lines[after + 1 : close]) + "\n"
        mode = marker.group(1) if marker else "run"
        if marker and mode == "no-run" and not marker.group(2).strip():
            raise AssertionError(f"{name}: a no-run marker without a reason")
        found.append(Snippet(f"{name}#{len(found)}", code, mode, output))
        i = end + 1
    return found


def _snippets() -> list[Snippet]:
    found = []
    for doc in DOCS:
        found += parse(str(doc.relative_to(ROOT)), doc.read_text())
    return found


SNIPPETS = _snippets()


def matches(expected: str, printed: str) -> bool:
    """``printed`` is ``expected``, where ``...`` stands for anything."""
    pattern = []
    for line in expected.splitlines():
        if line.strip() == "...":
            pattern.append(r"(?:[^\n]*\n)*?")
        else:
            pattern.append(".*".join(map(re.escape, line.split("..."))) + r"[ \t]*\n")
    return re.fullmatch("".join(pattern), printed) is not None


def _params() -> list[object]:
    params: list[object] = []
    for snippet in SNIPPETS:
        if snippet.mode == "no-run":
            continue
        marks = [pytest.mark.postgres] if snippet.mode == "postgres" else []
        params.append(pytest.param(snippet, id=snippet.name, marks=marks))
    return params


@pytest.mark.parametrize("snippet", _params())
def test_snippet_runs_twice(
    snippet: Snippet, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SAGAKIT_DATABASE_URL"}
    if snippet.mode == "postgres":
        env["SAGAKIT_DATABASE_URL"] = request.getfixturevalue("pg_url")
    script = tmp_path / "snippet.py"
    script.write_text(snippet.code)
    for run in ("first", "second"):
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, (
            f"{snippet.name} failed on its {run} run:\n{done.stderr[-3000:]}"
        )
        if snippet.output is not None:
            assert matches(snippet.output, done.stdout), (
                f"{snippet.name} printed, on its {run} run:\n{done.stdout}\n"
                f"where the page says:\n{snippet.output}"
            )


def test_the_conventions_are_read() -> None:
    page = (
        "<!-- docs: no-run a fragment -->\n\n```python\nx(\n```\n\n"
        '```python\nprint("a b")\n```\n\n```text title="Output"\na ...\n```\n'
        "<!-- docs: postgres -->\n```python\npass\n```\n"
    )
    first, second, third = parse("page.md", page)
    assert (first.mode, first.output) == ("no-run", None)
    assert (second.mode, second.output) == ("run", "a ...\n")
    assert third.mode == "postgres"
    with pytest.raises(AssertionError, match="without a reason"):
        parse("page.md", "<!-- docs: no-run -->\n```python\nx\n```\n")


@pytest.mark.parametrize(
    ("expected", "printed", "ok"),
    [
        ("succeeded {'a': 1}\n", "succeeded {'a': 1}\n", True),
        ("succeeded {'a': 1}\n", "succeeded {}\n", False),
        ("succeeded {'a': ...}\n", "succeeded {'a': 1, 'b': 2}\n", True),
        ("first\n...\nlast\n", "first\nx\ny\nlast\n", True),
        ("first\n...\nlast\n", "first\nlast\n", True),
        ("first\nlast\n", "first\nx\nlast\n", False),
    ],
    ids=["same", "different", "ellipsis-in-line", "lines", "no-lines", "extra-line"],
)
def test_output_matching(expected: str, printed: str, ok: bool) -> None:
    assert matches(expected, printed) is ok


def test_every_page_is_in_the_site() -> None:
    """A page under docs/ that mkdocs.yml's nav does not list is one nobody
    finds (mkdocs only warns about it for pages it does not build)."""
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert {p for p in pages if f" {p}\n" not in nav} == set()


def test_the_reference_reads_sphinx_roles_as_code() -> None:
    """docs/ext/sphinx_roles.py: what mkdocstrings shows of a docstring."""
    path = ROOT / "docs" / "ext" / "sphinx_roles.py"
    spec = importlib.util.spec_from_file_location("sphinx_roles", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = "Run :class:`~sagakit.Saga` with :func:`sagakit.admin.retry`::\n\n    x\n"
    assert module.markdown(text) == "Run `Saga` with `sagakit.admin.retry`:\n\n    x\n"
    assert module.markdown("A block:\n\n::\n\n    x\n") == "A block:\n\n    x\n"
