"""The agent workspace's pages and HTMX fragments.

Thin routes, as in the API: a dependency gives the signed-in user (from the session cookie)
and checks the CSRF token of every POST; each route calls ``web.service`` (which calls the
domain services the REST API uses) and renders a template. Errors render as a page, or as a
message in the page's toast for HTMX requests; the transaction is rolled back first.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from hilo.attachments import repository as attachment_repository
from hilo.auth import service as auth
from hilo.channels import service as channels
from hilo.clock import now
from hilo.conversations import repository as conversation_repository
from hilo.conversations import views as conversation_views
from hilo.conversations.service import TemplateChoice
from hilo.crm import service as crm
from hilo.crm.schemas import ContactPatch
from hilo.deps import Session
from hilo.errors import Forbidden, HiloError, InvalidPayload, NotFound
from hilo.i18n import LOCALES, _, negotiate, translate
from hilo.realtime.service import issue_ticket
from hilo.settings import get_settings
from hilo.web import render, repository, service, signin
from hilo.web.render import page
from hilo.web.signin import (
    LANG_COOKIE,
    MFA_COOKIE,
    PRE_COOKIE,
    SESSION_COOKIE,
    WebUser,
)

log = logging.getLogger(__name__)

MAX_FORM_BYTES = 256 * 1024


class SignInRequired(Exception):
    """The request has no valid session."""


class WebRoute(APIRoute):
    """Renders errors as HTML (after the request's transaction rolled back)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired:
                return _to_sign_in(request)
            except HiloError as exc:
                log.info(
                    "%s %s -> %s %s", request.method, request.url.path, exc.status_code, exc.code
                )
                return _error(request, exc.status_code, exc.message, **exc.params)
            except (RequestValidationError, StarletteHTTPException) as exc:
                status = getattr(exc, "status_code", 404)
                log.info("%s %s -> %s", request.method, request.url.path, status)
                return _error(request, status if status != 422 else 404, _("Not found."))

        return route


router = APIRouter(route_class=WebRoute, include_in_schema=False)


def install(app: FastAPI) -> None:
    """Add the workspace's pages and its static files to the application."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=render.STATIC), name="static")


# -- request helpers -------------------------------------------------------------------------


def _is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def _locale(request: Request, user_locale: str | None = None) -> str:
    """The user's language, else the one picked before signing in, else the browser's."""
    if user_locale and user_locale[:2] in LOCALES:
        return user_locale[:2]
    cookie = request.cookies.get(LANG_COOKIE)
    if cookie in LOCALES:
        return str(cookie)
    return negotiate(request.headers.get("accept-language"))


def _t(locale: str) -> service.Translate:
    def gettext(message: str, **params: Any) -> str:
        return translate(message, locale, **params)

    return gettext


def _set_cookie(response: Response, name: str, value: str, *, max_age: int | None) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=signin.cookie_secure(),
        path="/",
    )


def _safe_next(value: str | None) -> str:
    """Where to go after signing in: a path of the workspace only, never another site."""
    if value and value.startswith("/app") and not value.startswith("//") and "\\" not in value:
        parts = urlsplit(value)
        if not parts.scheme and not parts.netloc:
            return value
    return "/app/inbox"


def _to_sign_in(request: Request) -> Response:
    target = "/login"
    if request.method == "GET" and not _is_htmx(request):
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        target += "?next=" + quote(path, safe="")
        return RedirectResponse(target, status_code=303)
    if _is_htmx(request):
        return Response(status_code=401, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def _error(request: Request, status: int, message: str, **params: Any) -> Response:
    web: WebUser | None = getattr(request.state, "web", None)
    locale = _locale(request, web.user.locale if web else None)
    text = translate(message, locale, **params)
    if _is_htmx(request):
        return page(
            "_toast.html",
            {"message": text, "level": "error"},
            locale=locale,
            status_code=status,
            headers={"HX-Retarget": "#toast", "HX-Reswap": "innerHTML"},
        )
    return page(
        "error.html",
        {"web": web, "status": status, "message": text, "csrf": web.csrf if web else ""},
        locale=locale,
        timezone=web.workspace.timezone if web else "UTC",
        status_code=status,
    )


def _render(
    request: Request,
    web: WebUser,
    template: str,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> Response:
    return page(
        template,
        {"web": web, "csrf": web.csrf, "path": request.url.path, **context},
        locale=_locale(request, web.user.locale),
        timezone=web.workspace.timezone,
        status_code=status_code,
        headers=headers,
    )


def _check_origin(request: Request) -> None:
    """A browser's cross-site POST carries another Origin: refuse it whatever the token."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return
    allowed = {
        f"{request.url.scheme}://{request.headers.get('host', '')}",
        get_settings().public_url.rstrip("/"),
    }
    if origin.rstrip("/") not in allowed:
        raise Forbidden(
            _("This form has expired. Reload the page and try again."), code="csrf_failed"
        )


class Form:
    """An ``application/x-www-form-urlencoded`` body (HTMX and plain forms send nothing else)."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        self.fields = fields

    def get(self, name: str, default: str = "") -> str:
        values = self.fields.get(name)
        return values[0] if values else default

    def getlist(self, name: str) -> list[str]:
        return self.fields.get(name, [])


async def _form(request: Request) -> Form:
    cached: Form | None = getattr(request.state, "form", None)
    if cached is not None:
        return cached
    form = Form({})
    if request.method in ("POST", "PUT", "PATCH", "DELETE"):
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > MAX_FORM_BYTES:
                raise InvalidPayload(_("The form is too large."), code="form_too_large")
        try:
            form = Form(
                parse_qs(
                    body.decode(), keep_blank_values=True, max_num_fields=500, strict_parsing=False
                )
            )
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidPayload(_("The form could not be read."), code="invalid_form") from exc
        # No text field holds a NUL (PostgreSQL refuses it): a 422, not a 500 at the query.
        if any("\x00" in v for k, vs in form.fields.items() for v in (k, *vs)):
            raise InvalidPayload(_("The form could not be read."), code="invalid_form")
    request.state.form = form
    return form


FormData = Annotated[Form, Depends(_form)]


async def _web_user(request: Request, session: Session) -> WebUser:
    web = await signin.authenticate(session, request.cookies.get(SESSION_COOKIE))
    if web is None:
        raise SignInRequired()
    request.state.web = web
    return web


CurrentWeb = Annotated[WebUser, Depends(_web_user)]


async def _checked(request: Request, web: CurrentWeb, form: FormData) -> WebUser:
    _check_origin(request)
    signin.check_csrf(web.csrf, request.headers.get("x-csrf-token") or form.get("csrf_token"))
    return web


Checked = Annotated[WebUser, Depends(_checked)]


def _require(web: WebUser, *roles: str) -> None:
    if web.user.role not in roles:
        raise Forbidden()


def _refresh(*parts: str) -> dict[str, str]:
    """Tell the page which of its parts to load again (see app.js)."""
    return {"HX-Trigger": ", ".join(f"refresh-{p}" for p in parts)}


# -- signing in ------------------------------------------------------------------------------


def _pre_seed(request: Request) -> tuple[str, bool]:
    seed = request.cookies.get(PRE_COOKIE)
    if seed and 16 <= len(seed) <= 64:
        return seed, False
    return uuid.uuid4().hex, True


def _sign_in_page(
    request: Request,
    *,
    status_code: int = 200,
    error: str | None = None,
    email: str = "",
    workspace: str = "",
    workspaces: list[str] | None = None,
    template: str = "login.html",
) -> Response:
    seed, new = _pre_seed(request)
    response = page(
        template,
        {
            "web": None,
            "csrf": signin.csrf_token(f"pre:{seed}"),
            "error": error,
            "email": email,
            "workspace": workspace,
            "workspaces": workspaces or [],
            "next": _safe_next(request.query_params.get("next") or None),
        },
        locale=_locale(request),
        status_code=status_code,
    )
    if new:
        _set_cookie(response, PRE_COOKIE, seed, max_age=None)
    return response


def _check_pre_csrf(request: Request, form: Form) -> None:
    _check_origin(request)
    seed = request.cookies.get(PRE_COOKIE)
    if not seed:
        raise Forbidden(
            _("This form has expired. Reload the page and try again."), code="csrf_failed"
        )
    signin.check_csrf(signin.csrf_token(f"pre:{seed}"), form.get("csrf_token"))


@router.get("/")
async def root(request: Request) -> Response:
    """The workspace (which asks to sign in when needed)."""
    return RedirectResponse("/app/inbox", status_code=303)


@router.get("/login")
async def login_page(request: Request, session: Session) -> Response:
    """The sign-in form."""
    if await signin.authenticate(session, request.cookies.get(SESSION_COOKIE)):
        return RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
    return _sign_in_page(request, workspace=request.query_params.get("workspace", ""))


async def _signed_in(
    request: Request, session: Session, result: signin.SignIn, method: str, next_url: str
) -> Response:
    assert result.user is not None and result.workspace is not None
    token = await signin.do_start_session(
        session,
        user=result.user,
        workspace=result.workspace,
        user_agent=request.headers.get("user-agent", ""),
        method=method,
    )
    response = RedirectResponse(_safe_next(next_url), status_code=303)
    _set_cookie(response, SESSION_COOKIE, token, max_age=int(signin.SESSION_TTL.total_seconds()))
    response.delete_cookie(MFA_COOKIE, path="/")
    return response


@router.post("/login")
async def login(request: Request, session: Session, form: FormData) -> Response:
    """Check the e-mail and password; then the second factor, or straight in."""
    email, workspace = form.get("email").strip(), form.get("workspace").strip()
    try:
        _check_pre_csrf(request, form)
    except Forbidden as exc:
        return _sign_in_page(request, status_code=403, error=exc.message, email=email)
    result = await signin.do_sign_in(
        session,
        email=email,
        password=form.get("password"),
        workspace_slug=workspace or None,
        address=request.client.host if request.client else "",
    )
    if result.status == signin.LOCKED:
        return _sign_in_page(
            request,
            status_code=429,
            error=_("Too many failed attempts. Wait 15 minutes and try again."),
            email=email,
        )
    if result.status == signin.INVALID:
        return _sign_in_page(
            request,
            status_code=401,
            error=_("The e-mail or the password is not right."),
            email=email,
            workspace=workspace,
        )
    if result.status == signin.CHOOSE_WORKSPACE:
        return _sign_in_page(
            request,
            error=_("This e-mail works in several workspaces: choose one."),
            email=email,
            workspaces=result.workspaces,
        )
    next_url = form.get("next")
    if result.status == signin.SECOND_FACTOR:
        assert result.user is not None
        response = RedirectResponse(
            "/login/code?next=" + quote(_safe_next(next_url), safe=""), status_code=303
        )
        _set_cookie(
            response,
            MFA_COOKIE,
            signin.mfa_cookie(result.user.id),
            max_age=int(signin.MFA_TTL.total_seconds()),
        )
        return response
    return await _signed_in(request, session, result, "password", next_url)


@router.get("/login/code")
async def code_page(request: Request) -> Response:
    """The second step: the code of the authenticator app."""
    if signin.read_mfa_cookie(request.cookies.get(MFA_COOKIE)) is None:
        return RedirectResponse("/login", status_code=303)
    return _sign_in_page(request, template="login_code.html")


@router.post("/login/code")
async def code(request: Request, session: Session, form: FormData) -> Response:
    """Check the second factor and sign in."""
    user_id = signin.read_mfa_cookie(request.cookies.get(MFA_COOKIE))
    if user_id is None:
        return RedirectResponse("/login", status_code=303)
    try:
        _check_pre_csrf(request, form)
    except Forbidden as exc:
        return _sign_in_page(
            request, status_code=403, error=exc.message, template="login_code.html"
        )
    result = await signin.do_check_second_factor(session, user_id=user_id, code=form.get("code"))
    if result.status == signin.LOCKED:
        return _sign_in_page(
            request,
            status_code=429,
            error=_("Too many failed attempts. Wait 15 minutes and try again."),
            template="login_code.html",
        )
    if result.status != signin.OK:
        return _sign_in_page(
            request,
            status_code=401,
            error=_("That code is not right. Check your app's clock."),
            template="login_code.html",
        )
    return await _signed_in(request, session, result, "password+totp", form.get("next"))


@router.post("/language")
async def choose_language(request: Request, form: FormData) -> Response:
    """The language of the sign-in pages (before anyone is signed in)."""
    _check_pre_csrf(request, form)
    locale = form.get("locale")
    response = RedirectResponse("/login", status_code=303)
    if locale in LOCALES:
        _set_cookie(response, LANG_COOKIE, locale, max_age=365 * 24 * 3600)
    return response


@router.post("/logout")
async def logout(session: Session, web: Checked) -> Response:
    """Sign this browser out."""
    signin.do_sign_out(session, web)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# -- the inbox -------------------------------------------------------------------------------


def _filters(request: Request) -> service.InboxFilters:
    return service.read_filters(dict(request.query_params))


async def _workspace_page(
    request: Request,
    session: Session,
    web: WebUser,
    conversation_id: uuid.UUID | None,
) -> Response:
    filters = _filters(request)
    locale = _locale(request, web.user.locale)
    conversation = (
        await service.conversation(session, web, conversation_id, _t(locale))
        if conversation_id
        else None
    )
    inbox = await service.inbox(session, web, filters, selected=conversation_id)
    return _render(
        request,
        web,
        "workspace.html",
        inbox=inbox,
        conv=conversation,
        last_event_id=await repository.last_event_id(session, web.workspace.id),
        nav="inbox",
    )


@router.get("/app")
async def app_home() -> Response:
    """The inbox is the home page."""
    return RedirectResponse("/app/inbox", status_code=303)


@router.get("/app/inbox")
async def inbox_page(request: Request, session: Session, web: CurrentWeb) -> Response:
    """The inbox, no conversation open."""
    return await _workspace_page(request, session, web, None)


@router.get("/app/inbox/list")
async def inbox_list(request: Request, session: Session, web: CurrentWeb) -> Response:
    """The inbox's list (reloaded live, filtered, and one page more with ``cursor``)."""
    filters = _filters(request)
    cursor = request.query_params.get("cursor") or None
    selected = service.parse_uuid(request.query_params.get("selected"))
    inbox = await service.inbox(session, web, filters, cursor=cursor, selected=selected)
    template = "_inbox_rows.html" if cursor else "_inbox_list.html"
    return _render(request, web, template, inbox=inbox)


@router.get("/app/conversations/{conversation_id}")
async def conversation_page(
    conversation_id: uuid.UUID, request: Request, session: Session, web: CurrentWeb
) -> Response:
    """The inbox with one conversation open: timeline, reply box and context panel."""
    return await _workspace_page(request, session, web, conversation_id)


@router.get("/app/conversations/{conversation_id}/header")
async def conversation_header(
    conversation_id: uuid.UUID, request: Request, session: Session, web: CurrentWeb
) -> Response:
    """Owner, team, status, priority and labels."""
    header = await service.header(session, web, conversation_id)
    return _render(request, web, "_conv_header.html", header=header)


@router.get("/app/conversations/{conversation_id}/timeline")
async def conversation_timeline(
    conversation_id: uuid.UUID,
    request: Request,
    session: Session,
    web: CurrentWeb,
    show: Annotated[int, Query(ge=1, le=service.TIMELINE_MAX)] = service.TIMELINE_WINDOW,
) -> Response:
    """The unified timeline: the latest ``show`` messages."""
    t = _t(_locale(request, web.user.locale))
    view = await service.timeline(session, web, conversation_id, t, show=show)
    return _render(request, web, "_timeline.html", timeline=view, conversation_id=conversation_id)


@router.get("/app/conversations/{conversation_id}/reply")
async def conversation_reply(
    conversation_id: uuid.UUID, request: Request, session: Session, web: CurrentWeb
) -> Response:
    """The reply box."""
    t = _t(_locale(request, web.user.locale))
    mode = "note" if request.query_params.get("mode") == "note" else "reply"
    reply = await service.reply(session, web, conversation_id, t, mode=mode)
    return _render(request, web, "_reply.html", reply=reply)


@router.get("/app/conversations/{conversation_id}/panel")
async def conversation_panel(
    conversation_id: uuid.UUID, request: Request, session: Session, web: CurrentWeb
) -> Response:
    """The context panel of the conversation's contact."""
    t = _t(_locale(request, web.user.locale))
    panel = await service.panel(session, web, conversation_id, t)
    return _render(request, web, "_panel.html", panel=panel)


@router.get("/app/conversations/{conversation_id}/trail")
async def conversation_trail(
    conversation_id: uuid.UUID, request: Request, session: Session, web: CurrentWeb
) -> Response:
    """Every recorded change of the conversation: who, what, when."""
    trail = await conversation_views.conversation_events(
        session, web.workspace.id, conversation_id, cursor=None, limit=1000
    )
    users = {
        str(u.id): service.display_name(u) for u in await auth.list_users(session, web.workspace.id)
    }
    return _render(
        request, web, "_trail.html", trail=trail.items, users=users, conversation_id=conversation_id
    )


@router.get("/app/conversations/{conversation_id}/canned")
async def conversation_canned(
    conversation_id: uuid.UUID, request: Request, session: Session, web: CurrentWeb
) -> Response:
    """Canned responses, filled in for this customer, to insert into the reply."""
    found = await service.canned_for(
        session, web, conversation_id, request.query_params.get("q", "")[:100]
    )
    return _render(request, web, "_canned_list.html", canned=found)


# -- replying and ownership ------------------------------------------------------------------


@router.post("/app/conversations/{conversation_id}/messages")
async def send(
    conversation_id: uuid.UUID, request: Request, session: Session, web: Checked, form: FormData
) -> Response:
    """Reply on the chosen channel, or add an internal note."""
    note = form.get("mode") == "note"
    template = None
    if form.get("template") and not note:
        name, _sep, language = form.get("template").partition("|")
        template = TemplateChoice(name=name, language=language, params=form.getlist("param"))
    await service.do_send(
        session,
        web,
        conversation_id,
        text=form.get("text"),
        channel_id=service.parse_uuid(form.get("channel_id")),
        note=note,
        template=template,
    )
    t = _t(_locale(request, web.user.locale))
    reply = await service.reply(session, web, conversation_id, t, mode="note" if note else "reply")
    return _render(request, web, "_reply.html", reply=reply, headers=_refresh("timeline", "inbox"))


def _snooze_until(value: str, timezone: str) -> datetime:
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidPayload(_("Choose until when to snooze."), code="snooze_needs_time") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


@router.post("/app/conversations/{conversation_id}/update")
async def update(
    conversation_id: uuid.UUID, request: Request, session: Session, web: Checked, form: FormData
) -> Response:
    """Status (snoozing until a time), assignee, team or priority."""
    fields: dict[str, Any] = {}
    if form.get("status"):
        fields["status"] = form.get("status")
        if fields["status"] == "snoozed":
            fields["snoozed_until"] = _snooze_until(
                form.get("snoozed_until"), web.workspace.timezone
            )
    if "assignee_id" in form.fields:
        value = form.get("assignee_id")
        fields["assignee_id"] = web.user.id if value == "me" else service.parse_uuid(value)
    if "team_id" in form.fields:
        fields["team_id"] = service.parse_uuid(form.get("team_id"))
    if form.get("priority"):
        fields["priority"] = form.get("priority")
    await service.do_update(session, web, conversation_id, fields)
    header = await service.header(session, web, conversation_id)
    return _render(
        request, web, "_conv_header.html", header=header, headers=_refresh("timeline", "inbox")
    )


@router.post("/app/conversations/{conversation_id}/labels")
async def label(
    conversation_id: uuid.UUID, request: Request, session: Session, web: Checked, form: FormData
) -> Response:
    """Add a label, or remove one (``remove=1``)."""
    await service.do_label(
        session, web, conversation_id, form.get("label"), add=form.get("remove") != "1"
    )
    header = await service.header(session, web, conversation_id)
    return _render(
        request, web, "_conv_header.html", header=header, headers=_refresh("timeline", "inbox")
    )


# -- the contact -----------------------------------------------------------------------------


@router.get("/app/conversations/{conversation_id}/contact/edit")
async def contact_form(
    conversation_id: uuid.UUID, request: Request, session: Session, web: CurrentWeb
) -> Response:
    """The form that edits the contact's profile."""
    t = _t(_locale(request, web.user.locale))
    panel = await service.panel(session, web, conversation_id, t)
    companies = await crm.list_companies(session, web.workspace.id, cursor=None, limit=200)
    return _render(request, web, "_contact_edit.html", panel=panel, companies=companies.items)


def _attributes(form: Form) -> dict[str, Any]:
    keys, values = form.getlist("attr_key"), form.getlist("attr_value")
    attributes: dict[str, Any] = {}
    for key, value in zip(keys, values, strict=False):
        if key.strip():
            attributes[key.strip()[:64]] = value.strip()[:500]
    return attributes


@router.post("/app/conversations/{conversation_id}/contact")
async def contact_save(
    conversation_id: uuid.UUID, request: Request, session: Session, web: Checked, form: FormData
) -> Response:
    """Save the contact's profile (the REST API's PATCH of a contact)."""
    conversation = await conversation_repository.get(session, web.workspace.id, conversation_id)
    try:
        body = ContactPatch(
            name=form.get("name").strip(),
            company_id=service.parse_uuid(form.get("company_id")),
            attributes=_attributes(form),
            locale=form.get("locale") or None,
            timezone=form.get("timezone").strip() or None,
        )
    except ValueError as exc:
        raise InvalidPayload(_("Check the contact's fields."), code="invalid_contact") from exc
    await crm.do_update_contact(
        session,
        workspace_id=web.workspace.id,
        contact_id=conversation.contact_id,
        body=body,
        actor=web.actor,
    )
    t = _t(_locale(request, web.user.locale))
    panel = await service.panel(session, web, conversation_id, t)
    return _render(request, web, "_panel.html", panel=panel, headers=_refresh("inbox", "header"))


@router.get("/app/conversations/{conversation_id}/contacts")
async def contact_search(
    conversation_id: uuid.UUID, request: Request, session: Session, web: CurrentWeb
) -> Response:
    """Contacts to merge into this one, by name, phone or e-mail."""
    found = await service.search_contacts(
        session, web, conversation_id, request.query_params.get("q", "")[:200]
    )
    return _render(
        request, web, "_merge_results.html", found=found, conversation_id=conversation_id
    )


@router.get("/app/conversations/{conversation_id}/merge")
async def merge_confirm(
    conversation_id: uuid.UUID, request: Request, session: Session, web: CurrentWeb
) -> Response:
    """Ask before two contacts become one."""
    other_id = service.parse_uuid(request.query_params.get("other"))
    if other_id is None:
        raise NotFound()
    survivor, other, identities = await service.merge_candidate(
        session, web, conversation_id, other_id
    )
    return _render(
        request,
        web,
        "_merge_confirm.html",
        survivor=survivor,
        other=other,
        identities=identities,
        conversation_id=conversation_id,
    )


@router.post("/app/conversations/{conversation_id}/merge")
async def merge(
    conversation_id: uuid.UUID, request: Request, session: Session, web: Checked, form: FormData
) -> Response:
    """Fold the other contact into this conversation's contact."""
    other_id = service.parse_uuid(form.get("other_id"))
    if other_id is None:
        raise InvalidPayload(_("Choose the contact to merge."), code="invalid_contact")
    await service.do_merge(session, web, conversation_id, other_id)
    t = _t(_locale(request, web.user.locale))
    panel = await service.panel(session, web, conversation_id, t)
    return _render(
        request, web, "_panel.html", panel=panel, headers=_refresh("inbox", "timeline", "header")
    )


@router.get("/app/attachments/{attachment_id}")
async def attachment(attachment_id: uuid.UUID, session: Session, web: CurrentWeb) -> Response:
    """A stored file of the workspace; downloaded, never rendered as a page."""
    row = await attachment_repository.get_with_content(session, web.workspace.id, attachment_id)
    inline = row.mime_type.startswith(("image/", "audio/", "video/")) and "svg" not in row.mime_type
    filename = quote(row.filename or f"{row.kind}-{row.id}", safe="")
    disposition = "inline" if inline else "attachment"
    return Response(
        row.content,
        media_type=row.mime_type if inline else "application/octet-stream",
        headers={
            "Content-Disposition": f"{disposition}; filename*=UTF-8''{filename}",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "private, max-age=300",
        },
    )


# -- live updates ----------------------------------------------------------------------------


@router.post("/app/stream/ticket")
async def stream_ticket(web: Checked) -> JSONResponse:
    """A ticket for ``/api/v1/stream`` for the signed-in user (the browser has no token)."""
    ticket, expires_at = issue_ticket(web.principal)
    return JSONResponse(
        {"ticket": ticket, "expires_at": expires_at.isoformat()},
        headers={"Cache-Control": "no-store"},
    )


# -- the user's own settings -----------------------------------------------------------------


async def _settings_page(
    request: Request,
    session: Session,
    web: WebUser,
    *,
    secret: str | None = None,
    error: str | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> Response:
    secret = secret or await signin.pending_totp_secret(session, web)
    return _render(
        request,
        web,
        "settings.html",
        status_code=status_code,
        nav="settings",
        totp_on=await signin.totp_enabled(session, web),
        secret=secret,
        otpauth=signin.provisioning_uri(secret, web.user.email) if secret else None,
        qr=signin.qr_code(signin.provisioning_uri(secret, web.user.email)) if secret else None,
        sessions=await repository.sessions_of(session, web.workspace.id, web.user.id, since=now()),
        sign_ins=await service.recent_sign_ins(session, web),
        error=error,
        notice=notice,
    )


@router.get("/app/settings")
async def settings_page(request: Request, session: Session, web: CurrentWeb) -> Response:
    """Language, two-step verification and the sessions open."""
    return await _settings_page(request, session, web)


@router.post("/app/settings/language")
async def settings_language(
    request: Request, session: Session, web: Checked, form: FormData
) -> Response:
    """The language this user works in."""
    locale = form.get("locale") or None
    await auth.do_set_locale(
        session, workspace_id=web.workspace.id, user_id=web.user.id, locale=locale
    )
    response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
    if locale:
        _set_cookie(response, LANG_COOKIE, locale, max_age=365 * 24 * 3600)
    return response


@router.post("/app/settings/totp/start")
async def totp_start(request: Request, session: Session, web: Checked) -> Response:
    """Make a new secret to add to the authenticator app."""
    secret = await signin.do_begin_totp(session, web)
    return await _settings_page(request, session, web, secret=secret)


@router.post("/app/settings/totp/enable")
async def totp_enable(request: Request, session: Session, web: Checked, form: FormData) -> Response:
    """Switch two-step verification on with a first code."""
    try:
        await signin.do_enable_totp(session, web, form.get("code"))
    except InvalidPayload as exc:  # nothing was changed: show the form again
        return await _settings_page(request, session, web, error=exc.message, status_code=422)
    return await _settings_page(request, session, web, notice=_("Two-step verification is on."))


@router.post("/app/settings/totp/disable")
async def totp_disable(
    request: Request, session: Session, web: Checked, form: FormData
) -> Response:
    """Switch two-step verification off (asks for the password)."""
    try:
        await signin.do_disable_totp(session, web, form.get("password"))
    except InvalidPayload as exc:  # nothing was changed: show the form again
        return await _settings_page(request, session, web, error=exc.message, status_code=422)
    return await _settings_page(request, session, web, notice=_("Two-step verification is off."))


@router.post("/app/settings/sign-out-everywhere")
async def sign_out_everywhere(session: Session, web: Checked) -> Response:
    """End every session of this user, on every device."""
    await signin.do_sign_out_everywhere(session, web)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# -- administration --------------------------------------------------------------------------


async def _channels_page(
    request: Request,
    session: Session,
    web: WebUser,
    *,
    created: dict[str, Any] | None = None,
    revealed: tuple[uuid.UUID, dict[str, Any]] | None = None,
) -> Response:
    return _render(
        request,
        web,
        "admin_channels.html",
        nav="channels",
        channels=await service.channels_admin(session, web),
        types=service.channel_types(),
        created=created,
        revealed=revealed,
    )


@router.get("/app/admin/channels")
async def admin_channels(request: Request, session: Session, web: CurrentWeb) -> Response:
    """Channels with their webhook addresses and set-up help."""
    _require(web, "admin")
    return await _channels_page(request, session, web)


def _config(form: Form) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for key, value in zip(form.getlist("config_key"), form.getlist("config_value"), strict=False):
        if key.strip() and value.strip():
            config[key.strip()[:64]] = value.strip()[:2000]
    return config


@router.post("/app/admin/channels")
async def admin_channel_create(
    request: Request, session: Session, web: Checked, form: FormData
) -> Response:
    """Connect a channel; its secrets are shown this once."""
    _require(web, "admin")
    channel, secrets = await channels.do_create(
        session,
        workspace_id=web.workspace.id,
        type=form.get("type"),
        name=form.get("name"),
        provider=form.get("provider") or None,
        config=_config(form),
        actor=web.actor,
    )
    created = {"channel": channel, "secrets": secrets, "webhook_url": channels.webhook_url(channel)}
    return await _channels_page(request, session, web, created=created)


@router.post("/app/admin/channels/{channel_id}/secrets")
async def admin_channel_secrets(
    channel_id: uuid.UUID, request: Request, session: Session, web: Checked
) -> Response:
    """Show a channel's credentials again (recorded in the trail)."""
    _require(web, "admin")
    secrets = await service.do_reveal_secret(session, web, channel_id)
    return await _channels_page(request, session, web, revealed=(channel_id, secrets))


async def _people_page(
    request: Request, session: Session, web: WebUser, *, notice: str | None = None
) -> Response:
    return _render(
        request,
        web,
        "admin_people.html",
        nav="people",
        users=await auth.list_users(session, web.workspace.id),
        teams=await service.teams_with_members(session, web.workspace.id),
        roles=auth.ROLES,
        notice=notice,
    )


@router.get("/app/admin/people")
async def admin_people(request: Request, session: Session, web: CurrentWeb) -> Response:
    """Users and teams."""
    return await _people_page(request, session, web)


@router.post("/app/admin/users")
async def admin_user_create(
    request: Request, session: Session, web: Checked, form: FormData
) -> Response:
    """Add a user who signs in with e-mail and password (admins only)."""
    _require(web, "admin")
    email = form.get("email").strip()
    if "@" not in email or len(email) > 320:
        raise InvalidPayload(_("Enter a valid e-mail address."), code="invalid_email")
    await auth.do_create_user(
        session,
        workspace_id=web.workspace.id,
        email=email,
        role=form.get("role") or "agent",
        password=form.get("password"),
        name=form.get("name").strip()[:200],
        actor=web.actor,
    )
    return await _people_page(request, session, web, notice=_("User added."))


@router.post("/app/admin/teams")
async def admin_team_create(
    request: Request, session: Session, web: Checked, form: FormData
) -> Response:
    """Add a team (admins and supervisors)."""
    _require(web, "admin", "supervisor")
    name = form.get("name").strip()
    if not name or len(name) > 200:
        raise InvalidPayload(_("A team needs a name."), code="invalid_team")
    await auth.do_create_team(session, workspace_id=web.workspace.id, name=name, actor=web.actor)
    return await _people_page(request, session, web, notice=_("Team added."))


@router.post("/app/admin/teams/{team_id}/members")
async def admin_team_member(
    team_id: uuid.UUID, request: Request, session: Session, web: Checked, form: FormData
) -> Response:
    """Put a user in a team (admins and supervisors)."""
    _require(web, "admin", "supervisor")
    user_id = service.parse_uuid(form.get("user_id"))
    if user_id is None:
        raise InvalidPayload(_("Choose a user."), code="invalid_user")
    await auth.do_add_member(
        session, workspace_id=web.workspace.id, team_id=team_id, user_id=user_id, actor=web.actor
    )
    return await _people_page(request, session, web, notice=_("Team updated."))


async def _canned_page(
    request: Request, session: Session, web: WebUser, *, notice: str | None = None
) -> Response:
    return _render(
        request,
        web,
        "admin_canned.html",
        nav="canned",
        canned=await repository.canned_list(session, web.workspace.id),
        variables=service.CANNED_VARIABLES,
        notice=notice,
    )


@router.get("/app/admin/canned")
async def admin_canned(request: Request, session: Session, web: CurrentWeb) -> Response:
    """Canned responses and the variables they may use."""
    return await _canned_page(request, session, web)


@router.post("/app/admin/canned")
async def admin_canned_save(
    request: Request, session: Session, web: Checked, form: FormData
) -> Response:
    """Create or change a canned response (admins and supervisors)."""
    _require(web, "admin", "supervisor")
    await service.do_save_canned(
        session,
        web,
        canned_id=service.parse_uuid(form.get("id")),
        shortcut=form.get("shortcut"),
        title=form.get("title"),
        body=form.get("body"),
    )
    return await _canned_page(request, session, web, notice=_("Canned response saved."))


@router.post("/app/admin/canned/{canned_id}/delete")
async def admin_canned_delete(
    canned_id: uuid.UUID, request: Request, session: Session, web: Checked
) -> Response:
    """Remove a canned response (admins and supervisors)."""
    _require(web, "admin", "supervisor")
    await service.do_delete_canned(session, web, canned_id)
    return await _canned_page(request, session, web, notice=_("Canned response removed."))
