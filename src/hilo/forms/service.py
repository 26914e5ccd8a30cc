"""Form submissions: rate-limited, then through the form channel's webhook pipeline."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hilo import flows
from hilo.channels import service as channel_service
from hilo.channels.base import RawRequest
from hilo.channels.form import FormChannel
from hilo.i18n import _, translate
from hilo.public_pages import simple_page
from hilo.ratelimit import RateLimiter

# Per sender IP and form: people post a form a few times a minute at most.
_posts = RateLimiter(20, burst=10)


@dataclass(frozen=True)
class Submission:
    """What storing a post gave, and where to send the browser next."""

    payload: dict[str, Any]
    thank_you_url: str | None


async def do_submit(
    session: AsyncSession, channel_id: uuid.UUID, request: RawRequest, *, client: str
) -> Submission:
    """Verify and store the post once (see :class:`FormChannel`)."""
    _posts.check((channel_id, client))
    _status, payload = await flows.receive_in(
        session, channel_type=FormChannel.type, channel_id=channel_id, request=request
    )
    # The channel the delivery was just verified against, kept by the webhook path.
    found = await channel_service.for_webhook(session.info["hilo_db"], channel_id)
    url = found[0].config.get("thank_you_url") if found is not None else None
    return Submission(payload=payload, thank_you_url=str(url) if url else None)


def thank_you_page(locale: str) -> str:
    """The page shown after a post when the form has no ``thank_you_url`` of its own."""
    return simple_page(
        locale,
        translate(_("Thank you!"), locale),
        translate(_("We have received your message and will answer as soon as we can."), locale),
    )
