"""Two baselines for the ingest benchmark, served by the same process and middleware as the
real webhooks, at the same path shape: ``/bench/parse/...`` only reads and parses the body;
``/bench/store/...`` also inserts the raw body durably (the request's transaction commits
before the answer, as for a webhook). Mounted only when ``HILO_BENCH_ENDPOINTS=1``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request

from hilo.benchmark import repository
from hilo.channels.endpoints import read_body
from hilo.clock import now
from hilo.deps import Session, get_db
from hilo.errors import InvalidPayload

router = APIRouter(prefix="/bench", include_in_schema=False)


def _parse(request: Request, body: bytes) -> Any:
    """The body as JSON or as a form, like the channels' parsers; 422 when it is neither."""
    try:
        if "json" in request.headers.get("content-type", ""):
            return json.loads(body)
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidPayload() from exc


@router.post("/parse/{channel_type}/{channel_id}")
async def parse_only(channel_type: str, channel_id: uuid.UUID, request: Request) -> dict[str, bool]:
    """Read and parse the body, then answer 200: the bare HTTP stack."""
    _parse(request, await read_body(request))
    return {"ok": True}


@router.post("/store/{channel_type}/{channel_id}")
async def store_raw(
    channel_type: str, channel_id: uuid.UUID, request: Request, session: Session
) -> dict[str, bool]:
    """Parse, then insert the raw body; the transaction commits before the answer."""
    body = await read_body(request)
    _parse(request, body)
    await repository.ensure_table(get_db(request))
    await repository.insert_raw(session, body=body, received_at=now())
    return {"ok": True}
