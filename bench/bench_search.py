"""Message search, newest first, on a generated data set: Hilo's plans against one statement.

    python -m bench generate --size 1m                 # once
    python -m bench.bench_search --size 1m             # both databases
    python -m bench.bench_search --size 1m --backend sqlite --repeat 9

For each query (the benchmark's common words, a booking reference from the data, two common
words that are never together, a word that is nowhere), the first page of 26 and the page
after it are read through ``hilo.search.repository.search_messages`` in-process, sequentially,
on the kept data set (read only, after sampling statistics as the server does). The baseline,
in the same run and the same sessions, is the single statement the search sent before: on
SQLite every FTS5 match looked up and sorted by time, on PostgreSQL whatever the planner makes
of the match and the order. Both must return the same messages; the ratio is Hilo's median
time over the baseline's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, literal, literal_column, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from bench.datasets import Dataset
from bench.reads import COMMON_WORDS
from bench.sizes import DEFAULT_DATA_DIR, DEFAULT_PG_URL, RESULTS_DIR, parse_size
from hilo.db import Database
from hilo.models import Message
from hilo.search import repository
from hilo.search.service import words_of

LIMIT = 26
# A query slower than this is not repeated (the one statement took minutes on 10M messages).
SLOW_MS = 5_000


async def baseline(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    words: list[str],
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Message]:
    """The one statement of the search before its plans (commit 8bff483)."""
    query = select(Message).where(Message.workspace_id == workspace_id)
    if session.get_bind().dialect.name == "postgresql":
        matching = repository._WORDS.op("@@")(
            func.plainto_tsquery(repository._SIMPLE, " ".join(words))
        )
    else:
        expression = repository._fts_expression(words)
        matching = literal_column("messages.rowid").in_(repository._fts_rowids(expression))
    query = query.where(matching)
    if after is not None:
        query = query.where(
            tuple_(Message.created_at, Message.id)
            < tuple_(literal(after[0], Message.created_at.type), literal(after[1], Message.id.type))
        )
    query = query.order_by(Message.created_at.desc(), Message.id.desc()).limit(limit)
    return list((await session.scalars(query)).all())


async def measure(url: str, repeat: int) -> list[dict[str, Any]]:
    db = Database(url, pool_size=2)
    await db.refresh_statistics()
    async with db.read() as session:
        workspace_id = await session.scalar(select(Message.workspace_id).limit(1))
        reference = await session.scalar(
            select(Message.text).where(Message.text.like("%R-%")).limit(1)
        )
    ref = next((w for w in (reference or "").split() if w.startswith("R-")), "R-000000")
    queries = [*COMMON_WORDS, ref.strip(".,:;?!"), "hola gracias", "zzzyx"]
    results: list[dict[str, Any]] = []
    assert workspace_id is not None
    for q in queries:
        words = words_of(q)
        row: dict[str, Any] = {"query": q}
        for name, search in (("hilo", repository.search_messages), ("baseline", baseline)):
            times: list[float] = []
            pages: list[list[uuid.UUID]] = []
            for _ in range(repeat):
                pages, after = [], None
                started = time.perf_counter()
                for _page in range(2):
                    async with db.read() as session:
                        found = await search(
                            session, workspace_id, words=words, after=after, limit=LIMIT
                        )
                    pages.append([m.id for m in found])
                    if len(found) < LIMIT:
                        break
                    after = (found[-1].created_at, found[-1].id)
                times.append((time.perf_counter() - started) * 1000)
                if times[-1] > SLOW_MS:  # once is enough to say how slow
                    break
            row[name] = {"median_ms": round(statistics.median(times), 2), "max_ms": max(times)}
            row[f"{name}_pages"] = pages
        row["same"] = row.pop("hilo_pages") == row.pop("baseline_pages")
        row["ratio"] = round(row["hilo"]["median_ms"] / max(row["baseline"]["median_ms"], 1e-3), 3)
        results.append(row)
        print(
            f"  {q:14} hilo {row['hilo']['median_ms']:9.1f} ms   one statement "
            f"{row['baseline']['median_ms']:9.1f} ms   ratio {row['ratio']:6.3f}   "
            f"same messages: {row['same']}",
            flush=True,
        )
    await db.dispose()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_search", description=__doc__)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--size", default="1m")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--json", type=Path, default=RESULTS_DIR / "search.json")
    args = parser.parse_args(argv)
    size = parse_size(args.size)
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    report: dict[str, Any] = {"size": size.label, "limit": LIMIT, "repeat": args.repeat}
    ok = True
    for backend in backends:
        dataset = Dataset(backend, size, args.seed, args.data_dir, args.pg_url)
        if not dataset.exists():
            print(
                f"[{backend}] no {size.label} data set: "
                f"python -m bench generate --size {size.label}"
            )
            return 2
        print(f"[{backend}] {dataset.name}: first two pages of {LIMIT}, median of {args.repeat}")
        rows = asyncio.run(measure(dataset.url, args.repeat))
        ok = ok and all(r["same"] for r in rows)
        report[backend] = rows
    args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
