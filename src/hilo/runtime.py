"""What runs beside the API in one process: job workers, the audit sealer, live fan-out."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import update

import hilo.channels.email_fallback  # registers channels.email_fallback
import hilo.channels.email_io.tasks  # registers email.fetch
import hilo.flows  # registers the inbound and outbound jobs
import hilo.webchat.tasks  # noqa: F401  (registers webchat.email_proof)
from hilo import events
from hilo.audit.tasks import Sealer, wake_on_events
from hilo.db import Database
from hilo.jobs.worker import Worker
from hilo.models import Job
from hilo.settings import Settings

log = logging.getLogger(__name__)

# How often the embedded SQLite file's planner statistics are refreshed.
STATISTICS_SECONDS = 3600.0


class Runtime:
    """Starts and stops the background parts of a Hilo process."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.worker = Worker(
            db,
            concurrency=settings.worker_concurrency,
            batch=settings.worker_batch,
            lease_seconds=settings.job_lease_seconds,
        )
        self.sealer: Sealer | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, *, workers: bool) -> None:
        """Start the workers (when this process runs them) and the sealer."""
        if self.db.is_sqlite:
            await self.db.refresh_statistics()
            self._tasks.append(
                asyncio.create_task(self._keep_statistics(), name="hilo-sqlite-statistics")
            )
        if not workers:
            return
        if self.db.is_sqlite:
            await self._recover_embedded_jobs()
        self._tasks.append(asyncio.create_task(self.worker.run(), name="hilo-worker"))
        self.sealer = Sealer(self.db)
        events.add_listener(wake_on_events)
        self._tasks.append(asyncio.create_task(self.sealer.run(), name="hilo-sealer"))

    async def _keep_statistics(self) -> None:
        # The tables grow from nothing: sample them again as they do.
        while True:
            await asyncio.sleep(STATISTICS_SECONDS)
            try:
                await self.db.refresh_statistics()
            except Exception:
                log.exception("refreshing the SQLite planner statistics failed")

    async def _recover_embedded_jobs(self) -> None:
        # On the embedded SQLite file this process is the only worker, so a job still marked
        # running was held by a process that died: take it back at once, not after its lease.
        async with self.db.transaction() as session:
            result = await session.execute(
                update(Job)
                .where(Job.status == "running")
                .values(status="queued", locked_by=None, locked_until=None)
            )
        if result.rowcount:  # type: ignore[attr-defined]
            log.warning("requeued %d jobs left running by a previous process", result.rowcount)  # type: ignore[attr-defined]

    async def stop(self) -> None:
        """Stop the background tasks, letting running jobs finish."""
        await self.worker.stop()
        if self.sealer is not None:
            events.remove_listener(wake_on_events)
            await self.sealer.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
