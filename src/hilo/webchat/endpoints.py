"""The widget's public routes: its script, visitor sessions, messages, polling and the socket.

No bearer token here: a visitor is their signed visitor token (``X-Hilo-Visitor`` header,
or the socket's first frame), and the channel id in the path decides the workspace.
"""

from __future__ import annotations

import logging
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, WebSocket
from fastapi.responses import HTMLResponse, Response

from hilo.deps import Session, WriteSession, get_db
from hilo.errors import HiloError
from hilo.i18n import negotiate
from hilo.models import Channel, WebchatVisitor
from hilo.realtime.broker import Broker
from hilo.webchat import live, service
from hilo.webchat.schemas import (
    EmailIn,
    EmailOut,
    MessagesOut,
    SeenIn,
    SeenOut,
    SendOut,
    SessionIn,
    SessionOut,
    VisitorMessageIn,
)

log = logging.getLogger(__name__)

router = APIRouter(tags=["webchat"])

VisitorToken = Annotated[str | None, Header(alias="X-Hilo-Visitor", max_length=200)]


async def _visitor(
    channel_id: uuid.UUID, request: Request, session: Session, token: VisitorToken = None
) -> tuple[Channel, WebchatVisitor]:
    return await service.visitor_request(session, channel_id, request.headers, token)


Visitor = Annotated[tuple[Channel, WebchatVisitor], Depends(_visitor)]


def _broker(request: Request | WebSocket) -> Broker:
    broker: Broker = request.app.state.broker
    return broker


@router.get("/widget/{channel_id}.js", include_in_schema=False)
async def widget_script(channel_id: uuid.UUID, session: Session) -> Response:
    """The widget, for ``<script src=".../widget/{channel_id}.js" async></script>``."""
    script = await service.widget_script(session, channel_id)
    return Response(
        script,
        media_type="text/javascript; charset=utf-8",
        headers={"Cache-Control": "public, max-age=300"},
    )


@router.post("/webchat/{channel_id}/session")
async def start_session(
    channel_id: uuid.UUID, body: SessionIn, request: Request, session: Session
) -> SessionOut:
    """A page load: the visitor's token (the same visitor again when it still fits)."""
    channel = await service.get_channel(session, channel_id)
    service.check_origin(channel, request.headers)
    client = request.client.host if request.client else ""
    return await service.do_start_session(session, channel, body, client=client)


@router.get("/webchat/{channel_id}/messages")
async def list_messages(visitor: Visitor, session: Session) -> MessagesOut:
    """The latest messages of the visitor's conversation on this widget."""
    return await service.history(session, *visitor)


@router.post("/webchat/{channel_id}/messages")
async def send_message(body: VisitorMessageIn, visitor: Visitor, session: Session) -> SendOut:
    """A visitor's message (the fallback when the socket is unavailable)."""
    return await service.do_send(session, *visitor, body)


@router.post("/webchat/{channel_id}/seen")
async def mark_seen(body: SeenIn, visitor: Visitor, session: Session) -> SeenOut:
    """Replies the widget showed: delivered, or read when the chat was open."""
    return await service.do_seen(session, *visitor, body)


@router.post("/webchat/{channel_id}/email")
async def leave_email(body: EmailIn, visitor: Visitor, session: Session) -> EmailOut:
    """An e-mail to answer at when the visitor has left (unverified)."""
    return await service.do_leave_email(session, *visitor, body)


@router.get("/webchat/{channel_id}/confirm/{token}", include_in_schema=False)
async def confirm_email(
    channel_id: uuid.UUID, token: str, request: Request, session: WriteSession
) -> HTMLResponse:
    """The link e-mailed to a typed address: opening it proves the address is the visitor's."""
    locale = negotiate(request.headers.get("accept-language"))
    try:
        email = await service.do_confirm_email(session, channel_id, token)
    except HiloError as exc:
        log.info("e-mail confirmation on %s refused: %s", channel_id, exc.code)
        page = service.confirm_page(locale, error=exc)
        return HTMLResponse(page, status_code=exc.status_code)
    return HTMLResponse(service.confirm_page(locale, email=email))


@router.get("/webchat/{channel_id}/poll")
async def poll(
    channel_id: uuid.UUID,
    request: Request,
    token: VisitorToken = None,
    state: Annotated[str | None, Query(max_length=64)] = None,
    wait: Annotated[float, Query(ge=0, le=live.MAX_POLL_SECONDS)] = live.MAX_POLL_SECONDS,
) -> MessagesOut:
    """Long-polling: answers when the visitor's messages differ from ``state``."""
    # No request transaction: a poll waits for up to 25 seconds and must hold no lock.
    return await live.poll_request(
        get_db(request), _broker(request), channel_id, request.headers, token, state, wait
    )


@router.websocket("/webchat/{channel_id}/ws")
async def socket(websocket: WebSocket, channel_id: uuid.UUID) -> None:
    """The live socket (see :mod:`hilo.webchat.live` for its frames)."""
    await live.VisitorSocket(websocket, websocket.app.state.db, _broker(websocket)).serve(
        channel_id
    )
