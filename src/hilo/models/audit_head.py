from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from hilo.db import Base
from hilo.models._types import now_column


class AuditHead(Base):
    """Where the sealer left each workspace's chain. Only the sealer locks this row."""

    __tablename__ = "audit_heads"

    workspace_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    chain: Mapped[str] = mapped_column(String(64), default="0" * 64)
    updated_at: Mapped[datetime] = now_column()
