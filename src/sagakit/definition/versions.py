"""Why a stored instance cannot run on the definitions registered here.

Sagas, workflow apps and choreographies all number their definitions
(``version``, default 1) and fingerprint their shape. An instance (or a
choreography's event) records the version and fingerprint it started on and
runs only on that definition: a process that lacks the version, or has it
with another shape, leaves it alone and reports it with the reason this
module words, the same way for the three kinds.
"""

from __future__ import annotations

from collections.abc import Iterable

from sagakit.errors import DefinitionError


def unavailable(
    name: str,
    version: int,
    fingerprint: str | None,
    registered: str | None,
    have: Iterable[int],
) -> str | None:
    """Why an instance of ``name`` ``version`` with ``fingerprint`` (None:
    unknown, written before fingerprints were kept: the version is trusted)
    cannot run here, or None if it can.

    ``registered`` is the fingerprint of the version registered here (None
    if it is not registered) and ``have`` the versions of ``name`` that are.
    """
    if registered is None:
        versions = ", ".join(f"v{v}" for v in sorted(have)) or "none"
        return f"needs {name} v{version}, not registered here (have {versions})"
    if fingerprint is not None and fingerprint != registered:
        return (
            f"{name} v{version} changed shape since this instance started "
            f"(fingerprint {fingerprint}, registered {registered})"
        )
    return None


def check_version(what: str, version: object) -> int:
    """``version`` if it is an int >= 1, else a ``DefinitionError`` naming
    ``what`` (``saga 'order'``, ``workflow orders``...)."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise DefinitionError(
            f"{what}: version must be an integer >= 1, got {version!r}"
        )
    return version
