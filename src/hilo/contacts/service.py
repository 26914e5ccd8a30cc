"""Contact rules: normalising identities, recognising a sender, merging duplicates."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

import phonenumbers
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from hilo import events, pagination
from hilo.clock import now
from hilo.contacts import repository
from hilo.contacts.schemas import ContactOut, ContactPage
from hilo.errors import Conflict, InvalidPayload
from hilo.events import Actor
from hilo.i18n import _
from hilo.ids import new_id
from hilo.models import (
    Contact,
    ContactIdentity,
    Conversation,
    Deal,
    MergeSuggestion,
    Message,
    Workspace,
)

# Whitespace, controls and the characters that separate or wrap addresses in a header: an
# address holding one would become a second recipient, a broken header or a failed send.
_NOT_IN_ADDRESS = re.compile(r"[\s\x00-\x1f\x7f,;<>]")


def normalise_phone(raw: str, region: str) -> str | None:
    """A phone number in E.164, reading numbers without ``+`` in the workspace's region.

    Mexico's old mobile form ``+52 1 ...`` and the plain ``+52 ...`` are one number.
    """
    try:
        number = phonenumbers.parse(raw, region.upper())
    except phonenumbers.NumberParseException:
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if e164.startswith("+521") and len(e164) == 14:
        e164 = "+52" + e164[4:]
        number = phonenumbers.parse(e164)
    if not phonenumbers.is_possible_number(number):
        return None
    return e164


def normalise_email(raw: str) -> str | None:
    """An e-mail address trimmed and lower-cased, or None if it is not one."""
    value = raw.strip().lower()
    local, sep, domain = value.rpartition("@")
    if not sep or not local or "." not in domain or _NOT_IN_ADDRESS.search(value):
        return None
    return value


@dataclass(frozen=True)
class Claim:
    """An identity an inbound message claims for its sender."""

    kind: str
    scope: str
    value: str
    verified: bool


@dataclass
class Resolution:
    """The contact a message belongs to, and what was learnt on the way."""

    contact: Contact
    created: bool
    suggested: list[uuid.UUID] = field(default_factory=list)


async def resolve_sender(
    session: AsyncSession,
    *,
    workspace_id: uuid.UUID,
    sender_claim: Claim,
    other_claims: list[Claim],
    name: str | None,
    channel_id: uuid.UUID,
) -> Resolution:
    """Find the sender's contact: their channel id first, then a verified phone or e-mail.

    An unverified match (a phone typed into a form) never joins contacts: it becomes a merge
    suggestion, so nobody is shown a stranger's history.
    """
    sender_found = await repository.find_identity(
        session,
        workspace_id,
        kind=sender_claim.kind,
        scope=sender_claim.scope,
        value=sender_claim.value,
    )
    contact = (
        await repository.get(session, workspace_id, sender_found.contact_id)
        if sender_found
        else None
    )
    found_claims: list[tuple[Claim, ContactIdentity | None]] = [(sender_claim, sender_found)]
    for claim in other_claims:
        found = await repository.find_identity(
            session, workspace_id, kind=claim.kind, scope=claim.scope, value=claim.value
        )
        found_claims.append((claim, found))
    if contact is None:
        for claim, found in found_claims[1:]:
            if found is not None and claim.verified and found.verified:
                contact = await repository.get(session, workspace_id, found.contact_id)
                break
    created = contact is None
    if contact is None:
        contact = new_contact(session, workspace_id=workspace_id, name=name, channel_id=channel_id)
        await session.flush()
    elif name and not contact.name:
        contact.name = name
    resolution = Resolution(contact=contact, created=created)
    for claim, found in found_claims:
        if found is None:
            add_identity(session, contact, claim, channel_id=channel_id)
        elif found.contact_id != contact.id:
            await _suggest(session, contact, found.contact_id, claim, channel_id=channel_id)
            resolution.suggested.append(found.contact_id)
        elif claim.verified and not found.verified:
            found.verified = True
    return resolution


def new_contact(
    session: AsyncSession, *, workspace_id: uuid.UUID, name: str | None, channel_id: uuid.UUID
) -> Contact:
    """A contact for a sender nobody knows (no query: the caller found no identity)."""
    contact = Contact(id=new_id(), workspace_id=workspace_id, name=name or "", created_at=now())
    session.add(contact)
    events.record(
        session,
        "contact.created",
        workspace_id=workspace_id,
        actor=Actor.system(),
        channel_id=channel_id,
        contact_id=contact.id,
    )
    return contact


def add_identity(
    session: AsyncSession, contact: Contact, claim: Claim, *, channel_id: uuid.UUID | None
) -> ContactIdentity:
    """A claim nobody holds yet becomes the contact's identity."""
    identity = ContactIdentity(
        workspace_id=contact.workspace_id,
        contact_id=contact.id,
        kind=claim.kind,
        scope=claim.scope,
        value=claim.value,
        verified=claim.verified,
        created_at=now(),
    )
    session.add(identity)
    events.record(
        session,
        "contact.identity_added",
        workspace_id=contact.workspace_id,
        actor=Actor.system(),
        channel_id=channel_id,
        contact_id=contact.id,
        data={"kind": claim.kind, "verified": claim.verified},
    )
    return identity


async def _suggest(
    session: AsyncSession,
    contact: Contact,
    candidate_id: uuid.UUID,
    claim: Claim,
    *,
    channel_id: uuid.UUID | None,
) -> None:
    workspace_id, contact_id = contact.workspace_id, contact.id
    if await repository.suggestion_exists(session, workspace_id, contact_id, candidate_id):
        return
    session.add(
        MergeSuggestion(
            workspace_id=workspace_id,
            contact_id=contact_id,
            candidate_id=candidate_id,
            reason=f"same {claim.kind}",
            created_at=now(),
        )
    )
    events.record(
        session,
        "contact.merge_suggested",
        workspace_id=workspace_id,
        actor=Actor.system(),
        channel_id=channel_id,
        contact_id=contact_id,
        data={"candidate_id": str(candidate_id), "reason": f"same {claim.kind}"},
    )


def check_merge(survivor: Contact, absorbed: Contact) -> None:
    """A contact cannot absorb itself."""
    if survivor.id == absorbed.id:
        raise InvalidPayload(_("A contact cannot be merged into itself."), code="same_contact")
    if absorbed.merged_into_id is not None:
        raise Conflict(_("That contact was already merged."), code="already_merged")


async def do_merge(
    session: AsyncSession,
    *,
    workspace_id: uuid.UUID,
    survivor_id: uuid.UUID,
    absorbed_id: uuid.UUID,
    actor: Actor,
) -> Contact:
    """Fold ``absorbed`` into ``survivor``: identities, conversations, messages and deals move;
    the absorbed id keeps resolving to the survivor."""
    survivor = await repository.get(session, workspace_id, survivor_id)
    absorbed = await repository.get(session, workspace_id, absorbed_id)
    check_merge(survivor, absorbed)
    await repository.move_identities(session, workspace_id, source=absorbed.id, target=survivor.id)
    moved: dict[str, int] = {}
    for model in (Conversation, Message, Deal):
        result = await session.execute(
            update(model)
            .where(model.workspace_id == workspace_id, model.contact_id == absorbed.id)
            .values(contact_id=survivor.id)
        )
        moved[model.__tablename__] = result.rowcount  # type: ignore[attr-defined]
    await session.execute(
        update(MergeSuggestion)
        .where(
            MergeSuggestion.workspace_id == workspace_id,
            MergeSuggestion.status == "open",
            (MergeSuggestion.contact_id == absorbed.id)
            | (MergeSuggestion.candidate_id == absorbed.id),
        )
        .values(status="merged")
    )
    survivor.name = survivor.name or absorbed.name
    survivor.company_id = survivor.company_id or absorbed.company_id
    survivor.attributes = {**absorbed.attributes, **survivor.attributes}
    if absorbed.last_activity_at and (
        survivor.last_activity_at is None or absorbed.last_activity_at > survivor.last_activity_at
    ):
        survivor.last_activity_at = absorbed.last_activity_at
    absorbed.merged_into_id = survivor.id
    events.record(
        session,
        "contact.merged",
        workspace_id=workspace_id,
        actor=actor,
        contact_id=survivor.id,
        data={"absorbed_id": str(absorbed.id), "moved": moved},
    )
    return survivor


async def get_view(
    session: AsyncSession, workspace_id: uuid.UUID, contact_id: uuid.UUID
) -> ContactOut:
    """A contact with its identities, following merges."""
    contact = await repository.get(session, workspace_id, contact_id)
    identities = await repository.identities_of(session, workspace_id, [contact.id])
    return ContactOut.build(contact, identities)


async def list_page(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    *,
    phone: str | None,
    email: str | None,
    q: str | None,
    cursor: str | None,
    limit: int,
) -> ContactPage:
    """A page of contacts; phone and e-mail filters are normalised like stored identities."""
    workspace = await session.get_one(Workspace, workspace_id)
    if phone is not None:
        phone = normalise_phone(phone, workspace.default_region) or phone
    if email is not None:
        email = normalise_email(email) or email
    rows = await repository.list_page(
        session,
        workspace_id,
        phone=phone,
        email=email,
        q=q,
        after=pagination.decode_id(cursor),
        limit=limit + 1,
    )
    page, next_cursor = pagination.cut(rows, limit, lambda c: (c.id,))
    identities = await repository.identities_of(session, workspace_id, [c.id for c in page])
    return ContactPage(
        items=[ContactOut.build(c, identities) for c in page], next_cursor=next_cursor
    )
