"""Contract suites for third-party stores and transports (they need pytest).

Subclass one in your own tests and give it the fixtures it asks for; every
test of the suite then runs against your adapter, as sagakit's own adapters
do::

    from sagakit.testing.contracts.store import StoreContract

    class TestMyStore(StoreContract):
        @pytest.fixture
        async def store(self):
            store = await MyStore.connect(...)
            yield store
            await store.close()

* :mod:`~sagakit.testing.contracts.store`: ``StoreContract`` (saga instances,
  history, leases, outbox, inbox), fixture ``store`` (and ``peer``, a second
  connection to the same database, for claim races);
* :mod:`~sagakit.testing.contracts.workflow_store`: ``WorkflowStoreContract``;
* :mod:`~sagakit.testing.contracts.event_store`: ``EventStoreContract``
  (choreography events, timeline, outbox);
* :mod:`~sagakit.testing.contracts.transport`: ``TransportContract``,
  fixture ``transport``.

The suites use pytest-asyncio in auto mode (``asyncio_mode = "auto"``).
"""

from __future__ import annotations
