"""sagakit inside host frameworks: :mod:`sagakit.integrations.fastapi` wires
the store, the orchestrator or a worker, a client for request handlers and
the dashboard into a FastAPI application."""

from __future__ import annotations
