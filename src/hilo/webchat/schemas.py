"""Shapes of the visitor-facing web chat API (the widget's side, not the agents')."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hilo.channels.webchat import MAX_TEXT


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        # PostgreSQL stores no NUL in text: refused here (422), not a 500 at the insert.
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("NUL character")
        return value


class SessionIn(_In):
    """A page load: the stored visitor token, and who the site says the visitor is."""

    token: str | None = Field(default=None, max_length=200)
    user_id: str | None = Field(default=None, min_length=1, max_length=255)
    user_hash: str | None = Field(default=None, max_length=128)
    email: str | None = Field(default=None, max_length=320)
    email_hash: str | None = Field(default=None, max_length=128)
    phone: str | None = Field(default=None, max_length=64)
    phone_hash: str | None = Field(default=None, max_length=128)
    name: str | None = Field(default=None, max_length=200)
    locale: str | None = Field(default=None, max_length=16)


class WidgetConfig(BaseModel):
    title: str
    color: str
    locale: str


class SessionOut(BaseModel):
    token: str
    visitor_id: uuid.UUID
    identified: bool
    email: str | None
    email_verified: bool
    config: WidgetConfig


class VisitorMessageIn(_In):
    client_message_id: str = Field(min_length=1, max_length=64)
    text: str = Field(min_length=1, max_length=MAX_TEXT)
    page_url: str | None = Field(default=None, max_length=2000)


class SendOut(BaseModel):
    message_id: uuid.UUID
    client_message_id: str
    duplicate: bool


class VisitorMessage(BaseModel):
    """A message as the visitor sees it: no notes, no internal fields."""

    id: uuid.UUID
    client_message_id: str | None
    sender: Literal["visitor", "agent", "bot", "system"]
    text: str
    status: str
    created_at: datetime


class MessagesOut(BaseModel):
    """The visible window of the visitor's conversation, and a state to poll against."""

    messages: list[VisitorMessage]
    state: str
    changed: bool = True


class SeenIn(_In):
    message_ids: list[uuid.UUID] = Field(min_length=1, max_length=100)
    status: Literal["delivered", "read"] = "read"


class SeenOut(BaseModel):
    acknowledged: int


class EmailIn(_In):
    email: str = Field(min_length=3, max_length=320)


class EmailOut(BaseModel):
    email: str
    email_verified: bool
