"""Channel routes: managing channels, and the webhooks providers call."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette import status as http_status

from hilo import flows
from hilo.channels import repository, service
from hilo.channels.base import PlainText, RawRequest
from hilo.channels.schemas import (
    ChannelCreated,
    ChannelIn,
    ChannelList,
    ChannelOut,
    TemplateList,
    TemplateOut,
)
from hilo.clock import now
from hilo.deps import CurrentPrincipal, Session, get_db
from hilo.errors import Forbidden, PayloadTooLarge
from hilo.settings import get_settings

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/channels", tags=["channels"])
webhooks = APIRouter(prefix="/webhooks", tags=["webhooks"])


@router.post("", status_code=http_status.HTTP_201_CREATED)
async def create_channel(
    body: ChannelIn, principal: CurrentPrincipal, session: Session
) -> ChannelCreated:
    """Connect a channel; the response holds its webhook URL and, once, its secret."""
    if principal.role != "admin":
        raise Forbidden()
    channel, secrets = await service.do_create(
        session,
        workspace_id=principal.workspace_id,
        type=body.type,
        name=body.name,
        provider=body.provider,
        config=body.config,
        actor=principal.actor,
    )
    out = ChannelOut.build(channel, service.webhook_url(channel))
    return ChannelCreated(**out.model_dump(), secret=secrets.get("secret"), secrets=secrets)


@router.get("")
async def list_channels(principal: CurrentPrincipal, session: Session) -> ChannelList:
    """The workspace's channels."""
    rows = await repository.list_all(session, principal.workspace_id)
    return ChannelList(items=[ChannelOut.build(c, service.webhook_url(c)) for c in rows])


@router.get("/{channel_id}")
async def get_channel(
    channel_id: uuid.UUID, principal: CurrentPrincipal, session: Session
) -> ChannelOut:
    """One channel (without its secrets)."""
    channel = await service.get(session, principal.workspace_id, channel_id)
    return ChannelOut.build(channel, service.webhook_url(channel))


@router.get("/{channel_id}/templates")
async def list_templates(
    channel_id: uuid.UUID, principal: CurrentPrincipal, session: Session
) -> TemplateList:
    """The channel's message templates (WhatsApp's, from its configuration); empty if none."""
    templates = await service.templates(session, principal.workspace_id, channel_id)
    return TemplateList(items=[TemplateOut.build(t) for t in templates])


async def read_body(request: Request, *, limit: int | None = None) -> bytes:
    """The raw body, refused past the size limit without reading it all."""
    limit = limit or get_settings().max_webhook_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge()
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise PayloadTooLarge()
    return bytes(body)


def public_url(request: Request) -> str:
    """The URL the provider called, which signatures such as Twilio's cover.

    Behind a proxy, ``X-Forwarded-Proto`` and ``X-Forwarded-Host`` say what the provider
    saw; otherwise ``HILO_PUBLIC_URL`` does.
    """
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    host = request.headers.get("x-forwarded-host")
    if host:
        proto = request.headers.get("x-forwarded-proto", "https").split(",")[0].strip()
        return f"{proto}://{host.split(',')[0].strip()}{path}"
    return get_settings().public_url.rstrip("/") + path


def raw_request(request: Request, body: bytes) -> RawRequest:
    """What adapters see of a webhook request."""
    return RawRequest(
        body=body,
        headers={k.lower(): v for k, v in request.headers.items()},
        query=dict(request.query_params),
        url=public_url(request),
        received_at=now(),
    )


@webhooks.get("/{channel_type}/{channel_id}")
async def handshake(
    channel_type: str, channel_id: uuid.UUID, request: Request, session: Session
) -> PlainTextResponse:
    """A provider's set-up check, answered by the channel's adapter."""
    status, text = await flows.answer_handshake(
        session, channel_type=channel_type, channel_id=channel_id, request=raw_request(request, b"")
    )
    return PlainTextResponse(text, status_code=status)


@webhooks.post("/{channel_type}/{channel_id}")
async def receive(channel_type: str, channel_id: uuid.UUID, request: Request) -> Any:
    """A provider's delivery: verified, stored once, then acknowledged."""
    body = await read_body(request)
    raw = raw_request(request, body)
    status, payload = await flows.receive_webhook(
        get_db(request),
        request.app.state.deliveries,
        channel_type=channel_type,
        channel_id=channel_id,
        request=raw,
    )
    log.info("webhook %s/%s stored (%d bytes)", channel_type, channel_id, len(body))
    if isinstance(payload, PlainText):  # RBM's set-up secret, echoed
        return PlainTextResponse(payload, status_code=status)
    if isinstance(payload, str):  # TwiML and other XML acknowledgements
        return Response(payload, status_code=status, media_type="application/xml")
    return JSONResponse(payload, status_code=status)
