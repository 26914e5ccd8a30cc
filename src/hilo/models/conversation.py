from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from hilo.db import Base
from hilo.models._types import UTCDateTime, now_column, uuid_pk, workspace_fk


class Conversation(Base):
    """One continuous thread with a contact, across every channel they use."""

    __tablename__ = "conversations"
    __table_args__ = (
        Index("ix_conversations_inbox", "workspace_id", "status", "last_activity_at"),
        Index("ix_conversations_recent", "workspace_id", "last_activity_at"),
        Index("ix_conversations_contact", "contact_id", "status"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    workspace_id: Mapped[uuid.UUID] = workspace_fk()
    contact_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("contacts.id", ondelete="CASCADE")
    )
    status: Mapped[str] = mapped_column(String(16), default="open")
    priority: Mapped[str] = mapped_column(String(16), default="normal")
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL"), index=True, default=None
    )
    team_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("teams.id", ondelete="SET NULL"), index=True, default=None
    )
    snoozed_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # The channel the customer last wrote on: where replies go by default.
    last_channel_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("channels.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[datetime] = now_column()
    last_activity_at: Mapped[datetime] = now_column()
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
