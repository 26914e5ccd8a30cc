"""Call API shapes."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field


class CallIn(BaseModel):
    """A call an agent made or took outside Hilo, logged in the conversation."""

    direction: Literal["outbound", "inbound"] = "outbound"
    duration_seconds: int = Field(ge=0, le=86400)
    outcome: Literal["answered", "no_answer", "busy", "voicemail", "failed"] = "answered"
    # What was said or agreed; shown in the thread, never sent to the customer.
    notes: str = Field(default="", max_length=65536)
    # The phone line used (a voice channel); the call is on no channel when left out.
    channel_id: uuid.UUID | None = None
    started_at: AwareDatetime | None = None
