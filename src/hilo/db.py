"""Engine, sessions and the transaction boundary.

Services never commit. Whoever owns the transaction (the request dependency, a job runner, the
CLI) commits, and only then are the callbacks queued with :func:`after_commit` run: jobs wake
their workers and events reach live listeners only for data that is really stored.

Two kinds of transaction: :meth:`Database.transaction` may write, :meth:`Database.read` only
reads. SQLite has one writer at a time; its writers queue in the process on one lock, in the
order they asked (not by polling the file lock), and its readers take no lock at all: in WAL
mode a reader sees the last commit and neither waits for the writer nor holds it up.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

from sqlalchemy import Uuid, event, make_url
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.util import await_only

from hilo import sqlite_driver
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
            url_ = make_url(self.url)
            args, kwargs = url_.get_dialect()().create_connect_args(url_)
            self.engine: AsyncEngine = create_async_engine(
                self.url,
                async_creator=sqlite_driver.creator(*args, **kwargs),
                pool_size=pool_size,
                max_overflow=0,
                pool_timeout=60,
            )
            _configure_sqlite(self.engine)
        else:
            self.engine = create_async_engine(
                self.url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
            )
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        self._reader = async_sessionmaker(
            self.engine.execution_options(hilo_read_only=True), expire_on_commit=False
        )
        # SQLite: this process's writers take turns here (see the module's docstring); one
        # lock per event loop, as a CLI command or a test may run several loops in turn.
        self._writers: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}
        self._writer_task: asyncio.Task[Any] | None = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session whose work commits on success and rolls back on error."""
        if not self.is_sqlite:
            async with self._session(self.sessionmaker) as session:
                yield session
            return
        task = asyncio.current_task()
        if task is not None and self._writer_task is task:
            # It would wait for itself: a bug, made loud rather than a hang.
            raise RuntimeError("a write transaction inside another one in the same task")
        loop = asyncio.get_running_loop()
        writer = self._writers.get(loop)
        if writer is None:
            for old in [old for old in self._writers if old.is_closed()]:
                del self._writers[old]
            writer = self._writers[loop] = asyncio.Lock()
        async with writer:
            self._writer_task = task
            try:
                async with self._session(self.sessionmaker) as session:
                    yield session
            finally:
                self._writer_task = None

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session that only reads; on SQLite it neither waits for writers nor blocks them.

        SQLite refuses a write in it (``PRAGMA query_only``), so a read path that starts
        writing fails in the tests instead of racing the writers; a read that must note
        something (a token's last use) writes it through :func:`writable`.
        """
        async with self._session(self._reader, read_only=True) as session:
            yield session

    @asynccontextmanager
    async def _session(
        self, factory: async_sessionmaker[AsyncSession], *, read_only: bool = False
    ) -> AsyncIterator[AsyncSession]:
        async with factory() as session:
            session.info["hilo_db"] = self
            session.info["hilo_read_only"] = read_only
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


T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """Writes of concurrent callers committed together: one transaction, one ``fsync``.

    :meth:`submit` returns once the transaction holding the caller's items has committed,
    so a caller that answers afterwards answers only for stored data. Alone, a caller is
    written at once; while a transaction runs, the next callers queue and go in the next
    one together. If a shared transaction fails, each caller's items are written again in a
    transaction of their own, so one bad item fails only its own caller.
    """

    def __init__(
        self,
        db: Database,
        write: Callable[[AsyncSession, Sequence[T]], Awaitable[list[R]]],
        *,
        max_items: int = 256,
    ) -> None:
        self.db = db
        self.write = write
        self.max_items = max_items
        self._pending: list[tuple[Sequence[T], asyncio.Future[list[R]]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, items: Sequence[T]) -> list[R]:
        """Store ``items`` (one result each), committed when this returns."""
        if not items:
            return []
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[R]] = loop.create_future()
        self._pending.append((items, done))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._drain())
        return await done

    async def _drain(self) -> None:
        while self._pending:
            batch: list[tuple[Sequence[T], asyncio.Future[list[R]]]] = []
            count = 0
            while self._pending and (
                not batch or count + len(self._pending[0][0]) <= self.max_items
            ):
                entry = self._pending.pop(0)
                batch.append(entry)
                count += len(entry[0])
            try:
                async with self.db.transaction() as session:
                    results = await self.write(session, [i for items, _ in batch for i in items])
            except Exception:
                if len(batch) == 1:
                    _settle(batch[0][1], error=sys.exc_info()[1])
                    continue
                log.info("a shared write of %d callers failed; writing each alone", len(batch))
                for items, done in batch:
                    try:
                        async with self.db.transaction() as session:
                            _settle(done, await self.write(session, items))
                    except Exception as exc:
                        _settle(done, error=exc)
                continue
            start = 0
            for items, done in batch:
                _settle(done, results[start : start + len(items)])
                start += len(items)


def _settle(
    done: asyncio.Future[Any], result: Any = None, *, error: BaseException | None = None
) -> None:
    if done.done():  # the caller went away (a client that hung up)
        return
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(result)


def keep(session: AsyncSession, *objects: object) -> None:
    """Hold ``objects`` for the session's life: the session keeps only weak references, and
    a batch that looks the same row up again should find it without a query."""
    session.info.setdefault("hilo_kept", []).extend(objects)


@asynccontextmanager
async def writable(session: AsyncSession) -> AsyncIterator[AsyncSession]:
    """Where a change made along the way goes: ``session`` itself if it may write, else a
    short write transaction of its own, committed before the read goes on.

    Write with statements (``update(...)``), not by changing objects loaded by ``session``.
    """
    database: Database | None = session.info.get("hilo_db")
    if database is None or not session.info.get("hilo_read_only"):
        yield session
        return
    async with database.transaction() as other:
        yield other


def _begin_reading(conn: Any) -> None:
    conn.execute("PRAGMA query_only=ON")
    conn.execute("BEGIN")


def _begin_writing(conn: Any) -> None:
    conn.execute("PRAGMA query_only=OFF")
    conn.execute("BEGIN IMMEDIATE")


def _configure_sqlite(engine: AsyncEngine) -> None:
    dialect = engine.sync_engine.dialect
    dialect.colspecs = {**dialect.colspecs, Uuid: sqlite_driver.FastUuid}

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
        # IMMEDIATE takes the write lock up front, so a writer of another process (the CLI)
        # waits on busy_timeout instead of failing with SQLITE_BUSY when it upgrades from a
        # read; this process's writers have already queued on Database._writer. A reader
        # takes no lock and may not write. Both statements go in one trip to the driver.
        read_only = bool(conn.get_execution_options().get("hilo_read_only"))
        driver: sqlite_driver.Connection = conn.connection.driver_connection  # type: ignore[assignment]
        await_only(driver.run(_begin_reading if read_only else _begin_writing))
