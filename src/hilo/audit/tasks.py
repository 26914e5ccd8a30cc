"""The background sealer: chains committed events shortly after they are written."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from hilo.audit import service
from hilo.db import Database
from hilo.models import Event
from hilo.settings import get_settings

log = logging.getLogger(__name__)

# Running sealers of this process, woken by :func:`wake_on_events`.
_sealers: set[Sealer] = set()


class Sealer:
    """Calls :func:`~hilo.audit.service.seal_pending` periodically and when woken."""

    def __init__(
        self, db: Database, *, interval_seconds: float | None = None, batch_size: int = 500
    ) -> None:
        self.db = db
        self.interval_seconds = interval_seconds
        self.batch_size = batch_size
        self._wake = asyncio.Event()
        self._stopping = False
        self._finished = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def interval(self) -> float:
        """Seconds between rounds when nobody wakes the sealer."""
        if self.interval_seconds is not None:
            return self.interval_seconds
        return get_settings().seal_interval_seconds

    def wake(self) -> None:
        """Seal now rather than at the next interval."""
        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or loop is running:
            self._wake.set()
        elif not loop.is_closed():
            # asyncio.Event is not thread-safe: hand the wake-up to the sealer's own loop.
            loop.call_soon_threadsafe(self._wake.set)

    async def run(self) -> None:
        """Seal in rounds until :meth:`stop`; a failing round is logged and retried later."""
        self._loop = asyncio.get_running_loop()
        self._finished.clear()
        _sealers.add(self)
        try:
            while not self._stopping:
                # Clear before sealing: events committed during the round wake the next one.
                self._wake.clear()
                try:
                    await service.seal_pending(self.db, batch_size=self.batch_size)
                except Exception:
                    log.exception("sealing the event log failed")
                if self._stopping:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.interval)
        finally:
            _sealers.discard(self)
            self._finished.set()

    async def stop(self) -> None:
        """Ask :meth:`run` to end and wait for the round in progress to finish."""
        self._stopping = True
        self._wake.set()
        if self._loop is not None:
            await self._finished.wait()


def wake_on_events(events: Sequence[Event]) -> None:
    """Wake every running sealer; pass to :func:`hilo.events.add_listener`."""
    if not events:
        return
    for sealer in list(_sealers):
        sealer.wake()
