"""``sagakit_lifespan``'s arguments, checked when the app is built: a bad
one fails at import with a sentence that names it, not at the first request.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sagakit.adapters.store.database import is_server, sqlite_path
from sagakit.choreography.bus import EventBus
from sagakit.definition.saga import Saga
from sagakit.definition.subsaga import has_remote_steps
from sagakit.errors import SagaError, StoreError
from sagakit.ports.store import SagaStore
from sagakit.ports.transport import Transport

RUNS = ("orchestrator", "worker", None)
_STORE_METHODS = ("get", "history", "close")
_TRANSPORT_METHODS = ("publish", "consume", "close")
_TRANSPORT_SCHEMES = (
    "memory",
    "amqp",
    "amqps",
    "redis",
    "rediss",
    "redis+cluster",
    "rediss+cluster",
    "nats",
    "nats+tls",
    "celery+amqp",
    "celery+amqps",
    "celery+redis",
    "celery+rediss",
)


def _fail(message: str) -> SagaError:
    return SagaError(f"sagakit_lifespan: {message}")


def _offers(value: object, methods: Iterable[str]) -> bool:
    return all(callable(getattr(value, m, None)) for m in methods)


def finite(name: str, value: object, *, zero: bool = False) -> float:
    """``value`` if it is a finite number > 0 (>= 0 with ``zero``)."""
    number = value if isinstance(value, int | float) else math.nan
    if isinstance(value, bool):
        number = math.nan
    if math.isfinite(number) and (number > 0 or (zero and number == 0)):
        return float(number)
    floor = ">= 0" if zero else "> 0"
    raise _fail(f"{name} must be a finite number {floor} of seconds, got {value!r}")


def check_store_url(url: str) -> str:
    """``url`` if sagakit can open it (the driver is checked at startup)."""
    if not isinstance(url, str) or not url.strip():
        raise _fail(f"store must be a database URL or a store object, got {url!r}")
    if not (is_server(url) or url == "memory://"):
        try:
            sqlite_path(url)
        except StoreError as exc:
            raise _fail(
                f"{exc}: use postgresql://, mysql://, sqlite:///FILE or memory://"
            ) from exc
    return url


def check_transport_url(url: str) -> str:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in _TRANSPORT_SCHEMES:
        shown = url.rsplit("@", maxsplit=1)[-1]
        raise _fail(
            f"unsupported transport URL {shown!r}: use amqp://, redis://, "
            "nats://, celery+amqp://, celery+redis:// or memory://"
        )
    return url


def _registered(sagas: object) -> dict[str, Saga[Any]]:
    if isinstance(sagas, Saga | str) or not isinstance(sagas, Iterable):
        raise _fail(f"sagas must be a list of Saga definitions, got {sagas!r}")
    found: dict[str, Saga[Any]] = {}
    for saga in sagas:
        if not isinstance(saga, Saga):
            raise _fail(f"sagas must hold Saga definitions, got {saga!r}")
        if saga.name in found and found[saga.name] is not saga:
            raise _fail(f"two sagas are named {saga.name!r}")
        found[saga.name] = saga
    return found


@dataclass(frozen=True, slots=True)
class Settings:
    """What the lifespan opens and runs (see ``sagakit_lifespan``)."""

    sagas: dict[str, Saga[Any]]
    run: str | None
    store_url: str | None = None
    store_object: SagaStore | None = None
    migrate: bool = False
    transport_url: str | None = None
    transport_object: Transport | None = None
    bus: EventBus | None = None
    watch: float | None = None
    drain_timeout: float = 30.0
    orchestrator: dict[str, Any] = field(default_factory=dict)
    worker: dict[str, Any] = field(default_factory=dict)

    def needs_transport(self) -> str | None:
        """Why this app cannot start without a transport (None: it can)."""
        if self.bus is not None:
            return f"the event bus {self.bus.service!r} sends events"
        if self.run is not None:
            for name, saga in sorted(self.sagas.items()):
                if has_remote_steps(saga):
                    return f"saga {name!r} has remote steps"
        return None

    @classmethod
    def checked(
        cls,
        *,
        store: str | SagaStore | None,
        sagas: Iterable[Saga[Any]],
        migrate: bool,
        run: str | None,
        transport: str | Transport | None,
        bus: EventBus | None,
        watch: float | None,
        drain_timeout: float,
        lease: float | None,
        worker_id: str | None,
        max_active: int,
        reply_queue: str,
    ) -> Settings:
        if run not in RUNS:
            raise _fail(f"run must be 'orchestrator', 'worker' or None, got {run!r}")
        if not isinstance(migrate, bool):
            raise _fail(f"migrate must be True or False, got {migrate!r}")
        store_url, store_object = None, None
        if store is None or isinstance(store, str):
            store_url = None if store is None else check_store_url(store)
        elif _offers(store, _STORE_METHODS):
            store_object = store
            if migrate:
                raise _fail(
                    "migrate=True needs a database URL: a store object you "
                    "opened is migrated when you open it"
                )
        else:
            raise _fail(
                f"store must be a database URL or a store object, got {store!r}"
            )
        if run is None and store_url == "memory://":
            raise _fail(
                "a memory:// store with run=None: no other process can see it, "
                "so nothing would ever run the sagas; use run='orchestrator'"
            )
        transport_url, transport_object = None, None
        if isinstance(transport, str):
            transport_url = check_transport_url(transport)
        elif transport is not None:
            if not _offers(transport, _TRANSPORT_METHODS):
                raise _fail(
                    f"transport must be a URL or a transport object, got {transport!r}"
                )
            transport_object = transport
        registered = _registered(sagas)
        if run is not None and not registered and bus is None:
            raise _fail(
                f"run={run!r} with no sagas: pass sagas=[...] (or run=None for "
                "an app that only reads the store)"
            )
        if bus is not None and not isinstance(bus, EventBus):
            raise _fail(f"bus must be an EventBus, got {bus!r}")
        if watch is not None:
            if bus is None:
                raise _fail("watch is the event bus's stalled check: pass bus= too")
            watch = finite("watch", watch)
        if not isinstance(max_active, int) or isinstance(max_active, bool):
            raise _fail(f"max_active must be an int >= 1, got {max_active!r}")
        if max_active < 1:
            raise _fail(f"max_active must be an int >= 1, got {max_active!r}")
        if not isinstance(reply_queue, str) or not reply_queue:
            raise _fail(f"reply_queue must be a queue name, got {reply_queue!r}")
        common: dict[str, Any] = {"worker_id": worker_id, "reply_queue": reply_queue}
        if lease is not None:
            common["lease"] = finite("lease", lease)
        return cls(
            sagas=registered,
            run=run,
            store_url=store_url,
            store_object=store_object,
            migrate=migrate,
            transport_url=transport_url,
            transport_object=transport_object,
            bus=bus,
            watch=watch,
            drain_timeout=finite("drain_timeout", drain_timeout, zero=True),
            orchestrator=common,
            worker={**common, "max_active": max_active},
        )
