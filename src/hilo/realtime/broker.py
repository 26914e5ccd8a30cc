"""Live fan-out of committed events to the streams open in this process and in the others.

Every process delivers its own commits to its local subscribers at once, then hands them to a
transport so the other processes deliver them too: PostgreSQL LISTEN/NOTIFY, Redis pub/sub,
or nothing (memory only, the embedded SQLite case). Messages carry the sender's origin id so
a process ignores its own. A subscriber that cannot keep up is dropped, never waited for:
clients resume from the database with the last event id they saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import threading
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import make_url

from hilo import events
from hilo.db import Database
from hilo.models import Event
from hilo.settings import Settings

log = logging.getLogger(__name__)

CHANNEL = "hilo_events"
# How the LISTEN connection shows in pg_stat_activity.
APP_NAME = "hilo-live"
# PostgreSQL refuses NOTIFY payloads of 8000 bytes or more; bigger events go by reference.
MAX_NOTIFY_BYTES = 7000
QUEUE_SIZE = 1000
# Events waiting for a lost connection to come back; past this the oldest are dropped.
OUTBOX_SIZE = 10_000
HEALTH_CHECK_SECONDS = 30.0
START_WAIT_SECONDS = 10.0
MIN_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0

# Why a subscription ended.
SLOW = "slow"
SHUTDOWN = "shutdown"
GAP = "gap"


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One event as streamed: its id, type, workspace and public JSON (``events.to_dict``)."""

    id: int
    type: str
    workspace_id: str
    json: str

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StreamEvent:
        """Wrap the public form of an event."""
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)
        return cls(int(data["id"]), str(data["type"]), str(data["workspace_id"]), text)

    @classmethod
    def from_row(cls, row: Event) -> StreamEvent:
        """Wrap an event row."""
        return cls.from_dict(events.to_dict(row))


class Subscription:
    """A bounded queue of one workspace's live events for one stream."""

    def __init__(self, broker: Broker, workspace_id: str, maxsize: int) -> None:
        self.broker = broker
        self.workspace_id = workspace_id
        self.queue: asyncio.Queue[StreamEvent | None] = asyncio.Queue(maxsize)
        self.closed_reason: str | None = None

    @property
    def closed(self) -> bool:
        """Whether the broker ended this subscription (see ``closed_reason``)."""
        return self.closed_reason is not None

    def offer(self, event: StreamEvent) -> None:
        """Queue ``event`` without waiting; a full queue drops the subscriber."""
        if self.closed:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            log.warning("dropping a slow live-stream subscriber of workspace %s", self.workspace_id)
            self.broker.unsubscribe(self)
            self.close(SLOW)

    def close(self, reason: str) -> None:
        """End the subscription: the reader gets ``None`` next and resumes from the database."""
        if self.closed:
            return
        self.closed_reason = reason
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)

    async def get(self) -> StreamEvent | None:
        """The next event; ``None`` once closed."""
        return await self.queue.get()


def resolve_mode(settings: Settings, db: Database) -> str:
    """The transport for ``settings.broker``: "memory", "postgres" or "redis"."""
    mode = settings.broker.strip().lower()
    if mode == "auto":
        return "memory" if db.is_sqlite else "postgres"
    if mode == "postgres" and db.is_sqlite:
        raise ValueError("HILO_BROKER=postgres needs a PostgreSQL database")
    if mode not in ("memory", "postgres", "redis"):
        raise ValueError(f"unknown HILO_BROKER {settings.broker!r}: auto, memory, postgres, redis")
    return mode


def asyncpg_dsn(url: str) -> str:
    """The plain ``postgresql://`` DSN asyncpg takes, from SQLAlchemy's URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Broker:
    """Fans committed events out to subscriber queues, per workspace, across processes."""

    def __init__(self, db: Database, settings: Settings, *, queue_size: int = QUEUE_SIZE) -> None:
        self.db = db
        self.settings = settings
        self.mode = resolve_mode(settings, db)
        self.queue_size = queue_size
        self.origin = uuid.uuid4().hex
        self._subscribers: dict[str, set[Subscription]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outbox: deque[str] = deque()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._loads: set[asyncio.Task[None]] = set()
        self._signals: dict[int, Any] = {}
        # Set by the exit signal: the server is draining, new streams end at once.
        self._draining = False
        self.connected = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen for commits and, unless memory-only, connect the cross-process transport."""
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        events.add_listener(self.on_commit)
        self._close_streams_on_exit_signals()
        if self.mode == "postgres":
            self._task = asyncio.create_task(self._supervise(self._run_postgres), name="hilo-pg")
        elif self.mode == "redis":
            self._task = asyncio.create_task(self._supervise(self._run_redis), name="hilo-redis")
        else:
            self.connected.set()
        try:
            # Serve with the transport up when it can be; else it keeps retrying behind.
            async with asyncio.timeout(START_WAIT_SECONDS):
                await self.connected.wait()
        except TimeoutError:
            log.warning("live broker %s not connected yet; events of other hosts wait", self.mode)
        log.info("live broker started (%s)", self.mode)

    async def stop(self) -> None:
        """Stop listening, end every open stream and close the transport."""
        self._stopping = True
        events.remove_listener(self.on_commit)
        self._restore_signals()
        self.close_all(SHUTDOWN)
        self._wake.set()
        tasks = [t for t in (self._task, *self._loads) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None

    def _close_streams_on_exit_signals(self) -> None:
        # Open streams would keep the server's graceful shutdown waiting forever (the lifespan
        # stop runs only after every response ended): end them when the exit signal arrives,
        # then let the server's own handler run. Only the main thread may set handlers.
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(signum)
            if not callable(previous):
                continue
            self._signals[signum] = previous

            def handler(sig: int, frame: FrameType | None, previous: Any = previous) -> None:
                loop = self._loop
                if loop is not None and not loop.is_closed():
                    loop.call_soon_threadsafe(self._drain)
                previous(sig, frame)

            signal.signal(signum, handler)

    def _drain(self) -> None:
        self._draining = True
        self.close_all(SHUTDOWN)

    def _restore_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, previous in self._signals.items():
            signal.signal(signum, previous)
        self._signals.clear()

    # -- subscribers -------------------------------------------------------------------------

    def subscribe(self, workspace_id: uuid.UUID | str) -> Subscription:
        """A new subscription to the live events of one workspace."""
        subscription = Subscription(self, str(workspace_id), self.queue_size)
        if self._stopping or self._draining:
            subscription.close(SHUTDOWN)
        else:
            self._subscribers.setdefault(subscription.workspace_id, set()).add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Forget a subscription (idempotent)."""
        group = self._subscribers.get(subscription.workspace_id)
        if group is None:
            return
        group.discard(subscription)
        if not group:
            del self._subscribers[subscription.workspace_id]

    def subscriber_count(self, workspace_id: uuid.UUID | str | None = None) -> int:
        """How many streams are open, in one workspace or in all."""
        if workspace_id is not None:
            return len(self._subscribers.get(str(workspace_id), ()))
        return sum(len(group) for group in self._subscribers.values())

    def close_all(self, reason: str) -> None:
        """End every open subscription."""
        groups, self._subscribers = self._subscribers, {}
        for group in groups.values():
            for subscription in group:
                subscription.close(reason)

    def deliver(self, items: Iterable[StreamEvent]) -> None:
        """Hand events to this process's subscribers of their workspaces."""
        for item in items:
            for subscription in list(self._subscribers.get(item.workspace_id, ())):
                subscription.offer(item)

    # -- commits of this process -------------------------------------------------------------

    def on_commit(self, rows: list[Event]) -> None:
        """After-commit listener: enqueue only, never block the committing code."""
        items = [StreamEvent.from_row(row) for row in rows]
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._dispatch(items)
        else:  # committed on another thread: queues belong to the broker's loop
            loop.call_soon_threadsafe(self._dispatch, items)

    def _dispatch(self, items: list[StreamEvent]) -> None:
        self.deliver(items)
        if self.mode == "memory" or self._stopping:
            return
        for item in items:
            if len(self._outbox) >= OUTBOX_SIZE:
                self._outbox.popleft()
                log.warning("live broker outbox full: dropping the oldest event for other hosts")
            self._outbox.append(self.envelope(item))
        self._wake.set()

    def envelope(self, item: StreamEvent) -> str:
        """The cross-process message for an event: whole if small, else a reference."""
        text = f'{{"origin":{json.dumps(self.origin)},"event":{item.json}}}'
        if len(text.encode()) < MAX_NOTIFY_BYTES:
            return text
        return json.dumps(
            {"origin": self.origin, "workspace_id": item.workspace_id, "id": item.id},
            separators=(",", ":"),
        )

    # -- messages of other processes ---------------------------------------------------------

    def receive(self, payload: str | bytes) -> None:
        """Handle one cross-process message (synchronous: may only schedule work)."""
        try:
            message = json.loads(payload)
            if message.get("origin") == self.origin:
                return
            if "event" in message:
                self.deliver([StreamEvent.from_dict(message["event"])])
                return
            workspace_id, event_id = str(message["workspace_id"]), int(message["id"])
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("ignoring a malformed live message: %.200r", payload)
            return
        if not self.subscriber_count(workspace_id) or self._stopping:
            return
        task = asyncio.get_running_loop().create_task(self._load(workspace_id, event_id))
        self._loads.add(task)
        task.add_done_callback(self._loads.discard)

    async def _load(self, workspace_id: str, event_id: int) -> None:
        try:
            async with self.db.read() as session:
                row = (
                    await session.scalars(
                        select(Event).where(
                            Event.workspace_id == uuid.UUID(workspace_id), Event.id == event_id
                        )
                    )
                ).first()
                item = StreamEvent.from_row(row) if row is not None else None
        except Exception:
            log.exception("loading event %s for the live stream failed", event_id)
            return
        if item is not None:
            self.deliver([item])

    # -- transports --------------------------------------------------------------------------

    async def _supervise(self, run: Callable[[], Awaitable[None]]) -> None:
        backoff = MIN_BACKOFF_SECONDS
        while not self._stopping:
            try:
                await run()
                backoff = MIN_BACKOFF_SECONDS
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "live broker %s connection failed (%s: %s); retrying in %.1fs",
                    self.mode,
                    type(exc).__name__,
                    exc,
                    backoff,
                )
            finally:
                self.connected.clear()
            if self._stopping:
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    def _on_connected(self) -> None:
        if self._subscribers:
            # Events of other processes may have passed while not listening: make the open
            # streams resume from the database rather than silently miss them.
            log.warning("live broker %s (re)connected; open streams resume", self.mode)
            self.close_all(GAP)
        self.connected.set()

    async def _wait_for_outbox(self) -> bool:
        """Wait until there is something to send; ``False`` after a quiet health interval."""
        if self._outbox or self._stopping:
            return True
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(HEALTH_CHECK_SECONDS):
                await self._wake.wait()
            return True
        return False

    async def _run_postgres(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(
            asyncpg_dsn(self.db.url), timeout=10, server_settings={"application_name": APP_NAME}
        )
        lost = asyncio.Event()

        def on_notify(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            self.receive(payload)

        def on_lost(_conn: Any) -> None:
            lost.set()
            self._wake.set()

        try:
            conn.add_termination_listener(on_lost)
            await conn.add_listener(CHANNEL, on_notify)
            log.info("live broker listening on PostgreSQL channel %s", CHANNEL)
            self._on_connected()
            while not self._stopping:
                if not await self._wait_for_outbox():
                    await conn.fetchval("SELECT 1", timeout=10)
                    continue
                if lost.is_set() or conn.is_closed():
                    raise ConnectionError("the LISTEN connection was closed")
                while self._outbox and not self._stopping:
                    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, self._outbox[0])
                    self._outbox.popleft()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)
            if not conn.is_closed():
                conn.terminate()

    async def _run_redis(self) -> None:
        import redis.asyncio as aioredis

        client = aioredis.from_url(self.settings.redis_url)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        reader: asyncio.Task[None] | None = None
        try:
            await pubsub.subscribe(CHANNEL)
            log.info("live broker subscribed to Redis channel %s", CHANNEL)
            self._on_connected()

            async def read() -> None:
                while True:
                    message = await pubsub.get_message(timeout=HEALTH_CHECK_SECONDS)
                    if message is not None and message.get("type") == "message":
                        self.receive(message["data"])

            reader = asyncio.create_task(read(), name="hilo-redis-reader")
            reader.add_done_callback(lambda _t: self._wake.set())
            while not self._stopping:
                if reader.done():
                    reader.result()  # raises what broke the subscription
                    raise ConnectionError("the Redis subscription ended")
                if not await self._wait_for_outbox():
                    await client.ping()
                    continue
                while self._outbox and not self._stopping and not reader.done():
                    await client.publish(CHANNEL, self._outbox[0])
                    self._outbox.popleft()
        finally:
            if reader is not None:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
            with contextlib.suppress(Exception):
                await pubsub.aclose()
            with contextlib.suppress(Exception):
                await client.aclose()
