"""Message text search, one query per database, both starting from the workspace's messages.

PostgreSQL matches ``to_tsvector('simple', <words of text>)`` (the GIN index
``ix_messages_text_search``) and SQLite the FTS5 table ``messages_fts`` kept by triggers on
``messages`` (both made by migration ``0004_bench_indexes``). The ``simple`` configuration
and FTS5's ``unicode61`` tokenizer agree: words of letters and digits, case-insensitive,
accents significant, no stemming, so Spanish and English text behave alike and a search
finds the same messages on either database.

Newest first is the hard part: sort every match by time, or walk the workspace's messages
back from the newest (``ix_messages_workspace_created``) until a page of them matches. Which
is cheaper depends on how many messages hold the words. SQLite's planner cannot weigh an FTS5
match, so :func:`_sqlite_plan` counts the matches and chooses; PostgreSQL's planner guesses,
and :func:`_postgres_search` bounds how far its guess may walk. The costs behind both are in
docs/benchmarks.md ("Message search, newest first").
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    exists,
    func,
    literal,
    literal_column,
    select,
    table,
    tuple_,
    type_coerce,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from hilo.models import Message

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
_ROWID: ColumnElement[Any] = literal_column("messages.rowid")
# A unary plus keeps SQLite from using a column's index: the rowid's, to walk the workspace's
# messages by time instead (and the workspace's, to look the matches up by rowid instead).
_ROWID_UNINDEXED: ColumnElement[Any] = literal_column("+messages.rowid")


class _Plan(Enum):
    """How SQLite finds a search's newest matches."""

    NONE = "none"  # no message holds the words
    SORT = "sort"  # look every match up by rowid, sort them by time
    WALK_SET = "walk_set"  # gather the matches' rowids, walk the messages back in time
    WALK_CHECK = "walk_check"  # walk the messages back in time, ask FTS5 about each one


# Microseconds per row, measured on the 1M-message data set: looking a match up and sorting
# it; gathering a match's rowid; walking past a message on the index; asking FTS5 whether one
# message matches.
_SORT_US = 1.3
_SET_US = 0.16
_WALK_US = 0.14
_CHECK_US = 35.0
# PostgreSQL, the same (below): walking past a message, computing its words; fetching and
# sorting a match found through the GIN index.
_PG_WALK_US = 12.5
_PG_SORT_US = 3.0
# The planner's count of messages (kept by ANALYZE and autovacuum; -1 before the first).
_PG_MESSAGES: Select[Any] = (
    select(literal_column("reltuples"))
    .select_from(table("pg_class"))
    .where(literal_column("oid") == literal_column("'messages'::regclass"))
)
# WALK_CHECK walks at most this many times the messages it expects to walk, then gives way.
_CHECK_MARGIN = 4


def _fts_expression(words: list[str]) -> str:
    # Each word quoted: FTS5 query syntax (AND, NEAR, *, column filters) stays inert.
    return " ".join('"' + word.replace('"', '""') + '"' for word in words)


def _fts_match(expression: str) -> ColumnElement[bool]:
    return literal_column("messages_fts").op("MATCH")(expression)


def _fts_rowids(expression: str) -> Select[Any]:
    return select(literal_column("rowid")).select_from(_FTS).where(_fts_match(expression))


async def _within_reach(
    session: AsyncSession,
    within: list[ColumnElement[bool]],
    query: Select[tuple[Message]],
    limit: int,
    back: int,
) -> list[Message] | None:
    """``query``'s page among the messages no older than the one ``back`` from the newest.

    A full page there is the answer: every other match is older. None when it is not full, for
    the caller to gather the matches instead. With no message that far back the walk is not
    bounded, and its page is the answer whatever its length.
    """
    floor = await session.scalar(
        select(Message.created_at)
        .where(*within)
        .order_by(Message.created_at.desc())
        .offset(back)
        .limit(1)
    )
    if floor is None:
        return list((await session.scalars(query)).all())
    found = list((await session.scalars(query.where(Message.created_at >= floor))).all())
    return found if len(found) == limit else None


def _in_workspace_unindexed(workspace_id: uuid.UUID) -> ColumnElement[bool]:
    """``+messages.workspace_id = :id``: the unary plus keeps SQLite off the column's index."""
    column = type_coerce(literal_column("+messages.workspace_id"), Message.workspace_id.type)
    return column == workspace_id


async def _sqlite_plan(session: AsyncSession, expression: str, limit: int) -> tuple[_Plan, int]:
    """The cheapest plan for a page of ``limit``, and how many messages it expects to walk.

    The matches are counted (FTS5 counts a word's rowids without reading the messages) only
    up to the number beyond which asking about each walked message is cheaper than gathering
    them all; the messages are estimated by the highest rowid. Walking assumes the matches
    are spread over time; a word common long ago and absent since walks further, which
    WALK_CHECK bounds (see :func:`search_messages`).
    """
    total = int(await session.scalar(select(func.max(_ROWID)).select_from(Message)) or 0)
    # WALK_SET costs _SET_US·m + _WALK_US·limit·total/m, WALK_CHECK _CHECK_US·limit·total/m:
    # beyond m² = _CHECK_US·limit·total / _SET_US, WALK_CHECK is the cheaper.
    enough = max(int(math.sqrt(_CHECK_US * limit * total / _SET_US)), 1)
    counted = _fts_rowids(expression).limit(enough).subquery()
    matches = int(await session.scalar(select(func.count()).select_from(counted)) or 0)
    if matches == 0:
        return _Plan.NONE, 0
    walked = math.ceil(limit * total / matches)
    if matches >= enough:
        return _Plan.WALK_CHECK, walked
    sort = _SORT_US * matches
    walk = _SET_US * matches + _WALK_US * walked
    return (_Plan.SORT if sort <= walk else _Plan.WALK_SET), walked


async def _postgres_search(
    session: AsyncSession,
    within: list[ColumnElement[bool]],
    query: Select[tuple[Message]],
    words: list[str],
    limit: int,
) -> list[Message]:
    """PostgreSQL's planner, bounded: it may walk back in time only as far as it pays to.

    The planner guesses a combination of words from each word alone, so two common words that
    are never together send it walking through every message of the workspace, computing the
    words of each (12.5–18 s at 1M messages, measured). Here it is given the newest messages
    only, back to where walking would cost what gathering ``enough`` matches and sorting them
    costs; a rare word it still finds through the GIN index. A page short of ``limit`` there
    means the matches are scarce: they are gathered through the index and sorted.
    """
    matching = _WORDS.op("@@")(func.plainto_tsquery(_SIMPLE, " ".join(words)))
    total = max(float(await session.scalar(_PG_MESSAGES) or 0), 1.0)
    # Walking costs _PG_WALK_US·limit·total/m and sorting _PG_SORT_US·m: equal at m² =
    # limit·total·_PG_WALK_US/_PG_SORT_US, where the walk passes limit·total/m messages.
    enough = math.sqrt(limit * total * _PG_WALK_US / _PG_SORT_US)
    back = math.ceil(limit * total / enough)
    found = await _within_reach(session, within, query.where(matching), limit, back)
    if found is not None:
        return found
    # MATERIALIZED: planned on its own, without the ORDER BY that makes the walk look cheap.
    gathered = select(Message).where(*within, matching).cte("matched").prefix_with("MATERIALIZED")
    match = aliased(Message, gathered)
    page = select(match).order_by(match.created_at.desc(), match.id.desc()).limit(limit)
    return list((await session.scalars(page)).all())


async def search_messages(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    *,
    words: list[str],
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Message]:
    """Messages containing every word, newest first."""
    within: list[ColumnElement[bool]] = [Message.workspace_id == workspace_id]
    if after is not None:
        moment = literal(after[0], Message.created_at.type)
        within += [
            # The bare bound lets either database start its walk at the cursor.
            Message.created_at <= moment,
            tuple_(Message.created_at, Message.id)
            < tuple_(moment, literal(after[1], Message.id.type)),
        ]
    query = (
        select(Message)
        .where(*within)
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        return await _postgres_search(session, within, query, words, limit)
    expression = _fts_expression(words)
    plan, walked = await _sqlite_plan(session, expression, limit)
    if plan is _Plan.NONE:
        return []
    if plan is _Plan.WALK_CHECK:
        # Bounded at _CHECK_MARGIN times the expected walk; else gather the matches.
        one = (
            select(literal(1))
            .select_from(_FTS)
            .where(_fts_match(expression), literal_column("messages_fts.rowid") == _ROWID)
        )
        checked = query.where(exists(one))
        found = await _within_reach(session, within, checked, limit, _CHECK_MARGIN * walked)
        if found is not None:
            return found
        plan = _Plan.WALK_SET
    matching = _fts_rowids(expression)
    if plan is _Plan.SORT:
        # Without statistics SQLite would rather walk the workspace's index for its order;
        # the unary plus leaves it the rowids of the matches as the only way in.
        query = query.where(_ROWID.in_(matching), _in_workspace_unindexed(workspace_id))
    else:
        query = query.where(_ROWID_UNINDEXED.in_(matching))
    return list((await session.scalars(query)).all())
