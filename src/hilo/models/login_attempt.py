from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from hilo.db import Base
from hilo.models._types import BigIntPK, now_column


class LoginAttempt(Base):
    """One sign-in attempt, for rate limiting across every API process.

    Like ``jobs`` it has no workspace: an attempt comes before anyone knows which workspace
    the e-mail belongs to. ``key`` is a SHA-256 (of the e-mail, the client address or the
    user of a second-factor step), so the table holds no address in the clear.
    """

    __tablename__ = "login_attempts"
    __table_args__ = (
        Index("ix_login_attempts_key", "key", "created_at"),
        Index("ix_login_attempts_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(64))
    succeeded: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = now_column()
