"""Queries on contacts and their identities; every one is scoped to a workspace."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hilo.errors import NotFound
from hilo.models import Contact, ContactIdentity, MergeSuggestion
from hilo.scoping import get_scoped, scoped


async def get(session: AsyncSession, workspace_id: uuid.UUID, contact_id: uuid.UUID) -> Contact:
    """A contact, following merges to the surviving contact."""
    contact = await get_scoped(session, Contact, contact_id, workspace_id)
    seen = {contact.id}
    while contact.merged_into_id is not None:
        contact = await get_scoped(session, Contact, contact.merged_into_id, workspace_id)
        if contact.id in seen:  # a cycle would be a bug; never loop forever on it
            raise NotFound()
        seen.add(contact.id)
    return contact


async def lock(session: AsyncSession, contact: Contact, *, is_sqlite: bool) -> None:
    """Serialise work on one contact (SQLite's write lock already does)."""
    if not is_sqlite:
        await session.execute(select(Contact.id).where(Contact.id == contact.id).with_for_update())


async def find_identity(
    session: AsyncSession, workspace_id: uuid.UUID, *, kind: str, scope: str, value: str
) -> ContactIdentity | None:
    """The identity with exactly that kind, scope and value."""
    query = scoped(ContactIdentity, workspace_id).where(
        ContactIdentity.kind == kind,
        ContactIdentity.scope == scope,
        ContactIdentity.value == value,
    )
    return (await session.scalars(query)).first()


async def identities_of(
    session: AsyncSession, workspace_id: uuid.UUID, contact_ids: Sequence[uuid.UUID]
) -> list[ContactIdentity]:
    """The identities of several contacts, oldest first."""
    if not contact_ids:
        return []
    query = (
        scoped(ContactIdentity, workspace_id)
        .where(ContactIdentity.contact_id.in_(contact_ids))
        .order_by(ContactIdentity.created_at, ContactIdentity.id)
    )
    return list((await session.scalars(query)).all())


async def list_page(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    *,
    phone: str | None,
    email: str | None,
    q: str | None,
    after: uuid.UUID | None,
    limit: int,
) -> list[Contact]:
    """Contacts newest first, filtered; merged-away contacts are left out."""
    query = scoped(Contact, workspace_id).where(Contact.merged_into_id.is_(None))
    for kind, value in (("phone", phone), ("email", email)):
        if value is not None:
            query = query.where(
                exists().where(
                    ContactIdentity.contact_id == Contact.id,
                    ContactIdentity.workspace_id == workspace_id,
                    ContactIdentity.kind == kind,
                    ContactIdentity.value == value,
                )
            )
    if q:
        pattern = (
            "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        )
        query = query.where(
            or_(
                func.lower(Contact.name).like(pattern, escape="\\"),
                exists().where(
                    ContactIdentity.contact_id == Contact.id,
                    ContactIdentity.workspace_id == workspace_id,
                    func.lower(ContactIdentity.value).like(pattern, escape="\\"),
                ),
            )
        )
    if after is not None:
        query = query.where(Contact.id < after)
    query = query.order_by(Contact.id.desc()).limit(limit)
    return list((await session.scalars(query)).all())


async def move_identities(
    session: AsyncSession, workspace_id: uuid.UUID, *, source: uuid.UUID, target: uuid.UUID
) -> None:
    """Give every identity of ``source`` to ``target``."""
    await session.execute(
        update(ContactIdentity)
        .where(ContactIdentity.workspace_id == workspace_id, ContactIdentity.contact_id == source)
        .values(contact_id=target)
    )


async def suggestions_for(
    session: AsyncSession, workspace_id: uuid.UUID, contact_id: uuid.UUID
) -> list[MergeSuggestion]:
    """Open merge suggestions involving a contact."""
    query = scoped(MergeSuggestion, workspace_id).where(
        MergeSuggestion.status == "open",
        or_(MergeSuggestion.contact_id == contact_id, MergeSuggestion.candidate_id == contact_id),
    )
    return list((await session.scalars(query)).all())


async def suggestion_exists(
    session: AsyncSession, workspace_id: uuid.UUID, a: uuid.UUID, b: uuid.UUID
) -> bool:
    """Whether these two contacts were already suggested for merging."""
    query = scoped(MergeSuggestion, workspace_id).where(
        or_(
            (MergeSuggestion.contact_id == a) & (MergeSuggestion.candidate_id == b),
            (MergeSuggestion.contact_id == b) & (MergeSuggestion.candidate_id == a),
        )
    )
    return (await session.scalars(query)).first() is not None
