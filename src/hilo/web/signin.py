"""Signing in to the agent workspace: passwords, the TOTP second factor, browser sessions,
CSRF tokens and the limits on attempts.

A session cookie holds a random token; only its SHA-256 is stored (``web_sessions``), so a
stolen database does not sign anyone in. Failed attempts are counted in the database, so the
limit holds across every API process.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pyotp
import segno
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from hilo import events
from hilo.auth.service import Principal, verify_password
from hilo.clock import now
from hilo.crypto import constant_time_equal, decrypt_json, encrypt_json, hash_token, internal_hmac
from hilo.db import writable
from hilo.errors import Conflict, Forbidden, InvalidPayload
from hilo.events import Actor
from hilo.i18n import _
from hilo.models import LoginAttempt, User, UserTotp, WebSession, Workspace
from hilo.settings import get_settings
from hilo.web import repository

log = logging.getLogger(__name__)

SESSION_COOKIE = "hilo_session"
# Before signing in: the seed of the sign-in form's CSRF token.
PRE_COOKIE = "hilo_pre"
# The password was right and the second factor is awaited.
MFA_COOKIE = "hilo_mfa"
# The language chosen before signing in.
LANG_COOKIE = "hilo_lang"

SESSION_TTL = timedelta(days=14)
IDLE_TTL = timedelta(hours=12)
# How often a session's last use is written (each request would be one write too many).
SEEN_EVERY = timedelta(minutes=5)
MFA_TTL = timedelta(minutes=5)
ATTEMPT_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_ACCOUNT = 5
MAX_FAILURES_PER_ADDRESS = 30
TOTP_ISSUER = "Hilo"

OK, SECOND_FACTOR, INVALID, LOCKED, CHOOSE_WORKSPACE = (
    "ok",
    "second_factor",
    "invalid",
    "locked",
    "choose_workspace",
)


@dataclass(frozen=True)
class WebUser:
    """Who a browser request acts as: the session, its user and their workspace."""

    session: WebSession
    user: User
    workspace: Workspace

    @property
    def principal(self) -> Principal:
        """The same principal an API token of this user would give."""
        return Principal(self.workspace.id, self.user.role, None, self.user.id)

    @property
    def actor(self) -> Actor:
        return Actor("user", str(self.user.id))

    @property
    def csrf(self) -> str:
        """The token every form and HTMX request of this session carries."""
        return csrf_token(f"session:{self.session.id}")


@dataclass
class SignIn:
    """What a sign-in attempt gave."""

    status: str
    user: User | None = None
    workspace: Workspace | None = None
    workspaces: list[str] = field(default_factory=list)


def cookie_secure() -> bool:
    """Cookies carry ``Secure`` when Hilo is served over https."""
    return get_settings().public_url.lower().startswith("https://")


def csrf_token(seed: str) -> str:
    """The CSRF token bound to a session (or to a signed-out browser's seed)."""
    return internal_hmac("web-csrf", seed)


def check_csrf(expected: str, given: str | None) -> None:
    """Refuse a state-changing request without this session's token."""
    if not given or not constant_time_equal(expected, given):
        raise Forbidden(
            _("This form has expired. Reload the page and try again."), code="csrf_failed"
        )


def _key(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()


def _attempt(session: AsyncSession, key: str, *, succeeded: bool) -> None:
    session.add(LoginAttempt(key=key, succeeded=succeeded, created_at=now()))


def _failed(
    session: AsyncSession, key: str, users: list[tuple[User, Workspace]], *, reason: str
) -> None:
    """Count a failed attempt, and tell each user's trail that someone tried."""
    _attempt(session, key, succeeded=False)
    for user, workspace in users:
        events.record(
            session,
            "auth.login_failed",
            workspace_id=workspace.id,
            actor=Actor("user", str(user.id)),
            data={"reason": reason},
        )


async def _locked(session: AsyncSession, key: str, limit: int) -> bool:
    return await repository.failures_since(session, [key], now() - ATTEMPT_WINDOW) >= limit


async def do_sign_in(
    session: AsyncSession, *, email: str, password: str, workspace_slug: str | None, address: str
) -> SignIn:
    """Check an e-mail and password; records the failure (and counts it) when wrong."""
    email = email.strip().lower()
    account, client = _key("email", email), _key("address", address)
    await repository.prune_attempts(session, now() - timedelta(days=1))
    if await _locked(session, account, MAX_FAILURES_PER_ACCOUNT) or await _locked(
        session, client, MAX_FAILURES_PER_ADDRESS
    ):
        log.warning("sign-in refused: too many failed attempts")
        return SignIn(LOCKED)
    candidates = await repository.users_by_email(session, email, workspace_slug or None)
    matches: list[tuple[User, Workspace]] = []
    for user, workspace in candidates:
        if await asyncio.to_thread(verify_password, user.password_hash, password):
            matches.append((user, workspace))
    if not candidates:
        await asyncio.to_thread(verify_password, None, password)
    if not matches:
        _attempt(session, client, succeeded=False)
        _failed(session, account, candidates, reason="password")
        log.info("sign-in failed (%d matching accounts)", len(candidates))
        return SignIn(INVALID)
    if len(matches) > 1:
        return SignIn(CHOOSE_WORKSPACE, workspaces=[w.slug for _u, w in matches])
    user, workspace = matches[0]
    await repository.forget_failures(session, account)
    totp = await repository.totp_of(session, workspace.id, user.id)
    status = SECOND_FACTOR if totp is not None and totp.enabled_at is not None else OK
    return SignIn(status, user=user, workspace=workspace)


async def do_start_session(
    session: AsyncSession, *, user: User, workspace: Workspace, user_agent: str, method: str
) -> str:
    """A new browser session; returns the cookie value (stored only as a hash)."""
    token = secrets.token_urlsafe(32)
    moment = now()
    row = WebSession(
        workspace_id=workspace.id,
        user_id=user.id,
        token_hash=hash_token(token),
        user_agent=user_agent[:200],
        created_at=moment,
        last_seen_at=moment,
        expires_at=moment + SESSION_TTL,
    )
    session.add(row)
    await session.flush()
    events.record(
        session,
        "auth.login",
        workspace_id=workspace.id,
        actor=Actor("user", str(user.id)),
        data={"session_id": str(row.id), "method": method},
    )
    return token


async def authenticate(session: AsyncSession, token: str | None) -> WebUser | None:
    """The signed-in user of a session cookie, or None when it is unknown or over."""
    if not token:
        return None
    found = await repository.session_by_token_hash(session, hash_token(token))
    if found is None:
        return None
    row, user, workspace = found
    moment = now()
    if (
        row.revoked_at is not None
        or row.expires_at <= moment
        or row.last_seen_at + IDLE_TTL <= moment
        or not user.active
    ):
        return None
    if moment - row.last_seen_at > SEEN_EVERY:
        async with writable(session) as writer:
            await writer.execute(
                update(WebSession).where(WebSession.id == row.id).values(last_seen_at=moment)
            )
    return WebUser(row, user, workspace)


def do_sign_out(session: AsyncSession, web: WebUser) -> None:
    """End this browser's session."""
    web.session.revoked_at = now()
    events.record(
        session,
        "auth.logout",
        workspace_id=web.workspace.id,
        actor=web.actor,
        data={"session_id": str(web.session.id)},
    )


async def do_sign_out_everywhere(session: AsyncSession, web: WebUser) -> int:
    """End every session of the user, this one included; how many were open."""
    count = await repository.revoke_sessions(session, web.workspace.id, web.user.id, now())
    events.record(
        session,
        "auth.sessions_revoked",
        workspace_id=web.workspace.id,
        actor=web.actor,
        data={"user_id": str(web.user.id), "sessions": count},
    )
    return count


# -- the second factor -----------------------------------------------------------------------


def mfa_cookie(user_id: uuid.UUID, *, at: datetime | None = None) -> str:
    """A short-lived signed note that this user's password was right."""
    expires = int(((at or now()) + MFA_TTL).timestamp())
    payload = f"{user_id}.{expires}"
    return f"{payload}.{internal_hmac('web-mfa', payload)}"


def read_mfa_cookie(value: str | None) -> uuid.UUID | None:
    """The user of a valid, unexpired second-factor note."""
    if not value or value.count(".") != 2:
        return None
    payload, _sep, signature = value.rpartition(".")
    if not constant_time_equal(signature, internal_hmac("web-mfa", payload)):
        return None
    user_id, _sep, expires = payload.partition(".")
    try:
        if int(expires) <= now().timestamp():
            return None
        return uuid.UUID(user_id)
    except ValueError:
        return None


def _accept_code(totp: UserTotp, code: str) -> bool:
    """Whether ``code`` is current (one step of drift either way) and not used before."""
    code = "".join(code.split())
    if not code.isdigit() or len(code) != 6:
        return False
    generator = pyotp.TOTP(str(decrypt_json(totp.secret_encrypted)["secret"]))
    current = generator.timecode(now())
    for counter in (current - 1, current, current + 1):
        if constant_time_equal(generator.generate_otp(counter), code):
            if totp.last_counter is not None and counter <= totp.last_counter:
                return False
            totp.last_counter = counter
            return True
    return False


async def do_check_second_factor(session: AsyncSession, *, user_id: uuid.UUID, code: str) -> SignIn:
    """The code of a user whose password was right; failures count towards the limit."""
    key = _key("totp", str(user_id))
    if await _locked(session, key, MAX_FAILURES_PER_ACCOUNT):
        log.warning("second factor refused: too many failed codes")
        return SignIn(LOCKED)
    found = await repository.user_with_workspace(session, user_id)
    if found is None:
        return SignIn(INVALID)
    user, workspace = found
    totp = await repository.totp_of(session, workspace.id, user.id)
    if totp is None or totp.enabled_at is None or not user.active:
        return SignIn(INVALID)
    if not _accept_code(totp, code):
        _failed(session, key, [(user, workspace)], reason="second_factor")
        return SignIn(INVALID)
    await repository.forget_failures(session, key)
    return SignIn(OK, user=user, workspace=workspace)


async def do_begin_totp(session: AsyncSession, web: WebUser) -> str:
    """A new secret for the user to add to their authenticator app (not active yet)."""
    totp = await repository.totp_of(session, web.workspace.id, web.user.id)
    if totp is not None and totp.enabled_at is not None:
        raise Conflict(_("Two-step verification is already on."), code="totp_enabled")
    secret = pyotp.random_base32()
    if totp is None:
        totp = UserTotp(user_id=web.user.id, workspace_id=web.workspace.id, created_at=now())
        session.add(totp)
    totp.secret_encrypted = encrypt_json({"secret": secret})
    totp.last_counter = None
    return secret


async def pending_totp_secret(session: AsyncSession, web: WebUser) -> str | None:
    """The secret being set up, to show again until it is confirmed."""
    totp = await repository.totp_of(session, web.workspace.id, web.user.id)
    if totp is None or totp.enabled_at is not None:
        return None
    return str(decrypt_json(totp.secret_encrypted)["secret"])


async def totp_enabled(session: AsyncSession, web: WebUser) -> bool:
    """Whether the user signs in with a code as well."""
    totp = await repository.totp_of(session, web.workspace.id, web.user.id)
    return totp is not None and totp.enabled_at is not None


def provisioning_uri(secret: str, email: str) -> str:
    """The ``otpauth://`` address authenticator apps read."""
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=TOTP_ISSUER)


def qr_code(uri: str) -> str:
    """The ``otpauth://`` address as a QR code (an SVG ``data:`` URI) for phones to scan."""
    return str(segno.make(uri, error="m").svg_data_uri(scale=5, border=2))


async def do_enable_totp(session: AsyncSession, web: WebUser, code: str) -> None:
    """Switch the second factor on once the user proves their app shows the right code."""
    totp = await repository.totp_of(session, web.workspace.id, web.user.id)
    if totp is None or totp.enabled_at is not None:
        raise Conflict(_("Start setting up two-step verification first."), code="totp_not_pending")
    if not _accept_code(totp, code):
        raise InvalidPayload(_("That code is not right. Check your app's clock."), code="bad_code")
    totp.enabled_at = now()
    events.record(session, "auth.totp_enabled", workspace_id=web.workspace.id, actor=web.actor)


async def do_disable_totp(session: AsyncSession, web: WebUser, password: str) -> None:
    """Switch the second factor off; the password is asked again."""
    if not await asyncio.to_thread(verify_password, web.user.password_hash, password):
        raise InvalidPayload(_("The password is not right."), code="bad_password")
    totp = await repository.totp_of(session, web.workspace.id, web.user.id)
    if totp is None:
        return
    await session.delete(totp)
    events.record(session, "auth.totp_disabled", workspace_id=web.workspace.id, actor=web.actor)
