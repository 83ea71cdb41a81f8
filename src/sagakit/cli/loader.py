"""Load definitions named on the command line as ``module`` or ``module:attr``:
sagas, participants, and (for ``deploy-check``) workflow apps and
choreographies too."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # imported where used: the CLI starts without them
    from sagakit.choreography import Choreography
    from sagakit.definition.saga import Saga
    from sagakit.participant.service import Participant
    from sagakit.workflow import WorkflowApp


class LoadError(Exception):
    """The target names nothing loadable; the message says why."""


def _import(target: str) -> tuple[Any, str]:
    module_name, _, attr = target.partition(":")
    if not module_name:
        raise LoadError(f"{target!r} names no module; use MODULE or MODULE:ATTR")
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    if module_name.startswith("."):
        raise LoadError(f"{target!r} is a relative module name; give the full one")
    try:
        return importlib.import_module(module_name), attr
    except (ImportError, ValueError) as exc:  # ValueError: a NUL in the name
        raise LoadError(f"cannot import {module_name!r}: {exc}") from exc


def _attribute(module: Any, attr: str) -> Any:
    try:
        return getattr(module, attr)
    except AttributeError:
        name = module.__name__
        raise LoadError(f"module {name!r} has no attribute {attr!r}") from None


def load_target(target: str) -> object:
    """What ``MODULE[:ATTR]`` names: the module, or its attribute."""
    module, attr = _import(target)
    return _attribute(module, attr) if attr else module


def load_participant(target: str) -> Participant:
    """``pkg.mod:name`` -> that Participant (or the only one in ``pkg.mod``)."""
    from sagakit.participant.service import Participant

    module, attr = _import(target)
    if not attr:
        found = [v for v in vars(module).values() if isinstance(v, Participant)]
        if len(found) != 1:
            raise LoadError(
                f"module {module.__name__!r} defines {len(found)} Participant "
                "objects; name one as MODULE:ATTR"
            )
        return found[0]
    value = getattr(module, attr, None)
    if not isinstance(value, Participant):
        raise LoadError(f"{target!r} is {type(value).__name__}, not a Participant")
    return value


def load_sagas(target: str) -> list[Saga[Any]]:
    """``pkg.mod`` -> every Saga defined at module level; ``pkg.mod:name`` -> that
    Saga, or the Sagas of that list/tuple; each followed by the sagas it runs
    as sub-sagas."""
    return _with_children(_load_sagas(target))


def _with_children(sagas: list[Saga[Any]]) -> list[Saga[Any]]:
    found: list[Saga[Any]] = []
    for saga in (one for given in sagas for one in (given, *given.family)):
        if not any(saga is seen for seen in found):
            found.append(saga)
    return found


def _load_sagas(target: str) -> list[Saga[Any]]:
    from sagakit.definition.saga import Saga

    module, attr = _import(target)
    module_name = module.__name__
    if not attr:
        found = [v for v in vars(module).values() if isinstance(v, Saga)]
        if not found:
            raise LoadError(f"module {module_name!r} defines no Saga")
        return found
    value = _attribute(module, attr)
    if isinstance(value, Saga):
        return [value]
    if isinstance(value, Iterable) and not isinstance(value, (str, bytes)):
        items = list(value)
        if items and all(isinstance(v, Saga) for v in items):
            return items
    raise LoadError(
        f"{target!r} is {type(value).__name__}, not a Saga or a list of them"
    )


class Definitions(NamedTuple):
    """What a module defines that has versions: sagas, workflow apps and
    choreographies (those of its event buses included). A named tuple: a
    dataclass costs ~1 ms to build, at every command's start."""

    sagas: list[Saga[Any]]
    workflows: list[WorkflowApp]
    choreographies: list[Choreography]

    def add(self, value: object) -> bool:
        """Keep ``value`` if it is one of those (or an event bus); False if not."""
        from sagakit.choreography import Choreography, EventBus
        from sagakit.definition.saga import Saga
        from sagakit.workflow import WorkflowApp

        if isinstance(value, Saga):
            self.sagas.append(value)
        elif isinstance(value, WorkflowApp):
            self.workflows.append(value)
        elif isinstance(value, Choreography):
            self.choreographies.append(value)
        elif isinstance(value, EventBus):
            self.choreographies.extend(value.declared.all())
        else:
            return False
        return True


def load_definitions(target: str) -> Definitions:
    """``pkg.mod`` -> every Saga, WorkflowApp, Choreography and EventBus (its
    choreographies) defined at module level; ``pkg.mod:name`` -> that one, or
    those of that list/tuple."""
    module, attr = _import(target)
    found = Definitions([], [], [])
    if not attr:
        kept = [found.add(v) for v in vars(module).values()]
        if not any(kept):
            raise LoadError(
                f"module {module.__name__!r} defines no Saga, WorkflowApp, "
                "Choreography or EventBus"
            )
        return found
    value = _attribute(module, attr)
    if found.add(value):
        return found
    if isinstance(value, Iterable) and not isinstance(value, (str, bytes)):
        items = list(value)
        if items and all([found.add(v) for v in items]):
            return found
    raise LoadError(
        f"{target!r} is {type(value).__name__}, not a Saga, WorkflowApp, "
        "Choreography or EventBus, or a list of them"
    )
