"""Celery helpers, as ``saga_framework.celery_utils``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from sagakit._extras import needs_extra

with needs_extra("the saga-framework Celery helpers need celery", "compat"):
    from celery.exceptions import MaxRetriesExceededError
    from celery.signals import task_postrun

F = TypeVar("F", bound=Callable[..., Any])


def auto_retry_then_reraise(
    max_retries: int = 3, **retry_kwargs: Any
) -> Callable[[F], F]:
    """Retry the (bound) Celery task up to ``max_retries`` times through
    ``task.retry``, then re-raise the task's own exception; put it below
    ``@app.task(bind=True)``."""

    def inner(func: F) -> F:
        @functools.wraps(func)
        def wrapper(celery_task: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return func(celery_task, *args, **kwargs)
            except Exception as exc:
                try:
                    raise celery_task.retry(
                        exc=exc, max_retries=max_retries, **retry_kwargs
                    )
                except MaxRetriesExceededError:
                    raise exc  # noqa: B904 - the task's own error, as is

        return wrapper  # type: ignore[return-value]

    return inner


def close_sqlalchemy_db_connection_after_celery_task_ends(
    sqlalchemy_session: Any,
) -> None:
    """Call ``sqlalchemy_session.remove()`` (a ``scoped_session``) after every
    task this process runs."""

    def close_session(*args: Any, **kwargs: Any) -> None:
        sqlalchemy_session.remove()

    # strongly: saga-framework's receiver was weakly held and vanished at once
    task_postrun.connect(close_session, weak=False)


__all__ = [
    "auto_retry_then_reraise",
    "close_sqlalchemy_db_connection_after_celery_task_ends",
]
