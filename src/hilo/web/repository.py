"""Queries of the agent workspace that no other domain needs; every one is workspace-scoped
(sign-in attempts excepted: they come before a workspace is known)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hilo.contacts.repository import contains_pattern
from hilo.conversations.repository import UNRESOLVED
from hilo.models import (
    CannedResponse,
    Contact,
    ContactIdentity,
    Conversation,
    Event,
    LoginAttempt,
    Message,
    TeamMember,
    User,
    UserTotp,
    WebSession,
    Workspace,
)
from hilo.scoping import get_scoped, scoped

# -- sign-in -----------------------------------------------------------------------------


async def users_by_email(
    session: AsyncSession, email: str, workspace_slug: str | None
) -> list[tuple[User, Workspace]]:
    """Active users with that e-mail, in every workspace (or the one named)."""
    query = (
        select(User, Workspace)
        .join(Workspace, Workspace.id == User.workspace_id)
        .where(User.email == email, User.active.is_(True))
        .order_by(Workspace.slug)
    )
    if workspace_slug:
        query = query.where(Workspace.slug == workspace_slug)
    return [(user, workspace) for user, workspace in (await session.execute(query)).all()]


async def user_with_workspace(
    session: AsyncSession, user_id: uuid.UUID
) -> tuple[User, Workspace] | None:
    """A user and their workspace (for the second factor, before a session exists)."""
    query = (
        select(User, Workspace)
        .join(Workspace, Workspace.id == User.workspace_id)
        .where(User.id == user_id)
    )
    row = (await session.execute(query)).first()
    return (row[0], row[1]) if row else None


async def session_by_token_hash(
    session: AsyncSession, token_hash: str
) -> tuple[WebSession, User, Workspace] | None:
    """A browser session with its user and workspace."""
    query = (
        select(WebSession, User, Workspace)
        .join(User, User.id == WebSession.user_id)
        .join(Workspace, Workspace.id == WebSession.workspace_id)
        .where(WebSession.token_hash == token_hash)
    )
    row = (await session.execute(query)).first()
    return (row[0], row[1], row[2]) if row else None


async def revoke_sessions(
    session: AsyncSession, workspace_id: uuid.UUID, user_id: uuid.UUID, at: datetime
) -> int:
    """End every open session of a user; how many there were."""
    result = await session.execute(
        update(WebSession)
        .where(
            WebSession.workspace_id == workspace_id,
            WebSession.user_id == user_id,
            WebSession.revoked_at.is_(None),
        )
        .values(revoked_at=at)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def sessions_of(
    session: AsyncSession, workspace_id: uuid.UUID, user_id: uuid.UUID, *, since: datetime
) -> list[WebSession]:
    """A user's open sessions, newest first."""
    query = (
        scoped(WebSession, workspace_id)
        .where(
            WebSession.user_id == user_id,
            WebSession.revoked_at.is_(None),
            WebSession.expires_at > since,
        )
        .order_by(WebSession.created_at.desc())
    )
    return list((await session.scalars(query)).all())


async def failures_since(session: AsyncSession, keys: Sequence[str], since: datetime) -> int:
    """Failed sign-in attempts under any of ``keys`` since a moment."""
    query = select(func.count()).where(
        LoginAttempt.key.in_(keys),
        LoginAttempt.succeeded.is_(False),
        LoginAttempt.created_at >= since,
    )
    return int(await session.scalar(query) or 0)


async def forget_failures(session: AsyncSession, key: str) -> None:
    """A successful sign-in clears that key's failures."""
    await session.execute(
        delete(LoginAttempt).where(LoginAttempt.key == key, LoginAttempt.succeeded.is_(False))
    )


async def prune_attempts(session: AsyncSession, before: datetime) -> None:
    """Drop attempts too old to count."""
    await session.execute(delete(LoginAttempt).where(LoginAttempt.created_at < before))


async def totp_of(
    session: AsyncSession, workspace_id: uuid.UUID, user_id: uuid.UUID
) -> UserTotp | None:
    """A user's second factor, set up or being set up."""
    query = scoped(UserTotp, workspace_id).where(UserTotp.user_id == user_id)
    return (await session.scalars(query)).first()


async def recent_events(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    *,
    types: Sequence[str],
    actor_id: str,
    limit: int,
) -> list[Event]:
    """A user's latest events of some types (their sign-ins, for one)."""
    query = (
        scoped(Event, workspace_id)
        .where(Event.type.in_(types), Event.actor_id == actor_id)
        .order_by(Event.id.desc())
        .limit(limit)
    )
    return list((await session.scalars(query)).all())


# -- the inbox and the conversation --------------------------------------------------------


async def last_event_id(session: AsyncSession, workspace_id: uuid.UUID) -> int:
    """The newest event id of the workspace: where a page's live stream resumes."""
    query = select(func.max(Event.id)).where(Event.workspace_id == workspace_id)
    return int(await session.scalar(query) or 0)


async def status_counts(
    session: AsyncSession, workspace_id: uuid.UUID, user_id: uuid.UUID
) -> dict[str, int]:
    """Conversations per status, and the unresolved ones that are mine or nobody's."""
    counts: dict[str, int] = {}
    rows = await session.execute(
        select(Conversation.status, func.count())
        .where(Conversation.workspace_id == workspace_id)
        .group_by(Conversation.status)
    )
    for status, count in rows:
        counts[str(status)] = int(count)
    unresolved = Conversation.status.in_(UNRESOLVED)
    for name, condition in (
        ("mine", Conversation.assignee_id == user_id),
        ("unassigned", Conversation.assignee_id.is_(None)),
    ):
        query = select(func.count()).where(
            Conversation.workspace_id == workspace_id, unresolved, condition
        )
        counts[name] = int(await session.scalar(query) or 0)
    counts["all"] = sum(counts.get(s, 0) for s in UNRESOLVED)
    return counts


async def contacts_by_id(
    session: AsyncSession, workspace_id: uuid.UUID, contact_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Contact]:
    """Several contacts at once."""
    if not contact_ids:
        return {}
    query = scoped(Contact, workspace_id).where(Contact.id.in_(set(contact_ids)))
    return {c.id: c for c in (await session.scalars(query)).all()}


async def last_messages(
    session: AsyncSession, workspace_id: uuid.UUID, conversation_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Message]:
    """The latest message (notes included) of each of several conversations."""
    if not conversation_ids:
        return {}
    ranked = (
        select(
            Message.id,
            func.row_number()
            .over(
                partition_by=Message.conversation_id,
                order_by=(Message.created_at.desc(), Message.id.desc()),
            )
            .label("rank"),
        )
        .where(
            Message.workspace_id == workspace_id,
            Message.conversation_id.in_(set(conversation_ids)),
        )
        .subquery()
    )
    query = scoped(Message, workspace_id).where(
        Message.id.in_(select(ranked.c.id).where(ranked.c.rank == 1))
    )
    return {m.conversation_id: m for m in (await session.scalars(query)).all()}


async def conversation_events(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    conversation_id: uuid.UUID,
    types: Sequence[str],
    *,
    after_id: int | None = None,
) -> list[Event]:
    """The conversation's events of the types shown in its timeline (after an event),
    oldest first."""
    query = scoped(Event, workspace_id).where(
        Event.conversation_id == conversation_id, Event.type.in_(types)
    )
    if after_id is not None:
        query = query.where(Event.id > after_id)
    return list((await session.scalars(query.order_by(Event.id))).all())


async def message_event_order(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    conversation_id: uuid.UUID,
    types: Sequence[str],
    message_ids: Sequence[uuid.UUID],
) -> list[tuple[uuid.UUID | None, int, datetime]]:
    """(message id, event id, time) of the events that added these messages."""
    query = (
        select(Event.message_id, Event.id, Event.created_at)
        .where(
            Event.workspace_id == workspace_id,
            Event.conversation_id == conversation_id,
            Event.type.in_(types),
            Event.message_id.in_(message_ids),
        )
        .order_by(Event.id)
    )
    return [(row[0], int(row[1]), row[2]) for row in await session.execute(query)]


async def last_contact_per_channel(
    session: AsyncSession, workspace_id: uuid.UUID, contact_id: uuid.UUID
) -> list[tuple[uuid.UUID, datetime, int]]:
    """For each channel the customer wrote on: when they last did, and how often."""
    query = (
        select(Message.channel_id, func.max(Message.created_at), func.count())
        .where(
            Message.workspace_id == workspace_id,
            Message.contact_id == contact_id,
            Message.kind == "inbound",
            Message.channel_id.is_not(None),
        )
        .group_by(Message.channel_id)
    )
    return [(row[0], row[1], int(row[2])) for row in await session.execute(query)]


async def identities_matching(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    values: Sequence[str],
    *,
    exclude_contact: uuid.UUID,
) -> list[ContactIdentity]:
    """Identities of other contacts whose value is one of ``values``."""
    if not values:
        return []
    query = scoped(ContactIdentity, workspace_id).where(
        ContactIdentity.value.in_(set(values)), ContactIdentity.contact_id != exclude_contact
    )
    return list((await session.scalars(query.limit(50))).all())


async def search_contacts(
    session: AsyncSession, workspace_id: uuid.UUID, q: str, *, exclude: uuid.UUID, limit: int
) -> list[Contact]:
    """Live contacts whose name or an identity contains ``q`` (to pick one to merge)."""
    pattern = contains_pattern(q)
    query = (
        scoped(Contact, workspace_id)
        .where(Contact.merged_into_id.is_(None), Contact.id != exclude)
        .where(
            or_(
                func.lower(Contact.name).like(pattern, escape="\\"),
                Contact.id.in_(
                    select(ContactIdentity.contact_id).where(
                        ContactIdentity.workspace_id == workspace_id,
                        func.lower(ContactIdentity.value).like(pattern, escape="\\"),
                    )
                ),
            )
        )
        .order_by(Contact.name)
        .limit(limit)
    )
    return list((await session.scalars(query)).all())


# -- teams ---------------------------------------------------------------------------------


async def team_members(session: AsyncSession, workspace_id: uuid.UUID) -> list[TeamMember]:
    """Every team membership of the workspace."""
    return list((await session.scalars(scoped(TeamMember, workspace_id))).all())


# -- canned responses ----------------------------------------------------------------------


async def canned_list(
    session: AsyncSession, workspace_id: uuid.UUID, *, q: str | None = None, limit: int = 200
) -> list[CannedResponse]:
    """Canned responses by shortcut, those matching ``q`` when given."""
    query = scoped(CannedResponse, workspace_id)
    if q:
        pattern = contains_pattern(q)
        query = query.where(
            or_(
                func.lower(CannedResponse.shortcut).like(pattern, escape="\\"),
                func.lower(CannedResponse.title).like(pattern, escape="\\"),
                func.lower(CannedResponse.body).like(pattern, escape="\\"),
            )
        )
    query = query.order_by(CannedResponse.shortcut).limit(limit)
    return list((await session.scalars(query)).all())


async def canned_get(
    session: AsyncSession, workspace_id: uuid.UUID, canned_id: uuid.UUID
) -> CannedResponse:
    """A canned response of the workspace, or NotFound."""
    return await get_scoped(session, CannedResponse, canned_id, workspace_id)


async def canned_by_shortcut(
    session: AsyncSession, workspace_id: uuid.UUID, shortcut: str
) -> CannedResponse | None:
    """The canned response with that shortcut."""
    query = scoped(CannedResponse, workspace_id).where(CannedResponse.shortcut == shortcut)
    return (await session.scalars(query)).first()
