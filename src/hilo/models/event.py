from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, String, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from hilo.db import Base
from hilo.models._types import BigIntPK, JSONType, now_column


class Event(Base):
    """One entry of the append-only event log.

    Written in the transaction of the change. ``seq``, ``digest`` and ``chain`` stay empty
    until the sealer chains the event after commit (see ``hilo.audit``), so ingest never
    waits on a chain head.
    """

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_workspace", "workspace_id", "id"),
        Index("ix_events_conversation", "conversation_id", "id"),
        Index("ix_events_seq", "workspace_id", "seq", unique=True),
        Index(
            "ix_events_unsealed",
            "workspace_id",
            "id",
            postgresql_where=text("seq IS NULL"),
            sqlite_where=text("seq IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    type: Mapped[str] = mapped_column(String(64))
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str | None] = mapped_column(String(64), default=None)
    channel_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    conversation_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    contact_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    message_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = now_column()
    seq: Mapped[int | None] = mapped_column(BigInteger, default=None)
    digest: Mapped[str | None] = mapped_column(String(64), default=None)
    chain: Mapped[str | None] = mapped_column(String(64), default=None)
    # True once a person's data in ``data`` was erased; the digest still chains it.
    redacted: Mapped[bool] = mapped_column(default=False)
