"""Replies that go out by e-mail when their own channel cannot put them in front of the customer.

A web chat reply the visitor has not seen after a while (they closed the page), or a reply to
a web form (which has no way back), is copied into the same conversation as an outbound
message on the workspace's e-mail channel, through the normal outbound path. What happened
is kept on the original message (``data["email_fallback"]``) and in the trail
(``message.email_fallback``):

- ``queued``: the copy is queued on the e-mail channel (``message_id`` names it);
- ``not_needed``: the visitor saw the reply in time;
- ``pending_email_channel``: the workspace has no e-mail channel yet; nothing was sent;
- ``no_email_address``: the contact has no e-mail address of their own (none was left, or
  the one typed belongs to another contact and only a merge can settle it);
- ``opted_out``: the contact opted out of e-mail.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hilo import events
from hilo.channels import consent
from hilo.channels import repository as channel_repository
from hilo.channels import service as channels
from hilo.channels.registry import ADAPTERS
from hilo.clock import now
from hilo.conversations import repository as conversation_repository
from hilo.conversations import service as conversations
from hilo.events import Actor
from hilo.jobs.registry import job
from hilo.jobs.worker import JobContext
from hilo.models import Channel, Message

JOB = "channels.email_fallback"
# A channel reaches people by e-mail when its adapter addresses contacts by their e-mail.
EMAIL_IDENTITY = "email"
SEEN = ("delivered", "read")


@job(JOB)
async def email_fallback(ctx: JobContext) -> None:
    """Copy a reply to the e-mail channel unless it was seen (or is no reply)."""
    async with ctx.db.transaction() as session:
        message = await session.get(Message, uuid.UUID(ctx.payload["message_id"]))
        if message is not None and message.kind == "outbound":
            await do_fall_back(session, message, unless_seen=bool(ctx.payload.get("unless_seen")))
        await ctx.finish(session)


async def email_channel(
    session: AsyncSession, workspace_id: uuid.UUID, preferred: str | None
) -> Channel | None:
    """The e-mail channel to fall back to: the configured one, else the workspace's first."""
    found = [
        c
        for c in await channel_repository.list_all(session, workspace_id)
        if c.active and c.type in ADAPTERS and ADAPTERS[c.type].identity_kind == EMAIL_IDENTITY
    ]
    for channel in found:
        if preferred and str(channel.id) == preferred:
            return channel
    return found[0] if found else None


async def do_fall_back(session: AsyncSession, message: Message, *, unless_seen: bool) -> str:
    """Queue the e-mail copy of ``message`` where possible; returns what happened."""
    previous = (message.data or {}).get("email_fallback")
    if isinstance(previous, dict):  # the job ran already (a retry after a crash)
        return str(previous.get("status"))
    if message.status == "failed":
        return "failed"
    if unless_seen and message.status in SEEN:
        return _note(session, message, "not_needed")
    source = await session.get(Channel, message.channel_id) if message.channel_id else None
    preferred = source.config.get("email_channel_id") if source is not None else None
    target = await email_channel(session, message.workspace_id, preferred)
    if target is None:
        return _note(session, message, "pending_email_channel")
    if await channels.recipient(session, target, message.contact_id) is None:
        return _note(session, message, "no_email_address")
    if await consent.is_opted_out(session, message.contact_id, target.id):
        return _note(session, message, "opted_out")
    conversation = await conversation_repository.get(
        session, message.workspace_id, message.conversation_id
    )
    moment = now()
    copy = Message(
        workspace_id=message.workspace_id,
        conversation_id=message.conversation_id,
        contact_id=message.contact_id,
        sender_type=message.sender_type,
        sender_id=message.sender_id,
        text=message.text,
        data={"fallback_for": str(message.id)},
        created_at=moment,
        updated_at=moment,
    )
    await conversations.do_queue_outbound(session, conversation, target, copy, actor=Actor.system())
    return _note(session, message, "queued", message_id=str(copy.id))


def _note(session: AsyncSession, message: Message, status: str, **extra: Any) -> str:
    note = {"status": status, **extra}
    # A new dict, so the JSON column sees the change.
    message.data = {**(message.data or {}), "email_fallback": note}
    message.updated_at = now()
    events.record_on_message(session, "message.email_fallback", message, data=note)
    return status
