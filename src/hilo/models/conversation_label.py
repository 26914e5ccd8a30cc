from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from hilo.db import Base
from hilo.models._types import workspace_fk


class ConversationLabel(Base):
    """A label on a conversation."""

    __tablename__ = "conversation_labels"
    __table_args__ = (Index("ix_conversation_labels_label", "workspace_id", "label"),)

    conversation_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True
    )
    label: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace_id: Mapped[uuid.UUID] = workspace_fk()
