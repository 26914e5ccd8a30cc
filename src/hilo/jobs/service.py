"""Enqueueing jobs inside the caller's transaction."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hilo.clock import now
from hilo.db import after_commit
from hilo.models import Job

# Set by the running worker pool: wakes it as soon as a job is committed.
_wakers: list[Callable[[], None]] = []


def add_waker(callback: Callable[[], None]) -> None:
    """Call ``callback`` after every commit that enqueued a job."""
    _wakers.append(callback)


def remove_waker(callback: Callable[[], None]) -> None:
    """Undo :func:`add_waker`."""
    if callback in _wakers:
        _wakers.remove(callback)


def _wake() -> None:
    for waker in list(_wakers):
        waker()


def enqueue(
    session: AsyncSession,
    name: str,
    payload: dict[str, Any],
    *,
    workspace_id: uuid.UUID | None = None,
    run_at: datetime | None = None,
) -> Job:
    """Add a job to the session's transaction; it runs only if the transaction commits."""
    row = Job(name=name, payload=payload, workspace_id=workspace_id, run_at=run_at or now())
    session.add(row)
    info = session.sync_session.info
    if not info.get("wakes_workers"):
        info["wakes_workers"] = True

        def wake_once() -> None:
            info.pop("wakes_workers", None)
            _wake()

        after_commit(session, wake_once)
    return row
