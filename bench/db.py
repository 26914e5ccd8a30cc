"""Straight queries on a benchmark database (SQLite file or PostgreSQL), outside the server."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import uuid
from typing import Any


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def plain_pg(url: str) -> str:
    """A PostgreSQL URL asyncpg accepts."""
    return url.replace("postgresql+asyncpg://", "postgresql://")


def _pg_sql(sql: str) -> str:
    counter = iter(range(1, 1000))
    return re.sub(r"\?", lambda _m: f"${next(counter)}", sql)


def _sqlite_param(value: Any) -> Any:
    return value.hex if isinstance(value, uuid.UUID) else value


def fetch(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of one query written with ``?`` placeholders (uuid parameters on both)."""
    if is_sqlite(url):
        conn = sqlite3.connect(url.split(":///", 1)[1])
        try:
            conn.execute("PRAGMA busy_timeout=30000")
            return list(conn.execute(sql, [_sqlite_param(p) for p in params]).fetchall())
        finally:
            conn.close()
    return asyncio.run(_pg_fetch(url, _pg_sql(sql), params))


async def _pg_fetch(url: str, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    import asyncpg

    conn = await asyncpg.connect(plain_pg(url))
    try:
        return [tuple(r) for r in await conn.fetch(sql, *params)]
    finally:
        await conn.close()


def as_uuid(value: Any) -> uuid.UUID:
    """A UUID column's value (hex text on SQLite, uuid on PostgreSQL)."""
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def durability(url: str) -> dict[str, str]:
    """The settings that decide what an acknowledged write survives, as the server runs them."""
    if is_sqlite(url):
        # The server's own connection set-up (hilo.db) applied to a connection of ours.
        from sqlalchemy import text

        from hilo.db import Database

        async def read() -> dict[str, str]:
            db = Database(url, pool_size=1)
            try:
                async with db.engine.connect() as conn:
                    mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar()
                    sync = (await conn.execute(text("PRAGMA synchronous"))).scalar()
            finally:
                await db.dispose()
            names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
            return {"journal_mode": str(mode).upper(), "synchronous": names.get(int(sync or 0), "")}

        return asyncio.run(read())
    rows = fetch(
        url,
        "SELECT name, setting FROM pg_settings WHERE name IN "
        "('synchronous_commit', 'fsync', 'wal_sync_method', 'full_page_writes', "
        "'shared_buffers', 'wal_level')",
    )
    settings = {str(name): str(value) for name, value in rows}
    if "shared_buffers" in settings:
        settings["shared_buffers"] = f"{int(settings['shared_buffers']) * 8 // 1024} MB"
    return settings
