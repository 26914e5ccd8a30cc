"""Helpers for channel tests: signing like the provider, and a fake company app."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from hilo.channels.api import sign


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


@dataclass
class CompanyApp:
    """A local HTTP server standing in for a company's app that receives Hilo's replies."""

    fail_first: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hilo"

    def start(self) -> CompanyApp:
        app = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                app.attempts += 1
                if app.attempts <= app.fail_first:
                    self.send_response(503)
                    self.end_headers()
                    return
                app.received.append(
                    {"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
                )
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
