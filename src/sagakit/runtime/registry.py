"""Saga definitions by name and version.

Several versions of one saga can be registered side by side: new instances
start on the newest, and a stored instance is driven only by the definition
of the version it started on, with the same structural fingerprint. An
instance whose definition is missing or changed is not driven here; it is
reported as waiting (:meth:`Registry.reason`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sagakit.definition.saga import Saga
from sagakit.definition.versions import unavailable
from sagakit.errors import DefinitionError, DefinitionUnavailable, SagaError
from sagakit.ports.store import SagaRecord, definition_key

_NONE: dict[int, Saga[Any]] = {}


class Registry:
    """Saga definitions by name (the newest version: ``sagas``) and version."""

    def __init__(self, sagas: Iterable[Saga[Any]] = ()) -> None:
        self.sagas: dict[str, Saga[Any]] = {}
        self.versions: dict[str, dict[int, Saga[Any]]] = {}
        self._keys: frozenset[str] = frozenset()
        self.register(*sagas)

    def register(self, *sagas: Saga[Any]) -> None:
        """Register ``sagas`` and the sagas they run as sub-sagas."""
        for given in sagas:
            if not isinstance(given, Saga):
                raise SagaError(f"register() takes Saga definitions, got {given!r}")
            for saga in (given, *given.family):
                self._register(saga)

    def ensure(self, saga: Saga[Any]) -> None:
        """:meth:`register` ``saga``, at the cost of a look-up when it is
        registered already (with its family: they come in together)."""
        if self.versions.get(saga.name, _NONE).get(saga.version) is not saga:
            self.register(saga)

    def _register(self, saga: Saga[Any]) -> None:
        versions = self.versions.setdefault(saga.name, {})
        known = versions.get(saga.version)
        if known is saga:
            return
        if known is not None:
            raise DefinitionError(
                f"another saga named {saga.name!r} is already registered "
                f"as version {saga.version}; give a changed definition a "
                "new version"
            )
        versions[saga.version] = saga
        self.sagas[saga.name] = versions[max(versions)]
        self._keys = self._keys | {
            definition_key(saga.name, saga.version),
            definition_key(saga.name, saga.version, saga.fingerprint),
        }

    def definition(self, name: str) -> Saga[Any]:
        """The newest registered version of ``name``."""
        try:
            return self.sagas[name]
        except KeyError:
            raise SagaError(
                f"no saga named {name!r} is registered; known: {sorted(self.sagas)}"
            ) from None

    def definition_of(self, record: SagaRecord) -> Saga[Any]:
        """The definition ``record`` started on; ``DefinitionUnavailable`` if it
        is not registered here or changed shape (``SagaError`` for an unknown
        name, as before versions)."""
        if record.saga_name not in self.versions:
            self.definition(record.saga_name)  # the error of an unknown name
        reason = self.reason(record)
        if reason is not None:
            raise DefinitionUnavailable(reason)
        return self.versions[record.saga_name][record.definition_version]

    def reason(self, record: SagaRecord) -> str | None:
        """Why ``record`` cannot be driven with these definitions, or None."""
        return self.reason_for(
            record.saga_name, record.definition_version, record.fingerprint
        )

    def reason_for(
        self, name: str, version: int, fingerprint: str | None
    ) -> str | None:
        """Why an instance of ``name`` ``version`` with ``fingerprint`` cannot
        be driven with these definitions, or None."""
        versions = self.versions.get(name, {})
        saga = versions.get(version)
        registered = None if saga is None else saga.fingerprint
        return unavailable(name, version, fingerprint, registered, versions)

    def migration_target(self, name: str, version: int) -> Saga[Any] | None:
        """The newest registered definition of ``name`` that declares a
        migration from ``version``, if any."""
        found = [
            saga
            for saga in self.versions.get(name, {}).values()
            if version in saga.migrate_from
        ]
        return max(found, key=lambda saga: saga.version, default=None)

    def keys(self) -> frozenset[str]:
        """The definition keys driven here (see
        :func:`~sagakit.ports.store.definition_key`)."""
        return self._keys

    def names(self) -> list[str]:
        return list(self.sagas)
