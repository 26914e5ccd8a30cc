"""Queries on contacts and their identities; every one is scoped to a workspace."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    CompoundSelect,
    Select,
    and_,
    func,
    literal_column,
    or_,
    select,
    table,
    union,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from hilo.errors import NotFound
from hilo.models import Contact, ContactIdentity, MergeSuggestion
from hilo.scoping import get_scoped, scoped


def contains_pattern(q: str) -> str:
    """A case-insensitive ``LIKE … ESCAPE '\\'`` pattern matching ``q`` anywhere."""
    return "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


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


async def identities_matching(
    session: AsyncSession, workspace_id: uuid.UUID, keys: Sequence[tuple[str, str, str]]
) -> list[ContactIdentity]:
    """The identities with any of these (kind, scope, value), in one query."""
    if not keys:
        return []
    wanted = [
        and_(
            ContactIdentity.kind == kind,
            ContactIdentity.scope == scope,
            ContactIdentity.value == value,
        )
        for kind, scope, value in set(keys)
    ]
    return list(await session.scalars(scoped(ContactIdentity, workspace_id).where(or_(*wanted))))


async def lock_many(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    contact_ids: Sequence[uuid.UUID],
    *,
    is_sqlite: bool,
) -> list[Contact]:
    """Several contacts, locked as :func:`lock` locks one (in id order: no deadlock)."""
    query = (
        scoped(Contact, workspace_id).where(Contact.id.in_(set(contact_ids))).order_by(Contact.id)
    )
    if not is_sqlite:
        query = query.with_for_update()
    return list(await session.scalars(query))


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


def _holding(session: AsyncSession, q: str) -> CompoundSelect:
    """Ids of the contacts whose name or one of whose identities holds ``q``, in any case.

    Two index lookups joined by UNION (an OR across the two tables would read every contact):
    trigram indexes made by migration 0004_bench_indexes, pg_trgm on PostgreSQL and FTS5
    ``trigram`` tables on SQLite. FTS5 needs three characters and no wildcard to use its
    index; shorter text goes through the same LIKE without it. The ids are joined to the
    workspace-scoped query of the caller, which keeps other workspaces' contacts out.
    """
    names = select(Contact.id.label("id"))
    values = select(ContactIdentity.contact_id)
    if session.get_bind().dialect.name == "sqlite" and len(q) >= 3 and not _WILDCARDS & set(q):
        pattern = f"%{q}%"
        names = names.where(
            literal_column("contacts.rowid").in_(_trigram("contacts_fts", "name", pattern))
        )
        values = values.where(
            literal_column("contact_identities.rowid").in_(
                _trigram("contact_identities_fts", "value", pattern)
            )
        )
    else:
        pattern = contains_pattern(q)
        names = names.where(func.lower(Contact.name).like(pattern, escape="\\"))
        values = values.where(func.lower(ContactIdentity.value).like(pattern, escape="\\"))
    return union(names, values)


_WILDCARDS = frozenset("%_\\")


def _trigram(fts_table: str, column: str, pattern: str) -> Select[Any]:
    """Rowids of an FTS5 trigram table whose column is LIKE ``pattern`` (case-insensitive)."""
    return (
        select(literal_column("rowid"))
        .select_from(table(fts_table))
        .where(literal_column(f"{fts_table}.{column}").like(pattern))
    )


# Made once: building an alias was a fifth of a phone search's CPU (docs/benchmarks.md).
_BY_PHONE = aliased(ContactIdentity, name="by_phone")
_BY_EMAIL = aliased(ContactIdentity, name="by_email")


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
    for kind, value, identity in (("phone", phone, _BY_PHONE), ("email", email, _BY_EMAIL)):
        if value is not None:
            # A join from the unique (workspace, kind, scope, value) index: the query starts
            # at the one matching identity, not at every contact. Phones and e-mails are
            # workspace-wide identities (scope "").
            query = query.join(
                identity,
                and_(
                    identity.contact_id == Contact.id,
                    identity.workspace_id == workspace_id,
                    identity.kind == kind,
                    identity.scope == "",
                    identity.value == value,
                ),
            )
    if q:
        holding = _holding(session, q).subquery()
        query = query.join(holding, holding.c.id == Contact.id)
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
