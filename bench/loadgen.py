"""The load generator: a separate process that drives a Hilo server over loopback.

Modes (``python -m bench.loadgen MODE --plan FILE --out FILE ...``):

- ``post``: send pre-built, pre-signed HTTP/1.1 requests over N keep-alive connections, as
  fast as the server answers or at a fixed rate; record send and answer times per request.
- ``get``: agent reads (GET with a bearer token), following ``next_cursor`` when a read
  spans pages, over N connections for a duration; record each read's latency.
- ``sql``: the same reads' SQL statements run straight on the database (the baseline).
- ``watch``: follow the live stream (SSE) and write down when each message became visible.

Requests are written as raw bytes on asyncio streams (with uvloop when installed), so that
one core of load generator outruns one core of server; nothing is built per request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import pickle
import random
import signal
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Read:
    """One agent read: a label, its first path, and whether to follow ``next_cursor``."""

    label: str
    path: str
    follow: bool = False


def request_bytes(
    method: str, host: str, path: str, headers: dict[str, str], body: bytes = b""
) -> bytes:
    """A complete HTTP/1.1 request (keep-alive)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Connection:
    """One keep-alive HTTP/1.1 connection that sends raw requests."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        """Send one request; the status and body of the answer. Reconnects once if closed."""
        for attempt in (1, 2):
            if self.writer is None:
                await self.open()
            assert self.reader is not None and self.writer is not None
            try:
                self.writer.write(raw)
                return await self._answer(self.reader)
            except (ConnectionError, asyncio.IncompleteReadError):
                await self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, bytes]:
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, chunked, close = 0, False, False
        for line in head.split(b"\r\n")[1:]:
            name, _sep, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and b"close" in value.lower():
                close = True
        if chunked:
            body = bytearray()
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await reader.readexactly(size + 2)
                if size == 0:
                    break
                body += chunk[:-2]
            data = bytes(body)
        else:
            data = await reader.readexactly(length) if length else b""
        if close:
            await self.close()
        return status, data


def _use_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()


# -- post: webhooks ----------------------------------------------------------------------------


async def post_all(
    base_url: str,
    requests: Sequence[bytes],
    *,
    concurrency: int,
    rate: float | None,
) -> dict[str, Any]:
    """Send every request once; closed loop (as fast as answered) or at ``rate`` per second."""
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    n = len(requests)
    sent = [0.0] * n
    acked = [0.0] * n
    status = [0] * n
    cursor = iter(range(n))
    start = time.time() + 0.2

    async def worker() -> None:
        conn = Connection(host, port)
        await conn.open()
        try:
            for index in cursor:
                if rate:
                    delay = start + index / rate - time.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                sent[index] = time.time()
                try:
                    status[index], _body = await conn.send(requests[index])
                except (ConnectionError, asyncio.IncompleteReadError, OSError):
                    status[index] = 599
                acked[index] = time.time()
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"sent": sent, "acked": acked, "status": status}


# -- get: agent reads -------------------------------------------------------------------------


async def get_for(
    base_url: str,
    token: str,
    reads: Sequence[Read],
    *,
    concurrency: int,
    duration: float,
) -> dict[str, Any]:
    """Run the reads round-robin from ``concurrency`` connections for ``duration`` seconds."""
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    results: list[tuple[str, float, int, int]] = []
    order = list(range(len(reads)))
    deadline = time.time() + duration

    async def worker(offset: int) -> None:
        conn = Connection(host, port)
        await conn.open()
        position = offset
        try:
            while time.time() < deadline:
                read = reads[order[position % len(order)]]
                position += 1
                started = time.perf_counter()
                path, pages, code = read.path, 0, 0
                while True:
                    raw = request_bytes("GET", parts.netloc, path, headers)
                    code, body = await conn.send(raw)
                    pages += 1
                    if code != 200 or not read.follow:
                        break
                    following = json.loads(body).get("next_cursor")
                    if not following:
                        break
                    path = f"{read.path}&cursor={following}"
                results.append((read.label, time.perf_counter() - started, code, pages))
        finally:
            await conn.close()

    random.Random(7).shuffle(order)
    step = max(len(order) // concurrency, 1)
    await asyncio.gather(*(worker(i * step) for i in range(concurrency)))
    return {"reads": results}


# -- sql: the same reads straight on the database -------------------------------------------------

Statement = tuple[str, Any]


def sql_sqlite(
    path: str, plan: Sequence[tuple[str, list[Statement]]], *, concurrency: int, duration: float
) -> dict[str, Any]:
    """Each thread its own connection (SQLite releases the GIL while it works)."""
    results: list[tuple[str, float, int, int]] = []
    deadline = time.time() + duration
    lock = threading.Lock()

    def worker(offset: int) -> None:
        conn = sqlite3.connect(path, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=30000")
        position = offset
        mine: list[tuple[str, float, int, int]] = []
        while time.time() < deadline:
            label, statements = plan[position % len(plan)]
            position += 1
            started = time.perf_counter()
            for sql, params in statements:
                conn.execute(sql, params).fetchall()
            mine.append((label, time.perf_counter() - started, 200, len(statements)))
        conn.close()
        with lock:
            results.extend(mine)

    step = max(len(plan) // concurrency, 1)
    threads = [threading.Thread(target=worker, args=(i * step,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"reads": results}


async def sql_postgres(
    url: str, plan: Sequence[tuple[str, list[Statement]]], *, concurrency: int, duration: float
) -> dict[str, Any]:
    """One asyncpg connection per concurrent reader."""
    import asyncpg

    results: list[tuple[str, float, int, int]] = []
    deadline = time.time() + duration

    async def worker(offset: int) -> None:
        conn = await asyncpg.connect(url)
        position = offset
        try:
            while time.time() < deadline:
                label, statements = plan[position % len(plan)]
                position += 1
                started = time.perf_counter()
                for sql, params in statements:
                    await conn.fetch(sql, *params)
                results.append((label, time.perf_counter() - started, 200, len(statements)))
        finally:
            await conn.close()

    step = max(len(plan) // concurrency, 1)
    await asyncio.gather(*(worker(i * step) for i in range(concurrency)))
    return {"reads": results}


# -- watch: the live stream -------------------------------------------------------------------


async def watch(base_url: str, token: str, out: Path) -> None:
    """Write ``provider_message_id<TAB>time`` for every ``message.received`` on the stream.

    A stream the server drops (a slow reader) resumes with ``Last-Event-ID``, so nothing is
    missed; what is replayed is written with the time it arrived.
    """
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    last_id: str | None = None
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    with out.open("a") as sink:
        while not stopping.is_set():
            headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
            if last_id is not None:
                headers["Last-Event-ID"] = last_id
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                await asyncio.sleep(0.2)
                continue
            writer.write(request_bytes("GET", parts.netloc, "/api/v1/stream/sse", headers))
            try:
                await reader.readuntil(b"\r\n\r\n")
                event = ""
                lines_since_flush = 0
                while not stopping.is_set():
                    try:
                        line = await asyncio.wait_for(reader.readline(), 0.2)
                    except TimeoutError:
                        sink.flush()
                        continue
                    if not line:
                        break
                    text = line.decode().rstrip("\r\n")
                    # Chunked framing lines (sizes, blanks) are skipped by their shape.
                    if text.startswith("id: "):
                        last_id = text[4:]
                    elif text.startswith("event: "):
                        event = text[7:]
                    elif text.startswith("data: ") and event == "message.received":
                        data = json.loads(text[6:])["data"]
                        provider_id = data.get("provider_message_id")
                        sink.write(f"{provider_id}\t{time.time():.6f}\n")
                        lines_since_flush += 1
                        if lines_since_flush >= 200:
                            sink.flush()
                            lines_since_flush = 0
            except (ConnectionError, asyncio.IncompleteReadError, OSError):
                await asyncio.sleep(0.1)
            finally:
                sink.flush()
                writer.close()


# -- entry point --------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("mode", choices=("post", "get", "sql", "watch"))
    parser.add_argument("--base", default="")
    parser.add_argument("--token", default="")
    parser.add_argument("--db", default="")
    parser.add_argument("--plan", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args(argv)
    _use_uvloop()
    result: dict[str, Any]
    if args.mode == "watch":
        asyncio.run(watch(args.base, args.token, args.out))
        return
    plan: Any = pickle.loads(args.plan.read_bytes())  # noqa: S301 (written by the orchestrator)
    if args.mode == "post":
        result = asyncio.run(
            post_all(args.base, plan, concurrency=args.concurrency, rate=args.rate or None)
        )
    elif args.mode == "get":
        result = asyncio.run(
            get_for(
                args.base, args.token, plan, concurrency=args.concurrency, duration=args.duration
            )
        )
    elif args.db.startswith("sqlite"):
        result = sql_sqlite(
            args.db.split(":///", 1)[1],
            plan,
            concurrency=args.concurrency,
            duration=args.duration,
        )
    else:
        result = asyncio.run(
            sql_postgres(args.db, plan, concurrency=args.concurrency, duration=args.duration)
        )
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
