"""The process-wide HTTP client for calls to providers and companies' apps."""

from __future__ import annotations

import httpx

_client: httpx.AsyncClient | None = None


def client() -> httpx.AsyncClient:
    """A shared client: connection pooling, bounded timeouts, no redirects to follow."""
    global _client
    if _client is None or _client.is_closed:
        _client = httpx.AsyncClient(
            timeout=httpx.Timeout(10.0, connect=5.0),
            follow_redirects=False,
            headers={"User-Agent": "Hilo/0.1 (+https://github.com/hilo-hub/hilo)"},
        )
    return _client


async def close() -> None:
    """Close the shared client at shut-down."""
    global _client
    if _client is not None:
        await _client.aclose()
        _client = None
