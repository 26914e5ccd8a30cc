"""Channel rules: creating channels, their credentials, and who they can reach."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hilo import events
from hilo.channels import consent, repository
from hilo.channels.base import (
    CarriesNoText,
    ChannelAdapter,
    ChannelContext,
    ChecksReplies,
    HasTemplates,
    InboundItem,
    MessageTemplate,
    RawRequest,
    ReplyDraft,
    RoutesByAccount,
)
from hilo.channels.registry import adapter_for_new_channel, get_adapter
from hilo.clock import now
from hilo.crypto import decrypt_json, encrypt_json
from hilo.db import Database
from hilo.errors import Conflict, HiloError, InvalidPayload
from hilo.events import Actor
from hilo.i18n import _
from hilo.jobs.service import enqueue
from hilo.models import Channel
from hilo.settings import get_settings

log = logging.getLogger(__name__)


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


# Every delivery names its channel; channels do not change once created, so each process keeps
# the ones it has seen, credentials decrypted, for a short while: a change made straight in
# the database reaches the webhooks within this time.
WEBHOOK_CACHE_SECONDS = 10.0
_webhook_channels: dict[uuid.UUID, tuple[float, Channel, ChannelContext]] = {}


async def for_webhook(db: Database, channel_id: uuid.UUID) -> tuple[Channel, ChannelContext] | None:
    """The channel a webhook names, with its credentials; None if there is no such channel."""
    moment = time.monotonic()
    cached = _webhook_channels.get(channel_id)
    if cached is not None and cached[0] > moment:
        return cached[1], cached[2]
    async with db.read() as session:
        channel = await repository.get_for_webhook(session, channel_id)
    if channel is None:
        return None  # not kept: the channel may be created by another process in a moment
    found = (channel, context(channel))
    _webhook_channels[channel_id] = (moment + WEBHOOK_CACHE_SECONDS, *found)
    return found


def webhook_url(channel: Channel) -> str:
    """The address to paste into the provider's console."""
    return f"{get_settings().public_url.rstrip('/')}/webhooks/{channel.type}/{channel.id}"


def carries_text(channel: Channel) -> bool:
    """Whether the channel can deliver a written reply."""
    return not isinstance(get_adapter(channel.type), CarriesNoText)


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
    for job_name in setup.jobs:
        enqueue(session, job_name, {"channel_id": str(channel.id)}, workspace_id=workspace_id)
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


async def route(
    db: Database,
    adapter: ChannelAdapter,
    channel: Channel,
    items: list[InboundItem],
    request: RawRequest,
) -> list[tuple[Channel, InboundItem]]:
    """Each item with the channel it belongs to; items of no channel here are dropped.

    One provider app may serve several accounts (WhatsApp numbers) through one callback: an
    item naming another account goes to the workspace's channel of that account, and only if
    the delivery's signature holds with that channel's own credentials too. Channels of other
    workspaces are never looked at.
    """
    if not isinstance(adapter, RoutesByAccount):
        return [(channel, item) for item in items]
    own = adapter.account(channel.provider, channel.config)
    others: dict[str, Channel] | None = None
    routed: list[tuple[Channel, InboundItem]] = []
    for item in items:
        if not item.account or item.account == own:
            routed.append((channel, item))
            continue
        if others is None:
            async with db.read() as session:
                siblings = await repository.list_of_type(
                    session, channel.workspace_id, channel.type
                )
            others = {
                adapter.account(c.provider, c.config): c
                for c in siblings
                if c.id != channel.id and c.provider == channel.provider
            }
        target = others.get(item.account)
        if target is None:
            log.info("item for account %s has no channel here; ignored", item.account)
            continue
        try:
            adapter.verify(request, context(target))
        except HiloError:
            log.warning("item for channel %s not signed with its credentials; ignored", target.id)
            continue
        routed.append((target, item))
    return routed


async def templates(
    session: AsyncSession, workspace_id: uuid.UUID, channel_id: uuid.UUID
) -> list[MessageTemplate]:
    """The templates a channel of the workspace can send (none for most channels)."""
    channel = await get(session, workspace_id, channel_id)
    adapter = get_adapter(channel.type)
    return adapter.templates(context(channel)) if isinstance(adapter, HasTemplates) else []


def check_template(
    channel: Channel, *, name: str, language: str, params: list[str]
) -> MessageTemplate:
    """The channel's template of that name and language, given the right number of values."""
    adapter = get_adapter(channel.type)
    known = adapter.templates(context(channel)) if isinstance(adapter, HasTemplates) else []
    found = next((t for t in known if t.name == name and t.language == language), None)
    if found is None:
        raise InvalidPayload(
            _("Unknown template for this channel: {name} ({language})."),
            code="unknown_template",
            name=name,
            language=language,
        )
    if len(params) != found.params:
        raise InvalidPayload(
            _("The template {name} takes {expected} parameters; {given} were given."),
            code="template_params",
            name=name,
            expected=found.params,
            given=len(params),
        )
    return found


async def check_send(
    session: AsyncSession,
    channel: Channel,
    contact_id: uuid.UUID,
    *,
    text: str,
    template: MessageTemplate | None,
    attachments: list[dict[str, Any]],
) -> None:
    """Refuse a reply the channel cannot deliver now (a closed window, files it cannot send)."""
    adapter = get_adapter(channel.type)
    if not isinstance(adapter, ChecksReplies):
        if attachments:
            raise InvalidPayload(
                _("This channel cannot send files."), code="attachments_not_supported"
            )
        return
    last = await repository.last_inbound_at(
        session, channel.workspace_id, contact_id=contact_id, channel_id=channel.id
    )
    draft = ReplyDraft(
        text=text, template=template, attachments=attachments, last_inbound_at=last, at=now()
    )
    adapter.check_send(context(channel), draft)
