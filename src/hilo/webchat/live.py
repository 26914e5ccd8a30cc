"""Live delivery to visitors: a WebSocket, and long-polling where WebSockets cannot go.

Both listen to the live broker (:mod:`hilo.realtime.broker`), the same fan-out that feeds
the agents' stream: PostgreSQL LISTEN/NOTIFY or Redis between processes. A ``message.sent``
event of the visitor's contact on this channel is a reply to show; a ``message.received``
one is the visitor's own message (from another tab or device). Events carry no text, so the
message itself is read from the database, scoped to the visitor.

WebSocket protocol (JSON text frames), ``/webchat/{channel_id}/ws``:

- the client first sends ``{"type": "hello", "token": ..., "locale": ...}`` (the token never
  goes in the URL, which access logs keep); the server answers ``{"type": "ready",
  "messages": [...], "state": ...}`` with the latest messages;
- ``{"type": "message", "client_message_id", "text", "page_url"}`` is answered by
  ``{"type": "ack", "client_message_id", "message_id", "duplicate"}``;
- ``{"type": "seen", "message_ids": [...], "status": "delivered"|"read"}``;
- ``{"type": "ping"}`` is answered by ``{"type": "pong"}``;
- the server pushes ``{"type": "message", "message": {...}}`` and, for a frame it could not
  take, ``{"type": "error", "code", "message", "client_message_id"?}``.

Close codes: 4000 + the HTTP status of a refusal (4401 bad token, 4403 origin not allowed,
4404 unknown channel, 4400 no hello); 1009 a frame over 16 KiB; 1012/1013 the server is
restarting or the socket fell behind (reconnect, the ``ready`` frame has everything).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect

from hilo.db import Database
from hilo.errors import HiloError, InvalidPayload
from hilo.i18n import LOCALES, _, negotiate, translate
from hilo.models import Channel, WebchatVisitor
from hilo.realtime.broker import SHUTDOWN, Broker, Subscription
from hilo.webchat import service
from hilo.webchat.schemas import MessagesOut, SeenIn, VisitorMessageIn

log = logging.getLogger(__name__)

HELLO_SECONDS = 10.0
MAX_FRAME = 16 * 1024
MAX_POLL_SECONDS = 25.0
SHOWN = ("message.received", "message.sent")
CLOSE_TOO_BIG = 1009
CLOSE_ENDED = {SHUTDOWN: 1012}
CLOSE_BEHIND = 1013


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)


class FrameTooLarge(Exception):
    """A client frame ran past :data:`MAX_FRAME`."""


class VisitorSocket:
    """One visitor's open WebSocket."""

    def __init__(self, websocket: WebSocket, db: Database, broker: Broker) -> None:
        self.websocket = websocket
        self.db = db
        self.broker = broker
        self.lock = asyncio.Lock()
        self.locale = negotiate(websocket.headers.get("accept-language"))
        self.token = ""
        self.contact_id: uuid.UUID | None = None

    async def send(self, data: dict[str, Any]) -> None:
        # The reader and the pusher both write: one frame at a time.
        async with self.lock:
            await self.websocket.send_text(_json(data))

    async def error(self, exc: HiloError, **extra: Any) -> None:
        message = translate(exc.message, self.locale, **exc.params)
        await self.send({"type": "error", "code": exc.code, "message": message, **extra})

    async def serve(self, channel_id: uuid.UUID) -> None:
        """Accept, check the origin and the hello, then run until either side leaves."""
        await self.websocket.accept()
        try:
            async with self.db.transaction() as session:
                channel = await service.get_channel(session, channel_id)
                service.check_origin(channel, self.websocket.headers)
            visitor = await self._hello(channel)
        except HiloError as exc:
            log.info("webchat socket on %s refused: %s", channel_id, exc.code)
            # Accepted first so a browser sees the code (a refused handshake shows nothing).
            with contextlib.suppress(Exception):
                await self.websocket.close(code=4000 + exc.status_code, reason=exc.code)
            return
        except (WebSocketDisconnect, TimeoutError, FrameTooLarge):
            with contextlib.suppress(Exception):
                await self.websocket.close(code=4400, reason="hello_expected")
            return
        # Subscribed before the first read: nothing committed after it is missed.
        subscription = self.broker.subscribe(channel.workspace_id)
        try:
            async with self.db.read() as session:
                self.contact_id = await service.contact_of(session, channel, visitor)
                messages = await service.window(session, channel, self.contact_id)
            await self.send(
                {
                    "type": "ready",
                    "visitor_id": str(visitor.id),
                    "messages": [m.model_dump(mode="json") for m in messages],
                    "state": service.state_of(messages),
                }
            )
            code = await self._pump(channel, visitor, subscription)
            if code is not None:
                with contextlib.suppress(Exception):
                    await self.websocket.close(code=code)
        except (WebSocketDisconnect, OSError):
            pass
        finally:
            self.broker.unsubscribe(subscription)

    async def _hello(self, channel: Channel) -> WebchatVisitor:
        async with asyncio.timeout(HELLO_SECONDS):
            frame = await self._receive()
        if frame is None or frame.get("type") != "hello":
            raise InvalidPayload(_("Invalid payload: check the fields {fields}."), fields="type")
        locale = str(frame.get("locale") or "")[:2].lower()
        if locale in LOCALES:
            self.locale = locale
        self.token = str(frame.get("token") or "")
        async with self.db.transaction() as session:
            return await service.authenticate(session, channel, self.token)

    async def _receive(self) -> dict[str, Any] | None:
        """The next frame as JSON; None when the client left. Raises on oversize."""
        message = await self.websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        text = message.get("text")
        if text is None:
            raise InvalidPayload(_("Invalid payload: check the fields {fields}."), fields="frame")
        if len(text) > MAX_FRAME:
            raise FrameTooLarge()
        try:
            frame = json.loads(text)
        except ValueError as exc:
            raise InvalidPayload(
                _("Invalid payload: check the fields {fields}."), fields="frame"
            ) from exc
        if not isinstance(frame, dict):
            raise InvalidPayload(_("Invalid payload: check the fields {fields}."), fields="frame")
        return frame

    async def _pump(
        self, channel: Channel, visitor: WebchatVisitor, subscription: Subscription
    ) -> int | None:
        reader = asyncio.create_task(self._read(channel))
        pusher = asyncio.create_task(self._push(channel, visitor, subscription))
        try:
            await asyncio.wait({reader, pusher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, pusher):
                task.cancel()
            await asyncio.gather(reader, pusher, return_exceptions=True)
        for task in (reader, pusher):
            if task.cancelled():
                continue
            error = task.exception()
            if isinstance(error, FrameTooLarge):
                return CLOSE_TOO_BIG
            if isinstance(error, WebSocketDisconnect | OSError):
                return None
            if error is not None:
                log.error("webchat socket failed", exc_info=error)
                return 1011
        if pusher.done() and not pusher.cancelled():
            return CLOSE_ENDED.get(subscription.closed_reason or "", CLOSE_BEHIND)
        return None

    async def _read(self, channel: Channel) -> None:
        while True:
            try:
                frame = await self._receive()
            except InvalidPayload as exc:
                await self.error(exc)
                continue
            assert frame is not None
            kind = frame.get("type")
            if kind == "message":
                await self._on_message(channel, frame)
            elif kind == "seen":
                await self._on_seen(channel, frame)
            elif kind == "ping":
                await self.send({"type": "pong"})
            else:
                await self.error(
                    InvalidPayload(_("Invalid payload: check the fields {fields}."), fields="type")
                )

    async def _on_message(self, channel: Channel, frame: dict[str, Any]) -> None:
        client_id = frame.get("client_message_id")
        extra = {"client_message_id": client_id} if isinstance(client_id, str) else {}
        try:
            body = _validate(VisitorMessageIn, frame)
            async with self.db.transaction() as session:
                fresh = await service.get_channel(session, channel.id)
                visitor = await service.authenticate(session, fresh, self.token)
                result = await service.do_send(session, fresh, visitor, body)
        except HiloError as exc:
            await self.error(exc, **extra)
            return
        await self.send({"type": "ack", **result.model_dump(mode="json")})

    async def _on_seen(self, channel: Channel, frame: dict[str, Any]) -> None:
        try:
            body = _validate(SeenIn, frame)
            async with self.db.transaction() as session:
                fresh = await service.get_channel(session, channel.id)
                visitor = await service.authenticate(session, fresh, self.token)
                await service.do_seen(session, fresh, visitor, body)
        except HiloError as exc:
            await self.error(exc)

    async def _push(
        self, channel: Channel, visitor: WebchatVisitor, subscription: Subscription
    ) -> None:
        channel_key = str(channel.id)
        while True:
            item = await subscription.get()
            if item is None:
                return
            if channel_key not in item.json and item.type != "contact.merged":
                continue
            event = service.parse_event(item.json)
            contact = str(self.contact_id) if self.contact_id else None
            if not service.concerns(event, channel_key, contact, visitor.id):
                continue
            if event["type"] == "contact.merged":
                self.contact_id = uuid.UUID(event["contact_id"])
                continue
            if event["type"] not in SHOWN or not event.get("message_id"):
                continue
            async with self.db.read() as session:
                if self.contact_id is None:
                    self.contact_id = await service.contact_of(session, channel, visitor)
                if self.contact_id is None or event.get("contact_id") != str(self.contact_id):
                    continue
                shown = await service.one_message(
                    session, channel, self.contact_id, uuid.UUID(event["message_id"])
                )
            if shown is not None:
                await self.send({"type": "message", "message": shown.model_dump(mode="json")})


M = TypeVar("M", bound=BaseModel)


def _validate(model: type[M], frame: dict[str, Any]) -> M:
    try:
        return model.model_validate(frame)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in e["loc"]) or "frame" for e in exc.errors()})
        raise InvalidPayload(
            _("Invalid payload: check the fields {fields}."), fields=", ".join(fields)
        ) from exc


async def poll_request(
    db: Database,
    broker: Broker,
    channel_id: uuid.UUID,
    headers: Mapping[str, str],
    token: str | None,
    state: str | None,
    wait: float,
) -> MessagesOut:
    """A poll from the widget: checked in a short transaction, then waiting without one."""
    async with db.transaction() as session:
        channel, visitor = await service.visitor_request(session, channel_id, headers, token)
        service.check_read(channel, visitor)
    return await poll(db, broker, channel, visitor, state=state, wait=wait)


async def poll(
    db: Database,
    broker: Broker,
    channel: Channel,
    visitor: WebchatVisitor,
    *,
    state: str | None,
    wait: float,
) -> MessagesOut:
    """The visitor's window as soon as it differs from ``state``, or unchanged after ``wait``."""
    subscription = broker.subscribe(channel.workspace_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(max(wait, 0.0), MAX_POLL_SECONDS)
    channel_key = str(channel.id)
    try:
        while True:
            async with db.read() as session:
                contact_id = await service.contact_of(session, channel, visitor)
                messages = await service.window(session, channel, contact_id)
            current = service.state_of(messages)
            if current != state:
                return MessagesOut(messages=messages, state=current)
            contact = str(contact_id) if contact_id else None
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return MessagesOut(messages=[], state=current, changed=False)
                try:
                    async with asyncio.timeout(remaining):
                        item = await subscription.get()
                except TimeoutError:
                    return MessagesOut(messages=[], state=current, changed=False)
                if item is None:  # the server is going away: the widget polls again
                    return MessagesOut(messages=[], state=current, changed=False)
                if (channel_key in item.json or item.type == "contact.merged") and (
                    service.concerns(
                        service.parse_event(item.json), channel_key, contact, visitor.id
                    )
                ):
                    break
    finally:
        broker.unsubscribe(subscription)
