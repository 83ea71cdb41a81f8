"""Versions of a workflow app, and why an instance cannot run on them.

An app's ``version`` (default 1) numbers its set of steps. Each instance
records the version and the structural fingerprint of the app it started
on, and runs only on that: a worker without the version (or with another
shape under the same number) never claims it, and an idle app reports it
waiting with the reason (:mod:`sagakit.workflow.waiting`).

The fingerprint covers what an instance in flight depends on: the names of
the registered steps and, for each, the JSON schema of the input type its
first parameter is annotated with (titles and descriptions left out), since
a pending call's stored input is validated into it. Step bodies, retry and
lease settings are left out: change them freely under running instances.
Adding, removing or renaming a step, or changing a step's input type,
changes the fingerprint: give such an app a new ``version`` and keep the
previous one running beside it (``WorkflowApp(..., previous=[old])``) until
its instances have finished (``sagakit deploy-check`` tells).

Instances written before versions were recorded are version 1 of unknown
fingerprint: any version 1 that registers their pending step runs them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from sagakit.definition.fingerprint import digest
from sagakit.definition.versions import unavailable
from sagakit.errors import DefinitionError
from sagakit.ports.workflow_store import LiveWorkflows, WorkflowRecord
from sagakit.runtime.deploy import DeployRow, Judged, judge_rows

if TYPE_CHECKING:
    from sagakit.workflow.app import WorkflowApp
    from sagakit.workflow.step import WorkflowStep


def fingerprint(steps: Iterable[WorkflowStep]) -> str:
    """The structural fingerprint of an app made of ``steps``."""
    shape = [
        {"name": step.name, "input": step.input_schema()}
        for step in sorted(steps, key=lambda s: s.name)
    ]
    return digest(shape)


def previous_versions(
    app: WorkflowApp, previous: Iterable[WorkflowApp]
) -> dict[int, WorkflowApp]:
    """The older versions ``app`` also runs, by version (theirs included),
    checked: apps of the same name, each version older than ``app``'s and
    given once."""
    from sagakit.workflow.app import WorkflowApp  # noqa: PLC0415 - a cycle

    found: dict[int, WorkflowApp] = {}
    for older in previous:
        if not isinstance(older, WorkflowApp):
            raise DefinitionError(
                f"workflow {app.name}: previous takes WorkflowApp objects, "
                f"got {older!r}"
            )
        for version, each in older.versions.items():
            if each.name != app.name:
                raise DefinitionError(
                    f"workflow {app.name}: previous version {each!r} is another "
                    f"app ({each.name!r}); give the versions of one app"
                )
            if version >= app.version:
                raise DefinitionError(
                    f"workflow {app.name}: previous version v{version} is not "
                    f"older than this app's v{app.version}"
                )
            if found.get(version, each) is not each:
                raise DefinitionError(
                    f"workflow {app.name}: v{version} is given twice in previous"
                )
            found[version] = each
    return found


def reason_for(
    name: str,
    versions: Mapping[int, WorkflowApp],
    version: int,
    fingerprint: str | None,
    step: str | None,
) -> str | None:
    """Why an instance of app ``name`` that started on ``version`` with
    ``fingerprint`` and waits on ``step`` cannot run on ``versions`` (the
    versions of the app registered here), or None."""
    found = versions.get(version)
    if found is not None and step is not None and step not in found.steps:
        known = ", ".join(sorted(found.steps)) or "none"
        numbered = "" if version == 1 else f" v{version}"
        return (
            f"step {step!r} is not registered on app {name!r}{numbered} "
            f"here (steps: {known})"
        )
    registered = None if found is None else found.fingerprint
    return unavailable(name, version, fingerprint, registered, versions)


def reason(app: WorkflowApp, record: WorkflowRecord) -> str | None:
    """Why ``app`` (with its previous versions) cannot run ``record``."""
    return reason_for(
        app.name,
        app.versions,
        record.definition_version,
        record.fingerprint,
        record.step,
    )


def apps_by_name(apps: Iterable[WorkflowApp]) -> dict[str, dict[int, WorkflowApp]]:
    """Every version of ``apps`` (their previous ones included) by app name
    and version; ``DefinitionError`` if one version is given twice with
    different shapes."""
    found: dict[str, dict[int, WorkflowApp]] = {}
    for app in apps:
        versions = found.setdefault(app.name, {})
        for version, each in app.versions.items():
            known = versions.setdefault(version, each)
            if known.fingerprint != each.fingerprint:
                raise DefinitionError(
                    f"workflow {app.name} v{version} is defined twice, with "
                    "different steps"
                )
    return found


def deploy_rows(apps: Iterable[WorkflowApp], live: LiveWorkflows) -> list[DeployRow]:
    """What deploying ``apps`` does to the ``live`` instances of every app,
    per app and version (``sagakit deploy-check``): those whose version and
    pending step are registered continue, the others would be stranded."""
    known = apps_by_name(apps)

    def judge(key: tuple[str, int, str | None, str | None]) -> Judged:
        name, version, fingerprint, step = key
        if name not in known:
            return "drain", f"no workflow app named {name!r} in the code"
        why = reason_for(name, known[name], version, fingerprint, step)
        return ("continue", None) if why is None else ("drain", why)

    return judge_rows(live, "app", judge)


async def claim_due(
    app: WorkflowApp, limit: int
) -> list[tuple[WorkflowApp, WorkflowRecord]]:
    """Claim up to ``limit`` due instances of the versions ``app`` runs, each
    by the version it started on (and with that version's own worker id,
    lease and clock); the version asked first turns on every call, so a busy
    version does not starve an older one."""
    runs = [app.versions[v] for v in sorted(app.versions, reverse=True)]
    turn = app.claims % len(runs)
    app.claims += 1
    claimed: list[tuple[WorkflowApp, WorkflowRecord]] = []
    for version in runs[turn:] + runs[:turn]:
        room = limit - len(claimed)
        if room <= 0:
            break
        found = await version.store.claim(
            version.name,
            version.worker_id,
            list(version.steps),
            now=version.clock.now(),
            lease=version.lease,
            limit=room,
            version=version.version,
            fingerprint=version.fingerprint,
        )
        claimed.extend((version, record) for record in found)
    return claimed


async def next_due(app: WorkflowApp) -> float | None:
    """When something the versions ``app`` runs becomes claimable, or None."""
    found = [
        await version.store.next_due(
            version.name,
            list(version.steps),
            version=version.version,
            fingerprint=version.fingerprint,
        )
        for version in app.versions.values()
    ]
    known = [due for due in found if due is not None]
    return min(known, default=None)
