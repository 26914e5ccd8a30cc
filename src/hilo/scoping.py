"""Tenant isolation, written once: every read of a workspace's data starts here."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from hilo.errors import NotFound

T = TypeVar("T")


def scoped(model: type[T], workspace_id: uuid.UUID) -> Select[tuple[T]]:
    """``SELECT model WHERE workspace_id = :workspace_id``."""
    column: Any = model.workspace_id  # type: ignore[attr-defined]
    return select(model).where(column == workspace_id)


async def get_scoped(
    session: AsyncSession,
    model: type[T],
    object_id: uuid.UUID,
    workspace_id: uuid.UUID,
    *,
    for_update: bool = False,
) -> T:
    """The object of ``workspace_id`` with that id, or :class:`NotFound`."""
    query = scoped(model, workspace_id).where(model.id == object_id)  # type: ignore[attr-defined]
    if for_update:
        query = query.with_for_update()
    row = (await session.scalars(query)).first()
    if row is None:
        raise NotFound()
    return row
