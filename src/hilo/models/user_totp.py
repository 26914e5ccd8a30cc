from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from hilo.db import Base
from hilo.models._types import UTCDateTime, now_column, workspace_fk


class UserTotp(Base):
    """A user's TOTP second factor: the secret (encrypted), and whether it is switched on.

    ``last_counter`` is the time step of the last accepted code, so a code works only once.
    """

    __tablename__ = "user_totp"

    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    workspace_id: Mapped[uuid.UUID] = workspace_fk()
    secret_encrypted: Mapped[str] = mapped_column(Text)
    enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_counter: Mapped[int | None] = mapped_column(BigInteger, default=None)
    created_at: Mapped[datetime] = now_column()
