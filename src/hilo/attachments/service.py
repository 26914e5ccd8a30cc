"""Attachment rules: keeping files, downloading customers' media, links for providers."""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from hilo import events
from hilo.channels.base import MediaError, MediaLocation
from hilo.clock import now
from hilo.crypto import constant_time_equal, internal_hmac
from hilo.errors import InvalidPayload
from hilo.events import Actor
from hilo.i18n import _
from hilo.ids import new_id
from hilo.models import Attachment, Message
from hilo.settings import get_settings

# How long a signed link handed to a provider (to fetch an agent's file) stays valid.
LINK_SECONDS = 2 * 3600
_MIME = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")
_UNSAFE_FILENAME = re.compile(r"[\x00-\x1f\x7f/\\\"]")
# Shown in the browser; anything else (HTML, SVG, PDF…) is downloaded, never rendered.
_INLINE = re.compile(r"^(image/(jpeg|png|gif|webp)|audio/[a-z0-9.+-]+|video/[a-z0-9.+-]+)$")


def kind_of(mime_type: str) -> str:
    """image, video, audio or document, from a MIME type."""
    major = mime_type.partition("/")[0]
    return major if major in ("image", "video", "audio") else "document"


def clean_mime_type(raw: str | None) -> str:
    """A MIME type without parameters, lower-cased; ``application/octet-stream`` if unusable."""
    value = (raw or "").split(";")[0].strip().lower()
    return value if _MIME.match(value) else "application/octet-stream"


def clean_filename(raw: str | None) -> str | None:
    """A file name safe to put in a header: no path, no control characters, 255 at most."""
    if not raw:
        return None
    name = _UNSAFE_FILENAME.sub("_", raw.replace("\\", "/").rpartition("/")[2]).strip()
    return name[:255] or None


def shows_inline(mime_type: str) -> bool:
    """Whether a browser may show the file in place (media) rather than download it."""
    return bool(_INLINE.match(mime_type))


def do_store(
    session: AsyncSession,
    *,
    workspace_id: uuid.UUID,
    message_id: uuid.UUID | None,
    kind: str,
    mime_type: str,
    filename: str | None,
    content: bytes,
) -> Attachment:
    """Keep a file in the workspace."""
    row = Attachment(
        id=new_id(),
        workspace_id=workspace_id,
        message_id=message_id,
        kind=kind,
        mime_type=clean_mime_type(mime_type),
        filename=clean_filename(filename),
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        content=content,
        created_at=now(),
    )
    session.add(row)
    return row


def do_keep(
    session: AsyncSession, message: Message, attachment: dict[str, Any], content: bytes
) -> dict[str, Any]:
    """Store one of a message's files; the message's entry for it, now naming the file."""
    mime_type = str(attachment.get("mime_type") or "")
    row = do_store(
        session,
        workspace_id=message.workspace_id,
        message_id=message.id,
        kind=str(attachment.get("type") or kind_of(mime_type)),
        mime_type=mime_type,
        filename=attachment.get("filename"),
        content=content,
    )
    return {**attachment, **entry(row)}


async def do_upload(
    session: AsyncSession,
    *,
    workspace_id: uuid.UUID,
    mime_type: str | None,
    filename: str | None,
    content: bytes,
    actor: Actor,
) -> Attachment:
    """An agent's file, to send in a reply."""
    if not content:
        raise InvalidPayload(_("The file is empty."), code="empty_file")
    mime = clean_mime_type(mime_type)
    row = do_store(
        session,
        workspace_id=workspace_id,
        message_id=None,
        kind=kind_of(mime),
        mime_type=mime,
        filename=filename,
        content=content,
    )
    await session.flush()
    events.record(
        session,
        "attachment.uploaded",
        workspace_id=workspace_id,
        actor=actor,
        data={"attachment_id": str(row.id), "mime_type": row.mime_type, "size": row.size},
    )
    return row


def entry(row: Attachment) -> dict[str, Any]:
    """How a message lists a file it carries (``attachment_id`` names the stored file)."""
    value: dict[str, Any] = {
        "type": row.kind,
        "attachment_id": str(row.id),
        "mime_type": row.mime_type,
        "size": row.size,
        "sha256": row.sha256,
        "status": "stored",
    }
    if row.filename:
        value["filename"] = row.filename
    return value


# -- links for providers ------------------------------------------------------------------------


def _link_signature(attachment_id: str, expires: int) -> str:
    return internal_hmac("attachment-link", f"{attachment_id}:{expires}")


def public_link(attachment_id: str) -> str:
    """A time-limited URL a provider fetches an agent's file from (WhatsApp, MMS)."""
    expires = int(time.time()) + LINK_SECONDS
    signature = _link_signature(attachment_id, expires)
    base = get_settings().public_url.rstrip("/")
    return f"{base}/media/{attachment_id}?expires={expires}&signature={signature}"


def link_is_valid(attachment_id: str, expires: int, signature: str) -> bool:
    """Whether a link made by :func:`public_link` is genuine and not expired."""
    if expires < time.time():
        return False
    return constant_time_equal(_link_signature(attachment_id, expires), signature)


def with_links(attachments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A reply's files, each stored one with a fresh ``link`` for the provider to fetch."""
    return [
        {**a, "link": public_link(str(a["attachment_id"]))} if a.get("attachment_id") else a
        for a in attachments
    ]


# -- downloading --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Download:
    """A fetched file, or how big the one refused for its size was (``content`` None)."""

    content: bytes | None
    size: int | None
    mime_type: str | None


def _failure(response: httpx.Response) -> MediaError:
    retryable = response.status_code >= 500 or response.status_code in (408, 429)
    return MediaError(f"HTTP {response.status_code} downloading the file", retryable=retryable)


async def download(client: httpx.AsyncClient, location: MediaLocation, *, limit: int) -> Download:
    """Fetch a file, refusing (``content`` None) one over ``limit`` bytes without reading it."""
    if location.size is not None and location.size > limit:
        return Download(None, location.size, location.mime_type)
    try:
        async with client.stream(
            "GET",
            location.url,
            headers=dict(location.headers),
            auth=location.auth,
            follow_redirects=location.follow_redirects,
        ) as response:
            if not response.is_success:
                raise _failure(response)
            mime_type = location.mime_type or response.headers.get("content-type")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                return Download(None, int(declared), mime_type)
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body.extend(chunk)
                if len(body) > limit:
                    return Download(None, None, mime_type)
    except httpx.HTTPError as exc:
        raise MediaError(f"{type(exc).__name__}: {exc}", retryable=True) from exc
    return Download(bytes(body), len(body), mime_type)
