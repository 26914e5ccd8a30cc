"""Search rules: what counts as a word, and how many are taken."""

from __future__ import annotations

import re
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from hilo import pagination
from hilo.conversations.schemas import MessageOut, MessagePage
from hilo.errors import InvalidPayload
from hilo.i18n import _
from hilo.search import repository

MAX_WORDS = 8
_WORD = re.compile(r"\w+")


def words_of(q: str) -> list[str]:
    """The words a search looks for (letters and digits); 422 when there are none."""
    words = _WORD.findall(q)[:MAX_WORDS]
    if not words:
        raise InvalidPayload(_("Type at least one word to search."), code="empty_search")
    return words


async def search_messages(
    session: AsyncSession, workspace_id: uuid.UUID, *, q: str, cursor: str | None, limit: int
) -> MessagePage:
    """A page of the workspace's messages containing every word of ``q``, newest first."""
    rows = await repository.search_messages(
        session,
        workspace_id,
        words=words_of(q),
        after=pagination.decode_time_id(cursor),
        limit=limit + 1,
    )
    page, next_cursor = pagination.cut(rows, limit, lambda m: (m.created_at, m.id))
    return MessagePage(items=[MessageOut.build(m) for m in page], next_cursor=next_cursor)
