"""Audit the installed dependencies for known vulnerabilities (``make audit``).

Runs ``pip-audit`` on the environment this Python runs in (sagakit itself,
installed editable, is left out) and reads its JSON report:

- a dependency with a known vulnerability fails the audit (exit 1), naming
  the advisory and the versions that fix it;
- a dependency pip-audit could not look up (its advisory service, PyPI's
  per-release JSON API, was unreachable or did not answer for it) is *not*
  counted as clean: the audit says how many went unchecked. By default that
  is a warning (exit 0), because some networks reach PyPI's package index
  but not its JSON API (the CI machines of this project do); with
  ``SAGAKIT_AUDIT=required`` it fails (exit 1). ``SAGAKIT_AUDIT=off``
  skips the audit.

pip-audit prints "No known vulnerabilities found" even when it could check
nothing; this script never reports an audit that did not happen as clean.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

TIMEOUT = 600


@dataclass
class Report:
    """What a pip-audit JSON report says."""

    checked: list[str] = field(default_factory=list)
    unchecked: dict[str, str] = field(default_factory=dict)
    vulnerable: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, data: object) -> Report:
        report = cls()
        dependencies = data.get("dependencies") if isinstance(data, dict) else None
        if not isinstance(dependencies, list):
            raise TypeError("not a pip-audit JSON report")
        for dep in dependencies:
            name = f"{dep.get('name')} {dep.get('version') or ''}".strip()
            if dep.get("skip_reason"):
                report.unchecked[name] = str(dep["skip_reason"])
                continue
            report.checked.append(name)
            found = [_advisory(vuln) for vuln in dep.get("vulns") or []]
            if found:
                report.vulnerable[name] = found
        return report


def _advisory(vuln: dict[str, object]) -> str:
    fixes = vuln.get("fix_versions")
    fixed = ", ".join(map(str, fixes)) if isinstance(fixes, list) and fixes else ""
    return f"{vuln.get('id')} (fixed in {fixed or 'no release yet'})"


def verdict(report: Report | None, *, required: bool) -> tuple[int, list[str]]:
    """The exit status and the lines to print for ``report`` (None: pip-audit
    produced none, e.g. no network at all)."""
    if report is None:
        lines = ["audit: pip-audit produced no report (no advisory service reachable?)"]
        return (1 if required else 0), [*lines, _unchecked_note(required)]
    lines = [
        f"audit: {name}: {'; '.join(found)}"
        for name, found in report.vulnerable.items()
    ]
    total = len(report.checked) + len(report.unchecked)
    if report.vulnerable:
        lines.append(
            f"audit: FAILED: {len(report.vulnerable)} of {total} installed "
            "distributions have known vulnerabilities"
        )
        return 1, lines
    if report.unchecked:
        lines.append(
            f"audit: {len(report.unchecked)} of {total} installed distributions "
            f"could not be checked, e.g. {next(iter(report.unchecked.values()))}"
        )
        lines.append(_unchecked_note(required))
        return (1 if required else 0), lines
    lines.append(f"audit: {total} installed distributions, no known vulnerabilities")
    return 0, lines


def _unchecked_note(required: bool) -> str:
    if required:
        return "audit: FAILED: SAGAKIT_AUDIT=required and not everything was checked"
    return (
        "audit: WARNING: not audited (not clean either); "
        "SAGAKIT_AUDIT=required makes this an error"
    )


def run_pip_audit() -> Report | None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "audit.json"
        command = [
            sys.executable,
            "-m",
            "pip_audit",
            "--skip-editable",
            "--progress-spinner",
            "off",
            "--timeout",
            "20",
            "--format",
            "json",
            "--output",
            str(out),
        ]
        done = subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
            command, capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
        if not out.exists():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"audit: pip-audit failed: {last[:300]}", file=sys.stderr)
            return None
        try:
            return Report.of(json.loads(out.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as exc:
            print(f"audit: unreadable pip-audit report: {exc}", file=sys.stderr)
            return None


def main() -> int:
    mode = os.environ.get("SAGAKIT_AUDIT", "").strip().lower()
    if mode == "off":
        print("audit: skipped (SAGAKIT_AUDIT=off)")
        return 0
    code, lines = verdict(run_pip_audit(), required=mode == "required")
    for line in lines:
        print(line, file=sys.stderr if code else sys.stdout)
    return code


if __name__ == "__main__":
    sys.exit(main())
