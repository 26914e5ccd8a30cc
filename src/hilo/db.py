"""Engine, sessions and the transaction boundary.

Services never commit. Whoever owns the transaction (the request dependency, a job runner, the
CLI) commits, and only then are the callbacks queued with :func:`after_commit` run: jobs wake
their workers and events reach live listeners only for data that is really stored.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Session

from hilo.settings import normalise_database_url

log = logging.getLogger(__name__)


class Base(DeclarativeBase):
    """Declarative base of every table."""


def after_commit(session: AsyncSession | Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the session's transaction commits; drop it on rollback."""
    target = session.sync_session if isinstance(session, AsyncSession) else session
    target.info.setdefault("after_commit", []).append(callback)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    callbacks = session.info.pop("after_commit", [])
    for callback in callbacks:
        try:
            callback()
        except Exception:  # a failed notification must not undo a committed change
            log.exception("after-commit callback failed")


@event.listens_for(Session, "after_soft_rollback")
def _drop_after_commit(session: Session, previous_transaction: Any) -> None:
    session.info.pop("after_commit", None)


class Database:
    """One database: its engine and session factory."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = normalise_database_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        if self.is_sqlite:
            self.engine: AsyncEngine = create_async_engine(
                self.url, pool_size=pool_size, max_overflow=0, pool_timeout=60
            )
            _configure_sqlite(self.engine)
        else:
            self.engine = create_async_engine(
                self.url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
            )
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session whose work commits on success and rolls back on error."""
        async with self.sessionmaker() as session:
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()

    async def refresh_statistics(self) -> None:
        """SQLite: sample every index into ``sqlite_stat1`` for the query planner.

        Without statistics SQLite takes any indexed equality for a narrow one and reads a
        whole workspace through ``ix_*_workspace_id`` instead of a contact's or a
        conversation's rows (docs/benchmarks.md). Only new connections read the statistics,
        so the pool is reopened. PostgreSQL's autovacuum keeps its own.
        """
        if not self.is_sqlite:
            return
        async with self.engine.begin() as conn:
            await conn.exec_driver_sql("PRAGMA analysis_limit=1000")
            await conn.exec_driver_sql("ANALYZE")
        await self.engine.dispose()


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a 2xx means the row survives a crash of the process or of the machine.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # IMMEDIATE takes the write lock up front, so two writers queue on busy_timeout
        # instead of one failing with SQLITE_BUSY when it upgrades from a read.
        conn.exec_driver_sql("BEGIN IMMEDIATE")
