"""A saga state table and repository for SQLAlchemy 2 (saga-framework's example).

::

    class Base(DeclarativeBase): ...

    class CreateOrderSagaState(SagaStateMixin, Base):
        __tablename__ = "create_order_saga_state"
        order_id: Mapped[int | None]

    repository = SQLAlchemySagaStateRepository(sessionmaker(engine),
                                               CreateOrderSagaState)
    state = repository.create(order_id=42)      # status "not_started"
    CreateOrderSaga(repository, celery_app, state.id).execute()

Every call runs in its own transaction and returns a detached, loaded row.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from sagakit._extras import needs_extra
from sagakit.compat.saga_framework.base_saga import BaseStep
from sagakit.compat.saga_framework.stateful_saga import AbstractSagaStateRepository
from sagakit.errors import SagaNotFound, StoreError

with needs_extra("the SQLAlchemy saga state repository needs sqlalchemy>=2", "compat"):
    from sqlalchemy import JSON, TIMESTAMP, String, func
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.orm import Mapped, Session, mapped_column


class SagaStateMixin:
    """The columns every saga state row has; add the saga's own fields."""

    id: Mapped[int] = mapped_column(primary_key=True)
    last_message_id: Mapped[str | None] = mapped_column(String, default=None)
    created_at: Mapped[datetime.datetime] = mapped_column(
        TIMESTAMP(timezone=False), default=func.now(), nullable=False
    )
    updated_at: Mapped[datetime.datetime] = mapped_column(
        TIMESTAMP(timezone=False),
        default=func.now(),
        onupdate=func.now(),
        nullable=False,
    )
    status: Mapped[str] = mapped_column(String, default="not_started")
    failed_step: Mapped[str | None] = mapped_column(String, default=None)
    failed_at: Mapped[datetime.datetime | None] = mapped_column(
        TIMESTAMP(timezone=False), default=None
    )
    failure_details: Mapped[Any] = mapped_column(JSON, default=None, nullable=True)


M = TypeVar("M", bound=SagaStateMixin)


class SQLAlchemySagaStateRepository(AbstractSagaStateRepository, Generic[M]):
    """Reads and writes ``model`` rows; ``session_factory`` is a ``sessionmaker``."""

    def __init__(self, session_factory: Callable[[], Session], model: type[M]) -> None:
        self.session_factory = session_factory
        self.model = model

    @contextmanager
    def _session(self, failing: str) -> Iterator[Session]:
        """A session for the block; a SQLAlchemy error in it becomes
        ``StoreError("<failing>: <error>")``."""
        try:
            with self.session_factory() as session:
                yield session
        except SQLAlchemyError as exc:
            raise StoreError(f"{failing}: {exc}") from exc

    @staticmethod
    def _commit(session: Session, row: M) -> M:
        session.commit()
        session.refresh(row)
        return row

    def create(self, **fields: Any) -> M:
        """Insert a new row (status ``not_started``) and return it."""
        with self._session(f"cannot create a {self.model.__name__}") as session:
            row = self.model(**fields)
            session.add(row)
            return self._commit(session, row)

    def _load(self, session: Session, saga_id: Any) -> M:
        row = session.get(self.model, saga_id)
        if row is None:
            raise SagaNotFound(f"saga {saga_id}: no {self.model.__name__} row")
        return row

    def get_saga_state_by_id(self, saga_id: Any) -> M:
        with self._session(f"saga {saga_id}: cannot read its state") as session:
            return self._load(session, saga_id)

    def update(self, saga_id: Any, **fields_to_update: Any) -> M:
        with self._session(f"saga {saga_id}: cannot update its state") as session:
            row = self._load(session, saga_id)
            for name, value in fields_to_update.items():
                if not hasattr(self.model, name):
                    raise AttributeError(
                        f"{self.model.__name__} has no column {name!r}"
                    )
                setattr(row, name, value)
            return self._commit(session, row)

    def update_status(self, saga_id: Any, status: str) -> M:
        return self.update(saga_id, status=status)

    def on_step_failure(
        self,
        saga_id: Any,
        failed_step: BaseStep,
        initial_failure_payload: dict[str, Any],
    ) -> M:
        return self.update(
            saga_id,
            failed_step=failed_step.name,
            failed_at=datetime.datetime.now(datetime.UTC).replace(tzinfo=None),
            failure_details=initial_failure_payload,
        )


__all__ = ["SQLAlchemySagaStateRepository", "SagaStateMixin"]
