"""Users, API tokens and who a request acts as."""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hilo import events
from hilo.clock import now
from hilo.crypto import hash_token
from hilo.db import writable
from hilo.errors import Conflict, InvalidPayload, Unauthorized
from hilo.events import Actor
from hilo.i18n import LOCALES, _
from hilo.models import ApiToken, Team, TeamMember, User, Workspace
from hilo.scoping import get_scoped, scoped

ROLES = ("admin", "supervisor", "agent")
_hasher = PasswordHasher()
# Token use is an audited event, but once an hour per token is enough to trace it.
TOKEN_USE_EVENT_EVERY = timedelta(hours=1)


@dataclass(frozen=True)
class Principal:
    """Who a request acts as, and in which workspace."""

    workspace_id: uuid.UUID
    role: str
    token_id: uuid.UUID | None
    user_id: uuid.UUID | None

    @property
    def actor(self) -> Actor:
        if self.user_id:
            return Actor("user", str(self.user_id))
        return Actor("token", str(self.token_id))


def check_role(role: str) -> None:
    """Refuse an unknown role."""
    if role not in ROLES:
        raise InvalidPayload(
            _("Unknown role. Known roles: {roles}."), code="invalid_role", roles=", ".join(ROLES)
        )


async def do_get_or_create_workspace(session: AsyncSession, slug: str) -> Workspace:
    """The workspace called ``slug``, created if missing."""
    workspace = (await session.scalars(select(Workspace).where(Workspace.slug == slug))).first()
    if workspace is None:
        workspace = Workspace(slug=slug, name=slug, created_at=now())
        session.add(workspace)
        await session.flush()
        events.record(
            session,
            "workspace.created",
            workspace_id=workspace.id,
            actor=Actor.system(),
            data={"slug": slug},
        )
    return workspace


async def do_create_token(
    session: AsyncSession,
    *,
    workspace_id: uuid.UUID,
    role: str,
    name: str = "",
    user_id: uuid.UUID | None = None,
    actor: Actor,
) -> str:
    """A new API token; only its hash is stored, so the value is returned once."""
    check_role(role)
    prefix = secrets.token_hex(4)
    token = f"hilo_{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiToken(
        workspace_id=workspace_id,
        user_id=user_id,
        name=name,
        role=role,
        token_hash=hash_token(token),
        prefix=prefix,
        created_at=now(),
    )
    session.add(row)
    await session.flush()
    events.record(
        session,
        "auth.token_created",
        workspace_id=workspace_id,
        actor=actor,
        data={"token_id": str(row.id), "role": role, "prefix": prefix},
    )
    return token


# A token's principal, kept by this process for a few seconds: an API client sends many
# requests in a row, and looking its token up for each was a tenth of a read's CPU
# (docs/benchmarks.md). A token revoked in the database stops working here within this time.
TOKEN_CACHE_SECONDS = 5.0
TOKEN_CACHE_SIZE = 4096
_TOKEN_SELECT = select(
    ApiToken.id,
    ApiToken.workspace_id,
    ApiToken.user_id,
    ApiToken.role,
    ApiToken.prefix,
    ApiToken.revoked_at,
    ApiToken.last_used_at,
)


@dataclass
class _KnownToken:
    principal: Principal
    prefix: str
    last_used_at: datetime | None
    until: float


# By token hash. Whatever revokes a token in this process should drop its entry here.
_known_tokens: dict[str, _KnownToken] = {}


async def authenticate_token(session: AsyncSession, token: str) -> Principal:
    """The principal of a bearer token, or Unauthorized."""
    digest = hash_token(token)
    known = _known_tokens.get(digest)
    if known is None or known.until < time.monotonic():
        known = await _look_up_token(session, digest)
    moment = now()
    if known.last_used_at is None or moment - known.last_used_at > TOKEN_USE_EVENT_EVERY:
        principal = known.principal
        async with writable(session) as writer:
            used = update(ApiToken).where(ApiToken.id == principal.token_id)
            await writer.execute(used.values(last_used_at=moment))
            events.record(
                writer,
                "auth.token_used",
                workspace_id=principal.workspace_id,
                actor=Actor("token", str(principal.token_id)),
                data={"prefix": known.prefix},
            )
        known.last_used_at = moment
    return known.principal


async def _look_up_token(session: AsyncSession, digest: str) -> _KnownToken:
    row = (await session.execute(_TOKEN_SELECT.where(ApiToken.token_hash == digest))).first()
    if row is None or row.revoked_at is not None:
        _known_tokens.pop(digest, None)
        raise Unauthorized(_("The API token is not valid."), code="invalid_token")
    principal = Principal(row.workspace_id, row.role, row.id, row.user_id)
    if len(_known_tokens) >= TOKEN_CACHE_SIZE:
        _known_tokens.clear()
    known = _KnownToken(
        principal, row.prefix, row.last_used_at, time.monotonic() + TOKEN_CACHE_SECONDS
    )
    _known_tokens[digest] = known
    return known


def hash_password(password: str) -> str:
    """An argon2id hash of a password."""
    return _hasher.hash(password)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    # Checked when the e-mail is unknown, so a miss costs as long as a wrong password.
    return _hasher.hash(secrets.token_hex(16))


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches the argon2 hash (slow on purpose: run it off the loop)."""
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


async def do_set_locale(
    session: AsyncSession, *, workspace_id: uuid.UUID, user_id: uuid.UUID, locale: str | None
) -> User:
    """The language a user works in (None: follow the browser)."""
    if locale is not None and locale not in LOCALES:
        raise InvalidPayload(_("Unknown language."), code="invalid_locale")
    user = await get_scoped(session, User, user_id, workspace_id)
    user.locale = locale
    return user


async def do_create_user(
    session: AsyncSession,
    *,
    workspace_id: uuid.UUID,
    email: str,
    role: str,
    password: str,
    name: str = "",
    actor: Actor,
) -> User:
    """A new user of the workspace."""
    check_role(role)
    if len(password) < 8:
        raise InvalidPayload(_("The password needs at least 8 characters."), code="weak_password")
    email = email.strip().lower()
    existing = (
        await session.scalars(scoped(User, workspace_id).where(User.email == email))
    ).first()
    if existing is not None:
        raise Conflict(_("A user with that e-mail exists."), code="user_exists")
    user = User(
        workspace_id=workspace_id,
        email=email,
        name=name,
        role=role,
        password_hash=hash_password(password),
        created_at=now(),
    )
    session.add(user)
    await session.flush()
    events.record(
        session,
        "user.created",
        workspace_id=workspace_id,
        actor=actor,
        data={"user_id": str(user.id), "role": role},
    )
    return user


async def list_users(session: AsyncSession, workspace_id: uuid.UUID) -> list[User]:
    """The workspace's users, by e-mail."""
    query = scoped(User, workspace_id).order_by(User.email)
    return list((await session.scalars(query)).all())


async def list_teams(session: AsyncSession, workspace_id: uuid.UUID) -> list[Team]:
    """The workspace's teams, by name."""
    query = scoped(Team, workspace_id).order_by(Team.name)
    return list((await session.scalars(query)).all())


async def do_create_team(
    session: AsyncSession, *, workspace_id: uuid.UUID, name: str, actor: Actor
) -> Team:
    """A new team; names are unique in a workspace."""
    name = name.strip()
    existing = (await session.scalars(scoped(Team, workspace_id).where(Team.name == name))).first()
    if existing is not None:
        raise Conflict(_("A team with that name exists."), code="team_exists")
    team = Team(workspace_id=workspace_id, name=name, created_at=now())
    session.add(team)
    await session.flush()
    events.record(
        session,
        "team.created",
        workspace_id=workspace_id,
        actor=actor,
        data={"team_id": str(team.id)},
    )
    return team


async def do_add_member(
    session: AsyncSession,
    *,
    workspace_id: uuid.UUID,
    team_id: uuid.UUID,
    user_id: uuid.UUID,
    actor: Actor,
) -> None:
    """Put a user of the workspace in one of its teams (idempotent)."""
    team = await get_scoped(session, Team, team_id, workspace_id)
    user = await get_scoped(session, User, user_id, workspace_id)
    if await session.get(TeamMember, (team.id, user.id)) is not None:
        return
    session.add(TeamMember(team_id=team.id, user_id=user.id, workspace_id=workspace_id))
    events.record(
        session,
        "team.member_added",
        workspace_id=workspace_id,
        actor=actor,
        data={"team_id": str(team.id), "user_id": str(user.id)},
    )
