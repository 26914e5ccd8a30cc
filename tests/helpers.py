"""Helpers for channel tests: signing like the provider, and a fake company app."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from hilo.channels.api import sign
from hilo.channels.base import ChannelAdapter, ChannelContext, OutboundMessage, SendError
from tests.conftest import Api, Server, wait_for


def post_api_message(
    client: httpx.Client,
    channel_id: str,
    secret: str,
    payload: dict[str, Any] | bytes,
    *,
    timestamp: int | None = None,
    signature: str | None = None,
) -> httpx.Response:
    """POST to the API channel webhook, signed as the company's app signs."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    ts = str(timestamp if timestamp is not None else int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Hilo-Timestamp": ts,
        "X-Hilo-Signature": signature or sign(secret, ts, body),
    }
    # Webhooks need no bearer token: the signature is the authentication.
    return httpx.post(
        f"{client.base_url}/webhooks/api/{channel_id}", content=body, headers=headers, timeout=15
    )


def deliver(
    adapter: ChannelAdapter, channel: ChannelContext, *, text: str, recipient: str
) -> SendError | None:
    """Send one reply straight through ``adapter``: the provider's refusal, or None."""
    message = OutboundMessage(
        message_id=uuid.uuid4(),
        conversation_id=uuid.uuid4(),
        recipient=recipient,
        text=text,
        created_at=datetime.now(UTC),
    )

    async def go() -> None:
        async with httpx.AsyncClient() as client:
            await adapter.send(client, channel, message)

    try:
        asyncio.run(go())
    except SendError as exc:
        return exc
    return None


@dataclass
class CompanyApp:
    """A local HTTP server standing in for a company's app that receives Hilo's replies."""

    fail_first: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    local: LocalApi | None = None

    @property
    def url(self) -> str:
        assert self.local is not None
        return f"{self.local.origin}/hilo"

    def start(self) -> CompanyApp:
        self.local = LocalApi(self._answer).start()
        return self

    def _answer(self, call: Call) -> Answer:
        self.attempts += 1
        if self.attempts <= self.fail_first:
            return 503, {}, b""
        self.received.append({"headers": call.headers, "body": call.body})
        return 200, {}, b"{}"

    def stop(self) -> None:
        if self.local is not None:
            self.local.stop()


# -- a provider's API, played by a local server -------------------------------------------------


@dataclass
class Call:
    """One request the fake provider received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Answer = tuple[int, dict[str, str], bytes]


def json_answer(status: int, value: Any) -> Answer:
    return status, {"Content-Type": "application/json"}, json.dumps(value).encode()


@dataclass
class LocalApi:
    """A real HTTP server on 127.0.0.1 that answers with ``handle``; records every call."""

    handle: Callable[[Call], Answer]
    calls: list[Call] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def origin(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> LocalApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                call = Call(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                )
                api.calls.append(call)
                status, headers, body = api.handle(call)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def timeline(api: Api, contact_id: str) -> list[dict[str, Any]]:
    response = api.get(f"/api/v1/contacts/{contact_id}/timeline")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def find_message(api: Api, provider_id: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The contact and timeline item of the customer's message, once processed."""
    for contact in api.get("/api/v1/contacts").json()["items"]:
        for item in timeline(api, contact["id"]):
            if item["provider_message_id"] == provider_id:
                return contact, item
    return None


def landed(api: Api, provider_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    found: tuple[dict[str, Any], dict[str, Any]] = wait_for(
        lambda: find_message(api, provider_id), message=f"message {provider_id} in a timeline"
    )
    return found


def inbound_events(server: Server, channel_id: str) -> list[dict[str, Any]]:
    """The channel's stored deliveries, straight from the database."""
    from sqlalchemy import select

    from hilo.db import Database
    from hilo.models import InboundEvent

    async def go() -> list[dict[str, Any]]:
        db = Database(server.db_url, pool_size=1)
        try:
            async with db.transaction() as session:
                rows = await session.scalars(
                    select(InboundEvent).where(InboundEvent.channel_id == uuid.UUID(channel_id))
                )
                return [
                    {"provider_event_id": r.provider_event_id, "status": r.status, "item": r.item}
                    for r in rows
                ]
        finally:
            await db.dispose()

    result: list[dict[str, Any]] = asyncio.run(go())
    return result


def processed(server: Server, channel_id: str, provider_event_id: str) -> dict[str, Any] | None:
    for row in inbound_events(server, channel_id):
        if row["provider_event_id"] == provider_event_id and row["status"] != "pending":
            return row
    return None
