"""Live stream routes: tickets, the WebSocket stream and its Server-Sent Events fallback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, WebSocket
from fastapi.responses import StreamingResponse
from starlette.websockets import WebSocketDisconnect

from hilo.auth.service import Principal, authenticate_token
from hilo.db import Database
from hilo.deps import CurrentPrincipal, Session
from hilo.errors import HiloError, Unauthorized
from hilo.realtime import service
from hilo.realtime.broker import GAP, SHUTDOWN, SLOW, Broker, Subscription
from hilo.realtime.schemas import StreamTicketOut

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/stream", tags=["stream"])

KEEPALIVE_SECONDS = 15.0
# How long EventSource waits before reconnecting by itself.
SSE_RETRY_MS = 2000
# Close codes: 4000 + the HTTP status for refusals; the standard ones when the server ends it.
WS_UNAUTHORIZED = 4401
WS_INVALID = 4422
WS_CLOSE_CODES = {SHUTDOWN: 1012, SLOW: 1013, GAP: 1013}


def _broker(state: object) -> Broker:
    broker: Broker = state.broker  # type: ignore[attr-defined]
    return broker


async def _stream_principal(
    request: Request, session: Session, ticket: str | None = None
) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _sep, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return await authenticate_token(session, token.strip())
    if ticket:
        return service.verify_ticket(ticket)
    raise Unauthorized()


StreamPrincipal = Annotated[Principal, Depends(_stream_principal)]


@router.post("/tickets")
async def create_ticket(principal: CurrentPrincipal) -> StreamTicketOut:
    """A 60-second ticket to open a stream with ``?ticket=`` (browsers send no bearer there)."""
    ticket, expires_at = service.issue_ticket(principal)
    return StreamTicketOut(ticket=ticket, expires_at=expires_at)


@router.websocket("")
async def stream_websocket(
    websocket: WebSocket, ticket: str | None = None, last_event_id: str | None = None
) -> None:
    """The workspace's events as JSON text frames; resumes after ``last_event_id``."""
    try:
        principal = service.verify_ticket(ticket)
        resume = service.parse_last_event_id(last_event_id)
    except HiloError as exc:
        # Accept first so a browser sees the close code (a refused handshake shows nothing).
        await websocket.accept()
        code = WS_UNAUTHORIZED if exc.status_code == 401 else WS_INVALID
        await websocket.close(code=code, reason=exc.code)
        return
    broker = _broker(websocket.app.state)
    # Subscribed before the handshake completes: once connected, no commit is missed.
    subscription = broker.subscribe(principal.workspace_id)
    try:
        await websocket.accept()
        end = await _pump(websocket, broker.db, subscription, principal, resume)
        if end is not None:
            with contextlib.suppress(Exception):
                await websocket.close(code=end, reason=subscription.closed_reason or "")
    finally:
        broker.unsubscribe(subscription)


async def _pump(
    websocket: WebSocket,
    db: Database,
    subscription: Subscription,
    principal: Principal,
    resume: int | None,
) -> int | None:
    """Send events until the client leaves (None) or the stream ends (the close code)."""

    async def send() -> None:
        async for item in service.follow(db, subscription, principal.workspace_id, resume):
            if item is not None:
                await websocket.send_text(item.json)

    async def watch() -> None:
        # Client frames are ignored; this notices the client leaving.
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass

    sender = asyncio.create_task(send())
    watcher = asyncio.create_task(watch())
    try:
        await asyncio.wait({sender, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sender, watcher):
            task.cancel()
        await asyncio.gather(sender, watcher, return_exceptions=True)
    if watcher.done() and not watcher.cancelled():
        return None
    if sender.cancelled():
        return None
    error = sender.exception()
    if error is None:
        return WS_CLOSE_CODES.get(subscription.closed_reason or "", 1000)
    if isinstance(error, WebSocketDisconnect | OSError):
        return None
    log.error("live stream failed", exc_info=error)
    return 1011


@router.get("/sse")
async def stream_sse(
    request: Request,
    principal: StreamPrincipal,
    last_event_id: str | None = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """Server-Sent Events fallback; resumes from ``Last-Event-ID`` (or ``?last_event_id=``)."""
    resume = service.parse_last_event_id(last_event_id_header, last_event_id)
    broker = _broker(request.app.state)
    return StreamingResponse(
        _sse(broker, principal, resume),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _sse(broker: Broker, principal: Principal, resume: int | None) -> AsyncIterator[str]:
    """The event-stream body: an opening comment, events and keep-alive comments."""
    subscription = broker.subscribe(principal.workspace_id)
    try:
        # Sent at once: a client that read it knows the stream is live.
        yield f"retry: {SSE_RETRY_MS}\n: open\n\n"
        async for item in service.follow(
            broker.db, subscription, principal.workspace_id, resume, idle_seconds=KEEPALIVE_SECONDS
        ):
            if item is None:
                yield ": keep-alive\n\n"
            else:
                yield f"id: {item.id}\nevent: {item.type}\ndata: {item.json}\n\n"
        yield f": closed {subscription.closed_reason}\n\n"
    finally:
        broker.unsubscribe(subscription)
