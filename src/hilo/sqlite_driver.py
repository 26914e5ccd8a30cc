"""aiosqlite with one trip to its thread per statement.

aiosqlite runs each call of the ``sqlite3`` API on the connection's own thread and wakes the
event loop when it is done. SQLAlchemy's adapter makes four such trips for every statement
(open a cursor, execute, fetch, close) and one more to roll back a connection that goes back
to the pool, even when there is nothing to roll back. On a small machine a trip costs a few
tenths of a millisecond of CPU, far more than an indexed SQLite query, so a request that reads
two rows spent most of its time handing work between threads (docs/benchmarks.md).

Here a statement is one trip: the cursor is opened, executed, read to the end and closed on
the connection's thread, and the rows come back together. ``commit`` and ``rollback`` make no
trip when the connection holds no transaction. Everything else is aiosqlite's own.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import aiosqlite
from sqlalchemy import Uuid
from sqlalchemy.engine import Dialect

Statement = tuple[Any, list[Any], int, int | None]


def _run(conn: sqlite3.Connection, sql: str, parameters: Any, many: bool = False) -> Statement:
    cursor = conn.cursor()
    try:
        if many:
            cursor.executemany(sql, parameters)  # no rows: SQLAlchemy never reads them
        else:
            cursor.execute(sql, parameters)
        rows = cursor.fetchall() if cursor.description and not many else []
        return cursor.description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class Cursor:
    """A finished statement: its description and all its rows, read in one trip."""

    arraysize = 1

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self._rows: list[Any] = []
        self._next = 0

    async def execute(self, sql: str, parameters: Any = ()) -> Cursor:
        return await self._finish(sql, parameters, many=False)

    async def executemany(self, sql: str, parameters: Sequence[Any]) -> Cursor:
        return await self._finish(sql, parameters, many=True)

    async def _finish(self, sql: str, parameters: Any, *, many: bool) -> Cursor:
        conn = self._connection._conn
        done = await self._connection._execute(_run, conn, sql, parameters, many)
        self.description, self._rows, self.rowcount, self.lastrowid = done
        self._next = 0
        return self

    async def fetchone(self) -> Any:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        size = self.arraysize if size is None else size
        rows = self._rows[self._next : self._next + size]
        self._next += len(rows)
        return rows

    async def fetchall(self) -> list[Any]:
        rows = self._rows[self._next :]
        self._next = len(self._rows)
        return rows

    async def close(self) -> None:
        self._rows = []
        self._next = 0


class Connection(aiosqlite.Connection):
    """An aiosqlite connection whose statements each take one trip to its thread."""

    async def cursor(self) -> Cursor:  # type: ignore[override]
        return Cursor(self)

    async def commit(self) -> None:
        # Nothing to commit makes no trip (SQLAlchemy commits the read-only sessions too).
        if self._conn.in_transaction:
            await super().commit()

    async def rollback(self) -> None:
        # The pool rolls back every connection it takes back, most of them already ended.
        if self._conn.in_transaction:
            await super().rollback()

    async def run(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """``fn(sqlite3_connection)`` on the connection's thread, in one trip."""
        return await self._execute(fn, self._conn)


class FastUuid(Uuid[uuid.UUID]):
    """SQLite's ``Uuid`` (32 hex characters), read without ``uuid.UUID``'s string parsing:
    a page of messages holds over a thousand of them."""

    cache_ok = True

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        if not self.as_uuid:
            return super().result_processor(dialect, coltype)
        return _uuid_from_hex


_new = object.__new__
_set = object.__setattr__
_UNKNOWN = uuid.SafeUUID.unknown


def _uuid_from_hex(value: Any) -> uuid.UUID | None:
    if value is None:
        return None
    if isinstance(value, str) and len(value) == 32:
        # What uuid.UUID(int=...) does, less its argument checks (32 hex digits always fit).
        made = _new(uuid.UUID)
        _set(made, "int", int(value, 16))
        _set(made, "is_safe", _UNKNOWN)
        return made
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def creator(*args: Any, **kwargs: Any) -> Callable[[], Any]:
    """SQLAlchemy's ``async_creator``: a :class:`Connection` to what ``sqlite3.connect``
    would open with ``args`` and ``kwargs`` (the dialect's own connect arguments)."""

    async def connect() -> Connection:
        connection = Connection(lambda: sqlite3.connect(*args, **kwargs), iter_chunk_size=64)
        connection._thread.daemon = True  # as SQLAlchemy does: a lost one must not hang exit
        await connection
        return connection

    return connect
