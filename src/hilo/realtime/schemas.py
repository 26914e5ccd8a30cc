"""Live stream API shapes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class StreamTicketOut(BaseModel):
    """A short-lived ticket to open a stream where no bearer header can be sent."""

    ticket: str
    expires_at: datetime
