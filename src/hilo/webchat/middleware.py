"""Cross-origin access and body size for the widget's endpoints (``/webchat/...``).

The widget runs on the company's site and calls Hilo from there, so its endpoints answer
any origin (``Access-Control-Allow-Origin: *``; no cookies are involved, the visitor token
travels in a header). Which sites may really use a channel is decided per request against
the channel's ``allowed_origins``, before anything is stored.
"""

from __future__ import annotations

import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hilo.errors import PayloadTooLarge
from hilo.i18n import negotiate, translate

log = logging.getLogger(__name__)

PREFIXES = ("/webchat/", "/widget/")
# A widget request is a message of a few KiB at most.
MAX_BODY = 32 * 1024
ALLOW_HEADERS = "content-type, x-hilo-visitor"
ALLOW_METHODS = "GET, POST, OPTIONS"
MAX_AGE = "600"


class BodyTooLarge(Exception):
    """A chunked body ran past :data:`MAX_BODY`."""


class WebchatMiddleware:
    """CORS and a body cap on the widget's paths; every other path passes untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(PREFIXES):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if scope["method"] == "OPTIONS":
            await _send(
                send,
                204,
                b"",
                [
                    (b"access-control-allow-methods", ALLOW_METHODS.encode()),
                    (b"access-control-allow-headers", ALLOW_HEADERS.encode()),
                    (b"access-control-max-age", MAX_AGE.encode()),
                ],
            )
            return
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY:
            log.info("%s %s -> 413 (%s bytes)", scope["method"], scope["path"], declared)
            locale = negotiate(headers.get("accept-language"), default="en")
            error = PayloadTooLarge()
            body = json.dumps(
                {"error": {"code": error.code, "message": translate(error.message, locale)}}
            ).encode()
            await _send(send, 413, body, [(b"content-type", b"application/json")])
            return
        received = 0

        async def capped() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > MAX_BODY:
                    raise BodyTooLarge()
            return message

        async def cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"access-control-allow-origin", b"*"),
                ]
            await send(message)

        await self.app(scope, capped, cors)


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"access-control-allow-origin", b"*"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
