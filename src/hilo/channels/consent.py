"""Opt-out and opt-in by keyword, per contact and channel, honoured at once."""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncSession

from hilo import events
from hilo.clock import now
from hilo.events import Actor
from hilo.i18n import _
from hilo.models import ChannelConsent

STOP_WORDS = frozenset({"STOP", "BAJA", "CANCELAR", "UNSUBSCRIBE", "STOPALL"})
START_WORDS = frozenset({"START", "ALTA", "UNSTOP"})
CONFIRMATIONS = {
    "opted_out": _(
        "You will no longer receive messages on this channel. Reply START to subscribe again."
    ),
    "opted_in": _("You are subscribed again on this channel."),
}


def keyword(text: str) -> str:
    """The message as a keyword would be written: one word, upper case, no punctuation."""
    return unicodedata.normalize("NFKC", text).strip().strip(".!¡").upper()


def keyword_choice(text: str, provider_words: Mapping[str, str] | None = None) -> str | None:
    """``opted_out`` or ``opted_in`` when the whole message is one of the keywords (ours, or
    the ones the provider itself acts on)."""
    word = keyword(text)
    if provider_words and word in provider_words:
        return provider_words[word]
    if word in STOP_WORDS:
        return "opted_out"
    if word in START_WORDS:
        return "opted_in"
    return None


async def is_opted_out(session: AsyncSession, contact_id: uuid.UUID, channel_id: uuid.UUID) -> bool:
    """Whether the contact opted out of this channel."""
    row = await session.get(ChannelConsent, (contact_id, channel_id))
    return row is not None and row.status == "opted_out"


async def do_record(
    session: AsyncSession,
    *,
    workspace_id: uuid.UUID,
    contact_id: uuid.UUID,
    channel_id: uuid.UUID,
    choice: str,
    conversation_id: uuid.UUID | None,
) -> None:
    """Store the contact's choice and record it in the trail."""
    row = await session.get(ChannelConsent, (contact_id, channel_id))
    if row is None:
        row = ChannelConsent(
            contact_id=contact_id, channel_id=channel_id, workspace_id=workspace_id, status=choice
        )
        session.add(row)
    row.status = choice
    row.updated_at = now()
    events.record(
        session,
        f"contact.{choice}",
        workspace_id=workspace_id,
        actor=Actor.contact(contact_id),
        channel_id=channel_id,
        conversation_id=conversation_id,
        contact_id=contact_id,
    )
