"""The store contract: written once, subclassed per adapter.

``StoreContract`` runs every role's suite; a store that plays only some
roles subclasses those: :class:`SagaRepositoryContract`,
:class:`SagaHistoryContract`, :class:`SagaLeasesContract`,
:class:`OutboxContract`, :class:`InboxContract`, :class:`SagaQueriesContract`,
:class:`SagaLocksContract`, :class:`SagaSearchContract`.
Each asks for a ``store`` fixture (fresh, empty) and may override ``peer``
(a second connection to the same data, for races).
"""

from __future__ import annotations

from sagakit.testing.contracts.records import (
    FUTURE,
    PAST,
    StoreFixtures,
    commits,
    entry,
    make_record,
    message,
)
from sagakit.testing.contracts.store_history import SagaHistoryContract
from sagakit.testing.contracts.store_instances import (
    SagaLeasesContract,
    SagaRepositoryContract,
)
from sagakit.testing.contracts.store_locks import SagaLocksContract
from sagakit.testing.contracts.store_messages import InboxContract, OutboxContract
from sagakit.testing.contracts.store_queries import SagaQueriesContract
from sagakit.testing.contracts.store_search import SagaSearchContract
from sagakit.testing.contracts.store_versions import SagaVersionsContract

__all__ = [
    "FUTURE",
    "PAST",
    "InboxContract",
    "OutboxContract",
    "SagaHistoryContract",
    "SagaLeasesContract",
    "SagaLocksContract",
    "SagaQueriesContract",
    "SagaRepositoryContract",
    "SagaSearchContract",
    "SagaVersionsContract",
    "StoreContract",
    "StoreFixtures",
    "commits",
    "entry",
    "make_record",
    "message",
]


class StoreContract(
    SagaRepositoryContract,
    SagaHistoryContract,
    SagaLeasesContract,
    OutboxContract,
    InboxContract,
    SagaVersionsContract,
    SagaQueriesContract,
    SagaLocksContract,
    SagaSearchContract,
):
    """Subclass and provide a ``store`` fixture returning a fresh, empty store."""
