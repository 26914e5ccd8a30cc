from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Index, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from hilo.db import Base
from hilo.models._types import BigIntPK, now_column


class AuditCheckpoint(Base):
    """A signed statement: workspace W's chain reached ``seq`` with hash ``chain``."""

    __tablename__ = "audit_checkpoints"
    __table_args__ = (Index("ix_audit_checkpoints_ws", "workspace_id", "seq"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    seq: Mapped[int] = mapped_column(BigInteger)
    chain: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = now_column()
