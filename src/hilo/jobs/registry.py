"""Job handlers by name. Each domain registers its own in its ``tasks.py``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hilo.jobs.worker import JobContext

Handler = Callable[["JobContext"], Awaitable[None]]


HANDLERS: dict[str, Handler] = {}


def job(name: str) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of the job called ``name``."""

    def register(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        return fn

    return register


class RetryLater(Exception):
    """Raised by a handler to be run again later, with backoff or at a given delay."""

    def __init__(self, reason: str, *, delay: timedelta | None = None) -> None:
        super().__init__(reason)
        self.delay = delay


class GiveUp(Exception):
    """Raised by a handler when retrying cannot help; the job is marked failed."""
