"""The one table the durable baseline writes to, kept outside Hilo's schema."""

from __future__ import annotations

import asyncio
from datetime import datetime

from sqlalchemy import Column, LargeBinary, MetaData, Table
from sqlalchemy.ext.asyncio import AsyncSession

from hilo.db import Database
from hilo.models._types import BigIntPK, UTCDateTime

# Not in ``Base.metadata``: the migrations and the schema-drift test never see it; it exists
# only in databases a benchmark ran against.
metadata = MetaData()
raw_bodies = Table(
    "bench_raw_bodies",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("received_at", UTCDateTime, nullable=False),
    Column("body", LargeBinary, nullable=False),
)

_created = False
_lock = asyncio.Lock()


async def ensure_table(db: Database) -> None:
    """Create the baseline's table once per process (one creator even under load)."""
    global _created
    if _created:
        return
    async with _lock:
        if not _created:
            async with db.engine.begin() as conn:
                await conn.run_sync(metadata.create_all)
            _created = True


async def insert_raw(session: AsyncSession, *, body: bytes, received_at: datetime) -> None:
    """Store a raw body in the caller's transaction."""
    await session.execute(raw_bodies.insert().values(body=body, received_at=received_at))
