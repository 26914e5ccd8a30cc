"""The worker pool: claims due jobs with a lease, runs them, retries with backoff.

A job's effects and its completion commit in one transaction (see ``JobContext.finish``): if
a worker dies half-way, the lease runs out and another worker runs the job again from the
start, and a worker that lost its lease cannot commit. Handlers therefore run at least once
and their database effects land exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hilo.clock import now
from hilo.db import Database
from hilo.jobs import service
from hilo.jobs.registry import BATCH_HANDLERS, BATCH_SIZES, HANDLERS, GiveUp, RetryLater
from hilo.models import Job

log = logging.getLogger(__name__)

MAX_BACKOFF = timedelta(minutes=10)
# A job that lost a race to insert the same row runs again almost at once.
CONFLICT_RETRY = timedelta(milliseconds=50)


def backoff(attempts: int) -> timedelta:
    """Exponential backoff with jitter: 1 s, 2 s, 4 s ... capped at ten minutes."""
    base = min(2 ** max(attempts - 1, 0), MAX_BACKOFF.total_seconds())
    return timedelta(seconds=base * random.uniform(0.8, 1.2))


def held(job: Job, worker_id: str) -> tuple[Any, ...]:
    """The job row as this claim left it: a later claim, even by us, bumped ``attempts``."""
    return (Job.id == job.id, Job.locked_by == worker_id, Job.attempts == job.attempts)


def _group(due: list[tuple[Any, str]], tasks: int, sizes: dict[str, int]) -> list[list[Any]]:
    """Job ids for at most ``tasks`` tasks, in order: a batchable job joins the open batch of
    its name until it is full, any other job is a task of its own."""
    groups: list[list[Any]] = []
    open_batch: dict[str, list[Any]] = {}
    for job_id, name in due:
        size = sizes.get(name, 1)
        batch = open_batch.get(name)
        if batch is not None and len(batch) < size:
            batch.append(job_id)
            continue
        if len(groups) == tasks:
            continue  # no task left for it; a later job may still join an open batch
        groups.append([job_id])
        if size > 1:
            open_batch[name] = groups[-1]
    return groups


class LeaseLost(Exception):
    """Another worker took this job after our lease expired; our work must not commit."""


class JobContext:
    """What a handler gets: the job, the database, and the means to finish the job."""

    def __init__(
        self,
        db: Database,
        job: Job,
        worker_id: str,
        *,
        batch: AsyncSession | None = None,
        batch_jobs: list[Job] | None = None,
    ) -> None:
        self.db = db
        self.job = job
        self.worker_id = worker_id
        self.finished = False
        self._batch = batch
        # Set by a batch handler for a job that should rather run on its own, after the
        # batch commits (one that may ask to be retried later would roll the batch back).
        self.alone = False
        # Every job of the batch this one runs in (just this one when it runs alone), so
        # that the first can load what all of them need in one query.
        self.batch_jobs = batch_jobs or [job]

    @property
    def payload(self) -> dict[str, Any]:
        return self.job.payload

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """The job's transaction: its own, or the one its batch shares (committed by the
        worker once every job of the batch has run)."""
        if self._batch is not None:
            yield self._batch
            return
        async with self.db.transaction() as session:
            yield session

    async def finish(self, session: AsyncSession) -> None:
        """Complete the job inside ``session``'s transaction, with the handler's effects."""
        result = await session.execute(delete(Job).where(*held(self.job, self.worker_id)))
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise LeaseLost(f"job {self.job.id} was taken by another worker")
        self.finished = True


async def finish_all(session: AsyncSession, contexts: list[JobContext]) -> None:
    """Complete several jobs of one worker in one statement (see ``JobContext.finish``)."""
    if not contexts:
        return
    worker_id = contexts[0].worker_id
    held_rows = [(ctx.job.id, ctx.job.attempts) for ctx in contexts]
    result = await session.execute(
        delete(Job).where(tuple_(Job.id, Job.attempts).in_(held_rows), Job.locked_by == worker_id)
    )
    if result.rowcount != len(contexts):  # type: ignore[attr-defined]
        raise LeaseLost(f"{len(contexts) - result.rowcount} jobs were taken by another worker")  # type: ignore[attr-defined]
    for ctx in contexts:
        ctx.finished = True


class Worker:
    """Runs jobs from the queue with ``concurrency`` tasks at most."""

    def __init__(
        self,
        db: Database,
        *,
        concurrency: int = 4,
        batch: int = 20,
        poll_seconds: float = 1.0,
        lease_seconds: float = 30.0,
    ) -> None:
        self.db = db
        self.lease = timedelta(seconds=lease_seconds)
        self.concurrency = concurrency
        self.batch = max(batch, 1)
        self.poll_seconds = poll_seconds
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(32):08x}"
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._stopping = False

    def wake(self) -> None:
        """Look for due jobs now (called after a commit that enqueued one)."""
        self._wake.set()

    async def run(self) -> None:
        """Claim and run jobs until :meth:`stop`."""
        service.add_waker(self.wake)
        try:
            while not self._stopping:
                free = self.concurrency - len(self._running)
                claimed: list[list[Job]] = []
                if free > 0:
                    try:
                        claimed = await self._claim(free)
                    except Exception:
                        log.exception("claiming jobs failed")
                        await asyncio.sleep(self.poll_seconds)
                for rows in claimed:
                    task = asyncio.create_task(self._run(rows))
                    self._running.add(task)
                    task.add_done_callback(self._done)
                if claimed and len(claimed) == free:
                    continue
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
        finally:
            service.remove_waker(self.wake)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wake.set()

    async def stop(self) -> None:
        """Stop claiming, and wait for the jobs already running."""
        self._stopping = True
        self._wake.set()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def _claim(self, tasks: int) -> list[list[Job]]:
        """Due jobs for up to ``tasks`` tasks, oldest first: one job a task, or a batch."""
        moment = now()
        due = or_(
            and_(Job.status == "queued", Job.run_at <= moment),
            and_(Job.status == "running", Job.locked_until < moment),
        )
        names = list(HANDLERS)
        sizes = {name: min(size, self.batch) for name, size in BATCH_SIZES.items()}
        limit = tasks * max(sizes.values(), default=1)
        pick = (
            select(Job.id, Job.name)
            .where(due, Job.name.in_(names))
            .order_by(Job.run_at)
            .limit(limit)
        )
        if not self.db.is_sqlite:
            pick = pick.with_for_update(skip_locked=True)
        async with self.db.transaction() as session:
            groups = _group(list((await session.execute(pick)).tuples()), tasks, sizes)
            ids = [job_id for group in groups for job_id in group]
            if not ids:
                return []
            rows = list(
                (
                    await session.scalars(
                        update(Job)
                        .where(Job.id.in_(ids))
                        .values(
                            status="running",
                            locked_by=self.worker_id,
                            attempts=Job.attempts + 1,
                            locked_until=moment + self.lease,
                        )
                        .returning(Job)
                    )
                ).all()
            )
        by_id = {row.id: row for row in rows}
        return [[by_id[job_id] for job_id in group] for group in groups]

    async def _run(self, rows: list[Job]) -> None:
        if len(rows) == 1:
            await self._run_one(rows[0])
            return
        name = rows[0].name
        try:
            async with self.db.transaction() as session:
                contexts = [
                    JobContext(self.db, row, self.worker_id, batch=session, batch_jobs=rows)
                    for row in rows
                ]
                if name in BATCH_HANDLERS:
                    await BATCH_HANDLERS[name](session, contexts)
                else:
                    for ctx in contexts:
                        await HANDLERS[name](ctx)
                await finish_all(
                    session, [ctx for ctx in contexts if not ctx.finished and not ctx.alone]
                )
        except Exception as exc:
            # Nothing of the batch is stored; each job now runs, and fails, on its own.
            log.info(
                "a batch of %d %s jobs fell back to one at a time (%s)",
                len(rows),
                rows[0].name,
                type(exc).__name__,
            )
            for row in rows:
                await self._run_one(row)
            return
        for ctx in contexts:
            if ctx.alone:
                await self._run_one(ctx.job)

    async def _run_one(self, row: Job) -> None:
        handler = HANDLERS[row.name]
        ctx = JobContext(self.db, row, self.worker_id)
        try:
            await handler(ctx)
            if not ctx.finished:
                async with self.db.transaction() as session:
                    await ctx.finish(session)
        except LeaseLost:
            log.warning("job %s %s lost its lease; left to the other worker", row.id, row.name)
        except RetryLater as exc:
            await self._reschedule(row, str(exc), exc.delay or backoff(row.attempts))
        except GiveUp as exc:
            await self._fail(row, str(exc))
        except IntegrityError:
            # Two jobs raced to create the same row (a new customer's first two messages at
            # once): this one rolled back whole, and on its next run it finds the other's row.
            # The database's message names the conflicting values, customer data: not logged.
            log.warning("job %s %s met a concurrent write; retrying", row.id, row.name)
            delay = CONFLICT_RETRY if row.attempts <= 3 else backoff(row.attempts)
            await self._reschedule(row, "IntegrityError (concurrent write)", delay)
        except Exception as exc:
            log.exception("job %s %s failed (attempt %s)", row.id, row.name, row.attempts)
            await self._reschedule(row, f"{type(exc).__name__}: {exc}", backoff(row.attempts))

    async def _reschedule(self, row: Job, error: str, delay: timedelta) -> None:
        async with self.db.transaction() as session:
            await session.execute(
                update(Job)
                .where(*held(row, self.worker_id))
                .values(
                    status="queued",
                    run_at=now() + delay,
                    locked_by=None,
                    locked_until=None,
                    last_error=error[:2000],
                )
            )

    async def _fail(self, row: Job, error: str) -> None:
        # The reason may quote a provider naming the customer: kept on the job row, not logged.
        log.warning("job %s %s gave up", row.id, row.name)
        log.debug("job %s %s gave up: %s", row.id, row.name, error)
        async with self.db.transaction() as session:
            await session.execute(
                update(Job)
                .where(*held(row, self.worker_id))
                .values(status="failed", finished_at=now(), last_error=error[:2000])
            )
