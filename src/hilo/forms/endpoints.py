"""The route an HTML form posts to, answering a browser with a redirect or a thank-you page.

Registered before the generic webhook route, which it replaces for ``form`` channels: a
browser needs a page, not the JSON a provider gets.
"""

from __future__ import annotations

import logging
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from hilo.channels.endpoints import raw_request, read_body
from hilo.deps import Session
from hilo.forms import service
from hilo.i18n import negotiate

log = logging.getLogger(__name__)

router = APIRouter(tags=["webhooks"])


@router.post("/webhooks/form/{channel_id}")
async def submit_form(channel_id: uuid.UUID, request: Request, session: Session) -> Response:
    """A form post: stored once, then a 303 to the thank-you URL (or Hilo's own page)."""
    body = await read_body(request)
    client = request.client.host if request.client else ""
    submission = await service.do_submit(
        session, channel_id, raw_request(request, body), client=client
    )
    log.info("form post on channel %s stored (%d bytes)", channel_id, len(body))
    accept = request.headers.get("accept", "")
    if "application/json" in accept and "text/html" not in accept:  # posted by a script
        return JSONResponse(submission.payload)
    if submission.thank_you_url:
        return RedirectResponse(submission.thank_you_url, status_code=303)
    locale = negotiate(request.headers.get("accept-language"))
    return HTMLResponse(service.thank_you_page(locale))
