from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hilo.db import Base
from hilo.models._types import now_column, uuid_pk, workspace_fk


class Team(Base):
    """A group of agents that conversations can be routed to (billing, roadside...)."""

    __tablename__ = "teams"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    workspace_id: Mapped[uuid.UUID] = workspace_fk()
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = now_column()
