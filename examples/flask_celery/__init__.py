"""An order service in Flask whose saga's steps run as Celery tasks: sagakit's
native API (``Saga``, ``Remote``, ``SagaClient``, ``Worker``, ``Envelope``)
on Celery's wire format. See README.md in this directory.
"""

from __future__ import annotations
