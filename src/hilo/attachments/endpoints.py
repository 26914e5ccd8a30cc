"""Attachment routes: files for the workspace's users, and time-limited links for providers."""

from __future__ import annotations

import logging
import uuid
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette import status as http_status

from hilo.attachments import repository, service
from hilo.attachments.schemas import AttachmentOut
from hilo.channels.endpoints import read_body
from hilo.deps import CurrentPrincipal, Session
from hilo.errors import NotFound
from hilo.models import Attachment
from hilo.settings import get_settings

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/attachments", tags=["attachments"])
# What a provider fetches an agent's file from (WhatsApp and MMS send media by link).
links = APIRouter(prefix="/media", tags=["attachments"], include_in_schema=False)


def _file(row: Attachment) -> Response:
    disposition = "inline" if service.shows_inline(row.mime_type) else "attachment"
    name = row.filename or f"{row.kind}-{row.id}"
    return Response(
        row.content,
        media_type=row.mime_type,
        headers={
            "Content-Disposition": f"{disposition}; filename*=UTF-8''{quote(name)}",
            # A customer's file must never run as a page of Hilo's origin.
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "private, max-age=3600",
            "ETag": f'"{row.sha256}"',
        },
    )


@router.post("", status_code=http_status.HTTP_201_CREATED)
async def upload(
    request: Request,
    principal: CurrentPrincipal,
    session: Session,
    filename: str | None = Query(default=None, max_length=255),
) -> AttachmentOut:
    """Keep a file (the raw body, typed by ``Content-Type``) to send in a reply."""
    body = await read_body(request, limit=get_settings().media_max_bytes)
    row = await service.do_upload(
        session,
        workspace_id=principal.workspace_id,
        mime_type=request.headers.get("content-type"),
        filename=filename,
        content=body,
        actor=principal.actor,
    )
    return AttachmentOut.build(row)


@router.get("/{attachment_id}")
async def download(
    attachment_id: uuid.UUID, principal: CurrentPrincipal, session: Session
) -> Response:
    """A file of the workspace: a customer's media or an agent's upload."""
    return _file(await repository.get_with_content(session, principal.workspace_id, attachment_id))


@links.get("/{attachment_id}")
async def fetch_by_link(
    attachment_id: uuid.UUID,
    session: Session,
    expires: int = Query(default=0),
    signature: str = Query(default="", max_length=128),
) -> Response:
    """An agent's upload, for the provider delivering it; only with a valid, unexpired link."""
    if not service.link_is_valid(str(attachment_id), expires, signature):
        log.info("media link for %s refused: bad or expired signature", attachment_id)
        raise NotFound()
    row = await repository.get_upload_with_content(session, attachment_id)
    if row is None:
        raise NotFound()
    return _file(row)
