"""Request dependencies: the transaction and the authenticated principal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from hilo.auth.service import Principal, authenticate_token
from hilo.db import Database
from hilo.errors import Unauthorized


def get_db(request: Request) -> Database:
    """The application's database."""
    db: Database = request.app.state.db
    return db


# Requests that only read: on SQLite they neither wait for the writer nor hold it up.
READ_METHODS = frozenset({"GET", "HEAD"})


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    # The request owns the transaction: it commits after the endpoint returns and before
    # the response is sent (scope="function"), so a 2xx means the data is stored.
    db = get_db(request)
    opened = db.read() if request.method in READ_METHODS else db.transaction()
    async with opened as session:
        yield session


async def _write_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with get_db(request).transaction() as session:
        yield session


Session = Annotated[AsyncSession, Depends(_session, scope="function")]
# For the few GETs that change something (a link followed from an e-mail).
WriteSession = Annotated[AsyncSession, Depends(_write_session, scope="function")]


async def _principal(request: Request, session: Session) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _sep, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized()
    return await authenticate_token(session, token.strip())


CurrentPrincipal = Annotated[Principal, Depends(_principal)]
