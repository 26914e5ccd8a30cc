"""Job handlers by name. Each domain registers its own in its ``tasks.py``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from hilo.jobs.worker import JobContext

Handler = Callable[["JobContext"], Awaitable[None]]
BatchHandler = Callable[["AsyncSession", list["JobContext"]], Awaitable[None]]


HANDLERS: dict[str, Handler] = {}
# Jobs run up to this many at a time in one transaction (see ``Worker``); the rest one by one.
BATCH_SIZES: dict[str, int] = {}
# What runs a whole batch at once, where a kind of job has it (else its handler, job by job).
BATCH_HANDLERS: dict[str, BatchHandler] = {}


def job(name: str, *, batch: int = 1) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of the job called ``name``.

    ``batch``: run up to that many of these jobs in one transaction. The handler must then
    open its transaction with ``ctx.transaction()``, must not commit, and must do nothing
    outside the database: if one job of a batch fails, the batch rolls back whole and each
    of its jobs runs again on its own.
    """

    def register(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        if batch > 1:
            BATCH_SIZES[name] = batch
        return fn

    return register


def batch_handler(name: str) -> Callable[[BatchHandler], BatchHandler]:
    """Register the decorated function as what runs a batch of ``name`` jobs.

    It gets the batch's session and every job's context, runs each job (it may call the
    job's own handler for some of them) and may finish them itself; the worker finishes
    any job left unfinished, and commits.
    """

    def register(fn: BatchHandler) -> BatchHandler:
        BATCH_HANDLERS[name] = fn
        return fn

    return register


class RetryLater(Exception):
    """Raised by a handler to be run again later, with backoff or at a given delay."""

    def __init__(self, reason: str, *, delay: timedelta | None = None) -> None:
        super().__init__(reason)
        self.delay = delay


class GiveUp(Exception):
    """Raised by a handler when retrying cannot help; the job is marked failed."""
