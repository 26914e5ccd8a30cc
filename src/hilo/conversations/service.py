"""Conversation rules: continuing the thread, replies and notes, ownership and status."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hilo import events
from hilo.attachments import repository as attachment_repository
from hilo.attachments import service as attachments
from hilo.channels import service as channels
from hilo.clock import now
from hilo.conversations import repository
from hilo.errors import Conflict, InvalidPayload
from hilo.events import Actor
from hilo.i18n import _
from hilo.ids import new_id
from hilo.jobs.service import enqueue
from hilo.models import (
    Channel,
    Contact,
    Conversation,
    ConversationLabel,
    Message,
    Team,
    User,
    Workspace,
)
from hilo.scoping import get_scoped

STATUSES = ("open", "pending", "snoozed", "resolved")
PRIORITIES = ("low", "normal", "high", "urgent")


async def continue_for_inbound(
    session: AsyncSession,
    *,
    workspace: Workspace,
    contact: Contact,
    channel_id: uuid.UUID,
    at: datetime,
    reopen_window: timedelta,
    thread: Conversation | None = None,
) -> Conversation:
    """The conversation an inbound message joins, whatever channel it came on.

    The contact's unresolved conversation if there is one; else the one resolved within the
    reopen window, reopened; else a new one. A ``thread`` the message names (see
    :func:`thread_of`) comes first, by the same rules.
    """
    if thread is not None and (
        thread.status in repository.UNRESOLVED
        or (thread.resolved_at is not None and thread.resolved_at >= at - reopen_window)
    ):
        conversation: Conversation | None = thread
    else:
        conversation = await repository.latest_unresolved(session, workspace.id, contact.id)
    if conversation is not None:
        reopen_for_inbound(session, conversation)
    if conversation is None:
        conversation = await repository.latest_resolved_since(
            session, workspace.id, contact.id, at - reopen_window
        )
        if conversation is not None:
            reopen_for_inbound(session, conversation)
    if conversation is None:
        conversation = new_for_inbound(session, contact, channel_id=channel_id, at=at)
        await session.flush()
    else:
        await _record_switch(session, conversation, contact, channel_id=channel_id, at=at)
    return conversation


def new_for_inbound(
    session: AsyncSession, contact: Contact, *, channel_id: uuid.UUID, at: datetime
) -> Conversation:
    """A new conversation for the customer's message (no query)."""
    conversation = Conversation(
        id=new_id(),
        workspace_id=contact.workspace_id,
        contact_id=contact.id,
        status="open",
        created_at=at,
        last_activity_at=at,
        last_channel_id=channel_id,
    )
    session.add(conversation)
    events.record(
        session,
        "conversation.created",
        workspace_id=contact.workspace_id,
        actor=Actor.system(),
        channel_id=channel_id,
        conversation_id=conversation.id,
        contact_id=contact.id,
    )
    return conversation


def reopen_for_inbound(session: AsyncSession, conversation: Conversation) -> None:
    """The customer wrote: their conversation is open again, if it was not."""
    if conversation.status != "open":
        _set_status(session, conversation, "open", actor=Actor.system(), reason="customer_replied")


async def _record_switch(
    session: AsyncSession,
    conversation: Conversation,
    contact: Contact,
    *,
    channel_id: uuid.UUID,
    at: datetime,
) -> None:
    """Record the customer changing channel, in the order they wrote, not the order their
    messages were processed: two deliveries may be processed the other way round."""
    before, after = await repository.inbound_neighbours(
        session, conversation.workspace_id, conversation_id=conversation.id, at=at
    )
    if after is None:
        note_latest_channel(
            session,
            conversation,
            contact,
            channel_id=channel_id,
            before=before.channel_id if before is not None else None,
        )
    elif before is None and after.channel_id is not None and after.channel_id != channel_id:
        # An earlier message processed late, the customer's first here: the switch was from
        # its channel to the one they wrote on next. Where they write now does not change.
        _switched(session, conversation, contact, from_id=channel_id, to_id=after.channel_id)


def note_latest_channel(
    session: AsyncSession,
    conversation: Conversation,
    contact: Contact,
    *,
    channel_id: uuid.UUID,
    before: uuid.UUID | None,
) -> None:
    """The customer's newest message so far came on ``channel_id``; ``before``: the channel of
    the one before it in the conversation, if any."""
    previous = before if before is not None else conversation.last_channel_id
    if previous is not None and previous != channel_id:
        _switched(session, conversation, contact, from_id=previous, to_id=channel_id)
    conversation.last_channel_id = channel_id


def _switched(
    session: AsyncSession,
    conversation: Conversation,
    contact: Contact,
    *,
    from_id: uuid.UUID,
    to_id: uuid.UUID,
) -> None:
    events.record(
        session,
        "conversation.channel_switched",
        workspace_id=conversation.workspace_id,
        actor=Actor.contact(contact.id),
        channel_id=to_id,
        conversation_id=conversation.id,
        contact_id=contact.id,
        data={"from_channel_id": str(from_id)},
    )


async def thread_of(
    session: AsyncSession,
    *,
    workspace_id: uuid.UUID,
    contact_id: uuid.UUID,
    conversation_id: str | None,
    provider_ids: Sequence[str],
) -> Conversation | None:
    """The conversation a message says it continues (a signed reply token, the ids of the
    messages it answers), only if it is the same contact's: a reply never joins a
    stranger's thread, whatever it names."""
    if conversation_id:
        named = await repository.find(session, workspace_id, uuid.UUID(conversation_id))
        if named is not None and named.contact_id == contact_id:
            return named
    if provider_ids:
        return await repository.thread_by_provider_ids(
            session, workspace_id, contact_id=contact_id, provider_ids=list(provider_ids)
        )
    return None


def do_append_inbound(
    session: AsyncSession,
    *,
    conversation: Conversation,
    contact: Contact,
    message_id: uuid.UUID,
    channel_id: uuid.UUID,
    channel_type: str,
    provider_message_id: str,
    text: str,
    attachments: list[dict[str, Any]],
    data: dict[str, Any],
    sent_at: datetime | None,
    at: datetime,
    inbound_event_id: uuid.UUID,
) -> Message:
    """Add the customer's message to the conversation."""
    message = Message(
        id=message_id,
        workspace_id=conversation.workspace_id,
        conversation_id=conversation.id,
        contact_id=contact.id,
        channel_id=channel_id,
        kind="inbound",
        sender_type="contact",
        sender_id=contact.id,
        provider_message_id=provider_message_id,
        status="received",
        text=text,
        attachments=attachments,
        data=data,
        inbound_event_id=inbound_event_id,
        sent_at=sent_at,
        created_at=at,
        updated_at=at,
    )
    session.add(message)
    conversation.last_activity_at = max(conversation.last_activity_at, at)
    contact.last_activity_at = at
    events.record(
        session,
        "message.received",
        workspace_id=conversation.workspace_id,
        actor=Actor.contact(contact.id),
        channel_id=channel_id,
        conversation_id=conversation.id,
        contact_id=contact.id,
        message_id=message.id,
        data={
            "channel_type": channel_type,
            "provider_message_id": provider_message_id,
            "attachments": len(attachments),
            "sent_at": sent_at.isoformat() if sent_at else None,
        },
    )
    return message


async def do_create_message(
    session: AsyncSession,
    *,
    workspace_id: uuid.UUID,
    conversation_id: uuid.UUID,
    text: str,
    channel_id: uuid.UUID | None,
    private: bool,
    actor: Actor,
    sender_id: uuid.UUID | None,
    template: TemplateChoice | None = None,
    attachment_ids: Sequence[uuid.UUID] = (),
) -> Message:
    """An agent's reply, queued for delivery, or an internal note that is never sent.

    A reply may be a channel's template (its text rendered from the values) and carry files
    uploaded before.
    """
    if not text.strip() and template is None and not attachment_ids:
        raise InvalidPayload(_("The message text is empty."), code="empty_text")
    if template is not None and (private or text.strip()):
        raise InvalidPayload(
            _("A template is sent to the customer as it is: no text of its own, never a note."),
            code="invalid_template_use",
        )
    conversation = await repository.get(session, workspace_id, conversation_id)
    files = await attachment_repository.list_by_ids(session, workspace_id, list(attachment_ids))
    moment = now()
    message = Message(
        workspace_id=workspace_id,
        conversation_id=conversation.id,
        contact_id=conversation.contact_id,
        sender_type=actor.type,
        sender_id=sender_id,
        text=text,
        attachments=[attachments.entry(f) for f in files],
        created_at=moment,
        updated_at=moment,
    )
    if private:
        message.kind, message.status, message.channel_id = "note", "stored", None
        session.add(message)
        await session.flush()
        events.record(
            session,
            "note.created",
            workspace_id=workspace_id,
            actor=actor,
            conversation_id=conversation.id,
            contact_id=conversation.contact_id,
            message_id=message.id,
        )
        return message
    target = channel_id or await default_reply_channel(session, conversation)
    if target is None:
        raise Conflict(
            _("The customer has no channel to reply on; choose one."), code="no_reply_channel"
        )
    channel = await channels.get(session, workspace_id, target)
    await channels.check_reachable(session, channel, conversation.contact_id)
    chosen = None
    if template is not None:
        chosen = channels.check_template(
            channel, name=template.name, language=template.language, params=template.params
        )
        message.text = chosen.render(template.params)
        message.data = {
            "template": {
                "name": chosen.name,
                "language": chosen.language,
                "params": list(template.params),
            }
        }
    await channels.check_send(
        session,
        channel,
        conversation.contact_id,
        text=message.text,
        template=chosen,
        attachments=message.attachments,
    )
    return await do_queue_outbound(session, conversation, channel, message, actor=actor)


async def default_reply_channel(
    session: AsyncSession, conversation: Conversation
) -> uuid.UUID | None:
    """The channel a reply goes on when the agent picks none: the customer's last one that
    carries text (after a phone call, the SMS or WhatsApp they wrote on before)."""
    last = conversation.last_channel_id
    if last is None:
        return None
    if channels.carries_text(await channels.get(session, conversation.workspace_id, last)):
        return last
    for channel_id in await repository.inbound_channels(
        session, conversation.workspace_id, conversation_id=conversation.id
    ):
        if channels.carries_text(
            await channels.get(session, conversation.workspace_id, channel_id)
        ):
            return channel_id
    return last


@dataclass(frozen=True)
class TemplateChoice:
    """A template to send, by name and language, with its placeholders' values."""

    name: str
    language: str
    params: list[str]


async def do_queue_outbound(
    session: AsyncSession,
    conversation: Conversation,
    channel: Channel,
    message: Message,
    *,
    actor: Actor,
) -> Message:
    """Queue ``message`` for delivery on ``channel`` with its ``outbound.send`` job."""
    message.kind, message.status, message.channel_id = "outbound", "queued", channel.id
    session.add(message)
    await session.flush()
    enqueue(
        session,
        "outbound.send",
        {"message_id": str(message.id)},
        workspace_id=conversation.workspace_id,
    )
    conversation.last_activity_at = max(conversation.last_activity_at, message.created_at)
    events.record(
        session,
        "message.queued",
        workspace_id=conversation.workspace_id,
        actor=actor,
        channel_id=channel.id,
        conversation_id=conversation.id,
        contact_id=conversation.contact_id,
        message_id=message.id,
        data={"channel_type": channel.type},
    )
    return message


def _set_status(
    session: AsyncSession,
    conversation: Conversation,
    status: str,
    *,
    actor: Actor,
    reason: str | None = None,
    snoozed_until: datetime | None = None,
) -> None:
    previous = conversation.status
    if previous == status and status != "snoozed":
        return
    conversation.status = status
    conversation.snoozed_until = snoozed_until if status == "snoozed" else None
    if status == "resolved":
        conversation.resolved_at = now()
    event_type = "conversation.status_changed"
    if previous == "resolved" and status != "resolved":
        event_type = "conversation.reopened"
    elif status == "resolved":
        event_type = "conversation.resolved"
    data: dict[str, Any] = {"from": previous, "to": status}
    if reason:
        data["reason"] = reason
    if snoozed_until:
        data["snoozed_until"] = snoozed_until.isoformat()
    events.record(
        session,
        event_type,
        workspace_id=conversation.workspace_id,
        actor=actor,
        conversation_id=conversation.id,
        contact_id=conversation.contact_id,
        channel_id=conversation.last_channel_id,
        data=data,
    )


@dataclass
class Changes:
    """A PATCH of a conversation: only the fields that were sent."""

    fields: dict[str, Any]


async def do_update(
    session: AsyncSession,
    *,
    workspace_id: uuid.UUID,
    conversation_id: uuid.UUID,
    changes: Changes,
    actor: Actor,
) -> Conversation:
    """Change status, snooze, assignee, team or priority; each change is an event."""
    conversation = await repository.get(session, workspace_id, conversation_id, for_update=True)
    fields = changes.fields
    if "status" in fields:
        status = fields["status"]
        if status not in STATUSES:
            raise InvalidPayload(_("Unknown status."), code="invalid_status")
        until = fields.get("snoozed_until")
        if status == "snoozed" and until is None:
            raise InvalidPayload(
                _("Snoozing needs a snoozed_until time."), code="snooze_needs_time"
            )
        if until is not None and until.tzinfo is None:
            raise InvalidPayload(_("Times must include a time zone."), code="naive_time")
        _set_status(session, conversation, status, actor=actor, snoozed_until=until)
    if "assignee_id" in fields and fields["assignee_id"] != conversation.assignee_id:
        assignee = fields["assignee_id"]
        if assignee is not None:
            await get_scoped(session, User, assignee, workspace_id)
        previous = conversation.assignee_id
        conversation.assignee_id = assignee
        events.record(
            session,
            "conversation.assigned" if assignee else "conversation.unassigned",
            workspace_id=workspace_id,
            actor=actor,
            conversation_id=conversation.id,
            contact_id=conversation.contact_id,
            data={"assignee_id": _s(assignee), "previous_assignee_id": _s(previous)},
        )
    if "team_id" in fields and fields["team_id"] != conversation.team_id:
        team = fields["team_id"]
        if team is not None:
            await get_scoped(session, Team, team, workspace_id)
        previous = conversation.team_id
        conversation.team_id = team
        events.record(
            session,
            "conversation.team_changed",
            workspace_id=workspace_id,
            actor=actor,
            conversation_id=conversation.id,
            contact_id=conversation.contact_id,
            data={"team_id": _s(team), "previous_team_id": _s(previous)},
        )
    if "priority" in fields and fields["priority"] != conversation.priority:
        if fields["priority"] not in PRIORITIES:
            raise InvalidPayload(_("Unknown priority."), code="invalid_priority")
        events.record(
            session,
            "conversation.priority_changed",
            workspace_id=workspace_id,
            actor=actor,
            conversation_id=conversation.id,
            contact_id=conversation.contact_id,
            data={"from": conversation.priority, "to": fields["priority"]},
        )
        conversation.priority = fields["priority"]
    return conversation


async def do_label(
    session: AsyncSession,
    *,
    workspace_id: uuid.UUID,
    conversation_id: uuid.UUID,
    label: str,
    add: bool,
    actor: Actor,
) -> Conversation:
    """Add or remove a label; a no-op records nothing."""
    label = label.strip().lower()
    if not label or len(label) > 64:
        raise InvalidPayload(_("A label has 1 to 64 characters."), code="invalid_label")
    conversation = await repository.get(session, workspace_id, conversation_id)
    if add:
        if await repository.has_label(session, conversation.id, label):
            return conversation
        session.add(
            ConversationLabel(
                conversation_id=conversation.id, label=label, workspace_id=workspace_id
            )
        )
    elif not await repository.remove_label(session, conversation.id, label):
        return conversation
    events.record(
        session,
        "conversation.label_added" if add else "conversation.label_removed",
        workspace_id=workspace_id,
        actor=actor,
        conversation_id=conversation.id,
        contact_id=conversation.contact_id,
        data={"label": label},
    )
    return conversation


def _s(value: uuid.UUID | None) -> str | None:
    return str(value) if value else None
