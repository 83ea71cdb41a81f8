"""``make audit`` (.ci/audit.py) reads pip-audit's JSON report: a known
vulnerability fails; what could not be looked up is never reported clean
(a warning, or a failure with ``SAGAKIT_AUDIT=required``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "audit.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sagakit_ci_audit", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


audit = load()

CLEAN = {"name": "jinja2", "version": "3.1.6", "vulns": []}
VULNERABLE = {
    "name": "jinja2",
    "version": "3.1.2",
    "vulns": [{"id": "GHSA-h5c8-rqwp-cp95", "fix_versions": ["3.1.3"]}],
}
UNCHECKED = {
    "name": "asyncpg",
    "skip_reason": "Dependency not found on PyPI and could not be audited",
}


def judge(*deps: dict[str, Any], required: bool = False) -> tuple[int, list[str]]:
    result: tuple[int, list[str]] = audit.verdict(
        audit.Report.of({"dependencies": list(deps), "fixes": []}), required=required
    )
    return result


def test_all_checked_and_clean_passes() -> None:
    code, lines = judge(CLEAN)
    assert code == 0
    assert lines == ["audit: 1 installed distributions, no known vulnerabilities"]


def test_a_known_vulnerability_fails_naming_the_fix() -> None:
    code, lines = judge(CLEAN, VULNERABLE, UNCHECKED)
    assert code == 1
    assert lines[0] == "audit: jinja2 3.1.2: GHSA-h5c8-rqwp-cp95 (fixed in 3.1.3)"
    assert "FAILED" in lines[-1]


@pytest.mark.parametrize("required", [False, True])
def test_what_could_not_be_checked_is_not_clean(required: bool) -> None:
    code, lines = judge(CLEAN, UNCHECKED, required=required)
    assert code == (1 if required else 0)
    assert "1 of 2 installed distributions could not be checked" in lines[0]
    assert "no known vulnerabilities" not in " ".join(lines)


@pytest.mark.parametrize("required", [False, True])
def test_no_report_at_all_is_not_clean(required: bool) -> None:
    code, lines = audit.verdict(None, required=required)
    assert code == (1 if required else 0)
    assert "no report" in lines[0]


def test_a_file_that_is_not_a_report_is_refused() -> None:
    with pytest.raises(TypeError):
        audit.Report.of({"something": "else"})
