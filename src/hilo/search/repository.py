"""Message text search, one query per database, both starting from the workspace's messages.

PostgreSQL matches ``to_tsvector('simple', <words of text>)`` (the GIN index
``ix_messages_text_search``) and SQLite the FTS5 table ``messages_fts`` kept by triggers on
``messages`` (both made by migration ``0004_bench_indexes``). The ``simple`` configuration
and FTS5's ``unicode61`` tokenizer agree: words of letters and digits, case-insensitive,
accents significant, no stemming, so Spanish and English text behave alike and a search
finds the same messages on either database.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, func, literal, literal_column, select, table, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from hilo.models import Message
from hilo.scoping import scoped

_FTS = table("messages_fts")
_SIMPLE: ColumnElement[Any] = literal_column("'simple'::regconfig")
# Exactly the indexed expression (literals, not parameters, or the index does not match):
# the text cut into words of letters and digits, as FTS5's tokenizer cuts it.
_WORDS: ColumnElement[Any] = func.to_tsvector(
    _SIMPLE,
    func.regexp_replace(
        Message.text, literal_column(r"'\W+'"), literal_column("' '"), literal_column("'g'")
    ),
)


def _matches(session: AsyncSession, words: list[str]) -> ColumnElement[bool]:
    if session.get_bind().dialect.name == "postgresql":
        return _WORDS.op("@@")(func.plainto_tsquery(_SIMPLE, " ".join(words)))
    # Each word quoted: FTS5 query syntax (AND, NEAR, *, column filters) stays inert.
    expression = " ".join('"' + word.replace('"', '""') + '"' for word in words)
    matching: Select[Any] = (
        select(literal_column("rowid"))
        .select_from(_FTS)
        .where(literal_column("messages_fts").op("MATCH")(expression))
    )
    return literal_column("messages.rowid").in_(matching)


async def search_messages(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    *,
    words: list[str],
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Message]:
    """Messages containing every word, newest first."""
    query = scoped(Message, workspace_id).where(_matches(session, words))
    if after is not None:
        query = query.where(
            tuple_(Message.created_at, Message.id)
            < tuple_(literal(after[0], Message.created_at.type), literal(after[1], Message.id.type))
        )
    query = query.order_by(Message.created_at.desc(), Message.id.desc()).limit(limit)
    return list((await session.scalars(query)).all())
