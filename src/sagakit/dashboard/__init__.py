"""A web dashboard over the saga store: list, inspect, retry, resume, cancel;
and, read-only, the instances of workflow-style sagas (``/workflows``).

Needs the ``dashboard`` extra (``pip install 'sagakit[dashboard]'``)::

    from sagakit.dashboard import create_app

    app = create_app(store, sagas=[trip_saga], token=os.environ["TOKEN"])

Pages are views over the store port; actions reuse the library calls the CLI
makes (``operator.request`` with ``hand_over=True``), so a worker runs what an
action sets in motion. ``sagakit dashboard`` serves it with uvicorn.
"""

from __future__ import annotations

from sagakit._extras import needs_extra

with needs_extra("the sagakit dashboard needs FastAPI and Jinja2", "dashboard"):
    import fastapi  # noqa: F401
    import jinja2  # noqa: F401

from sagakit.dashboard.app import create_app, status_counts

__all__ = ["create_app", "status_counts"]
