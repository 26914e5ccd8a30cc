"""Channel rules: creating channels, their credentials, and who they can reach."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hilo import events
from hilo.channels import consent, repository
from hilo.channels.base import ChannelContext
from hilo.channels.registry import adapter_for_new_channel, get_adapter
from hilo.clock import now
from hilo.crypto import decrypt_json, encrypt_json
from hilo.errors import Conflict, InvalidPayload
from hilo.events import Actor
from hilo.i18n import _
from hilo.models import Channel
from hilo.settings import get_settings


def context(channel: Channel) -> ChannelContext:
    """The channel as adapters see it, credentials decrypted."""
    return ChannelContext(
        id=channel.id,
        workspace_id=channel.workspace_id,
        type=channel.type,
        provider=channel.provider,
        config=channel.config,
        secrets=decrypt_json(channel.secrets_encrypted),
    )


def webhook_url(channel: Channel) -> str:
    """The address to paste into the provider's console."""
    return f"{get_settings().public_url.rstrip('/')}/webhooks/{channel.type}/{channel.id}"


def identity_scope(channel: Channel) -> str:
    """The scope of the channel's own sender ids (its id, or workspace-wide)."""
    return str(channel.id) if get_adapter(channel.type).identity_scope == "channel" else ""


async def get(session: AsyncSession, workspace_id: uuid.UUID, channel_id: uuid.UUID) -> Channel:
    """A channel of the workspace, or NotFound."""
    return await repository.get(session, workspace_id, channel_id)


async def do_create(
    session: AsyncSession,
    *,
    workspace_id: uuid.UUID,
    type: str,
    name: str,
    provider: str | None,
    config: dict[str, Any],
    actor: Actor,
) -> tuple[Channel, dict[str, Any]]:
    """Create a channel; returns it with its secrets (shown once, to the creator)."""
    adapter = adapter_for_new_channel(type)
    provider = provider or adapter.providers[0]
    if provider not in adapter.providers:
        raise InvalidPayload(
            _("Unknown provider for this channel. Known providers: {providers}."),
            code="unknown_provider",
            providers=", ".join(adapter.providers),
        )
    if not name.strip():
        raise InvalidPayload(_("The channel needs a name."), code="empty_name")
    setup = adapter.validate_config(provider, config)
    channel = Channel(
        workspace_id=workspace_id,
        type=type,
        provider=provider,
        name=name.strip(),
        config=setup.config,
        secrets_encrypted=encrypt_json(setup.secrets),
        created_at=now(),
    )
    session.add(channel)
    await session.flush()
    events.record(
        session,
        "channel.created",
        workspace_id=workspace_id,
        actor=actor,
        channel_id=channel.id,
        data={"type": type, "provider": provider},
    )
    return channel, setup.secrets


async def recipient(session: AsyncSession, channel: Channel, contact_id: uuid.UUID) -> str | None:
    """How this channel addresses the contact, or None if it cannot reach them."""
    adapter = get_adapter(channel.type)
    identity = await repository.recipient_identity(
        session,
        channel.workspace_id,
        contact_id=contact_id,
        kind=adapter.identity_kind,
        scope=identity_scope(channel),
    )
    return identity.value if identity else None


async def check_reachable(session: AsyncSession, channel: Channel, contact_id: uuid.UUID) -> None:
    """Refuse a reply on a channel that does not know the contact."""
    if not channel.active:
        raise Conflict(_("This channel is disabled."), code="channel_disabled")
    if await consent.is_opted_out(session, contact_id, channel.id):
        raise Conflict(_("The customer opted out of this channel."), code="contact_opted_out")
    if await recipient(session, channel, contact_id) is None:
        raise Conflict(
            _("The customer cannot be reached on this channel."), code="contact_not_reachable"
        )
