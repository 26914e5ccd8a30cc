"""Queries of the e-mail channel's own machinery."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hilo.channels.email import EmailChannel, receiving_addresses
from hilo.channels.email_io import addressing
from hilo.models import Channel


async def channel_for_address(session: AsyncSession, address: str) -> Channel | None:
    """The active e-mail channel that receives for ``address`` (its plus tag aside).

    Like a webhook's channel id, an envelope recipient names no workspace: the address
    decides it. Should two channels claim one address, the older keeps it, so a later
    workspace cannot take over another's mail by configuring the same address.
    """
    wanted = addressing.base(address)
    query = (
        select(Channel)
        .where(Channel.type == EmailChannel.type, Channel.active.is_(True))
        .order_by(Channel.created_at, Channel.id)
    )
    for channel in (await session.scalars(query)).all():
        if wanted in receiving_addresses(channel.config):
            return channel
    return None
