"""Migration helpers: APIs shaped like other saga libraries, run by sagakit.

- :mod:`sagakit.compat.saga_py`: ``Saga``, ``Action`` and ``SagaBuilder`` as
  in ``saga-py``;
- :mod:`sagakit.compat.py_saga`: ``Saga``, ``Step``, ``FuncStep`` and
  ``State`` as in ``py-saga`` (``pysaga``);
- :mod:`sagakit.compat.saga_framework`: ``BaseSaga``, ``AsyncSaga``,
  ``StatefulSaga`` and the Celery helpers of ``saga-framework``.
- :mod:`sagakit.compat.pg_saga`: ``Saga`` (steps that return the next
  step's call), ``SagaError``, ``SagaReturn`` and the log entries of
  ``pg-saga``, on :mod:`sagakit.workflow`.

They keep the call shapes of the originals so existing code can switch its
imports first and move to native :class:`~sagakit.Saga` definitions later
(see ``docs/migrating.md``). Where the originals misbehave, these follow
sagakit's engine; the differences are listed in each module's docstring.
"""

from __future__ import annotations
