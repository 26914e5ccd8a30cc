"""Channel API shapes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from hilo.channels.base import MessageTemplate
from hilo.models import Channel


class ChannelIn(BaseModel):
    type: str = Field(min_length=1, max_length=32)
    name: str = Field(min_length=1, max_length=200)
    provider: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)


class ChannelOut(BaseModel):
    id: uuid.UUID
    type: str
    provider: str
    name: str
    config: dict[str, Any]
    active: bool
    webhook_url: str
    created_at: datetime

    @classmethod
    def build(cls, channel: Channel, webhook_url: str) -> ChannelOut:
        return cls(
            id=channel.id,
            type=channel.type,
            provider=channel.provider,
            name=channel.name,
            config=channel.config,
            active=channel.active,
            webhook_url=webhook_url,
            created_at=channel.created_at,
        )


class ChannelCreated(ChannelOut):
    """Returned once, at creation: the only time the secret is shown."""

    secret: str | None
    secrets: dict[str, Any]


class ChannelList(BaseModel):
    items: list[ChannelOut]
    next_cursor: str | None = None


class TemplateOut(BaseModel):
    name: str
    language: str
    body: str
    params: int

    @classmethod
    def build(cls, template: MessageTemplate) -> TemplateOut:
        return cls(
            name=template.name,
            language=template.language,
            body=template.body,
            params=template.params,
        )


class TemplateList(BaseModel):
    items: list[TemplateOut]
