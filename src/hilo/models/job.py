from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from hilo.db import Base
from hilo.models._types import BigIntPK, JSONType, UTCDateTime, now_column


class Job(Base):
    """A durable unit of work, written in the transaction of the change that caused it."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_due", "status", "run_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    workspace_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # queued -> running -> done | failed; a running job whose lease expired is taken again.
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(default=0)
    run_at: Mapped[datetime] = now_column()
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    locked_by: Mapped[str | None] = mapped_column(String(64), default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    dedup_key: Mapped[str | None] = mapped_column(String(255), unique=True, default=None)
    created_at: Mapped[datetime] = now_column()
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
