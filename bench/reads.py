"""Agent reads through the API, and the same SQL straight on the database (the baseline).

The baseline is exact by construction: each read is first made once through the real
application in this process (ASGI, no network), and the SELECT statements it sends to the
database are recorded with their parameters. The ``sql`` load generator then replays those
statements on a plain driver connection (sqlite3, asyncpg), so the ratio API / database shows
what Hilo adds: HTTP, authentication, the ORM, transactions, serialisation.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from bench import db
from bench.ingest import latency_summary
from bench.loadgen import Read, Statement

# The reads of an agent's screen; the targets are the (p99, milliseconds).
READS: dict[str, tuple[str, float]] = {
    "timeline": ("Contact timeline, latest 50 messages", 20),
    "inbox": ("Inbox page: 25 open conversations, newest first, with filters", 20),
    "conversation500": ("Conversation of 500 messages (3 pages of 200)", 50),
    "contact_phone": ("Contact search by phone", 20),
    "contact_email": ("Contact search by e-mail", 20),
    "contact_name": ("Contact search by name", 20),
    "search_reference": ("Full-text search: a booking reference", 200),
    "search_word": ("Full-text search: a common word", 200),
}
COMMON_WORDS = ("reserva", "gracias", "booking", "factura", "matrícula", "refund")
_REFERENCE = re.compile(r"\bR-\d{6}\b")


@dataclass
class Probes:
    """Ids and values of the data set that the reads look up."""

    contacts: list[str]
    phones: list[str]
    emails: list[str]
    names: list[str]
    long_conversations: list[str]
    references: list[str]
    teams: list[str]
    agents: list[str]
    channels: list[str]


def load_probes(url: str, *, limit: int = 60, seed: int = 1) -> Probes:
    """Sample the generator's probes and the workspace's teams, agents and channels."""
    rng = random.Random(seed)
    grouped: dict[str, list[str]] = {}
    for kind, value in db.fetch(url, "SELECT kind, value FROM bench_probes"):
        grouped.setdefault(str(kind), []).append(str(value))

    def pick(kind: str) -> list[str]:
        values = grouped.get(kind, [])
        return rng.sample(values, k=min(limit, len(values)))

    contacts = pick("contact")
    references: list[str] = []
    for contact in contacts[:20]:
        rows = db.fetch(
            url,
            "SELECT text FROM messages WHERE contact_id = ? ORDER BY created_at DESC LIMIT 20",
            uuid.UUID(contact),
        )
        for (text,) in rows:
            references += _REFERENCE.findall(str(text))
    return Probes(
        contacts=contacts,
        phones=pick("phone"),
        emails=pick("email"),
        names=pick("name"),
        long_conversations=pick("conversation500"),
        references=sorted(set(references))[:limit],
        teams=[str(db.as_uuid(r[0])) for r in db.fetch(url, "SELECT id FROM teams")],
        agents=[
            str(db.as_uuid(r[0]))
            for r in db.fetch(url, "SELECT id FROM users WHERE role = 'agent' LIMIT 20")
        ],
        channels=[
            str(db.as_uuid(r[0]))
            for r in db.fetch(url, "SELECT id FROM channels WHERE type IN ('whatsapp', 'sms')")
        ],
    )


def plan_reads(probes: Probes) -> list[Read]:
    """Concrete requests for every kind of read, cycling over the probes."""
    reads: list[Read] = []
    for contact in probes.contacts:
        reads.append(
            Read("timeline", f"/api/v1/contacts/{contact}/timeline?limit=50&newest_first=true")
        )
    filters: list[dict[str, str]] = [{}]
    filters += [{"team_id": t} for t in probes.teams[:3]]
    filters += [{"assignee_id": a} for a in probes.agents[:3]]
    filters += [{"channel_id": c} for c in probes.channels[:2]]
    filters += [{"unassigned": "true"}, {"label": "reserva"}, {"label": "factura"}]
    for extra in filters:
        query = urlencode({"status": "open", "limit": "25", **extra})
        reads.append(Read("inbox", f"/api/v1/conversations?{query}"))
    for conversation in probes.long_conversations:
        reads.append(
            Read(
                "conversation500",
                f"/api/v1/conversations/{conversation}/messages?limit=200",
                follow=True,
            )
        )
    for phone in probes.phones:
        reads.append(Read("contact_phone", f"/api/v1/contacts?phone={quote(phone)}&limit=25"))
    for email in probes.emails:
        reads.append(Read("contact_email", f"/api/v1/contacts?email={quote(email)}&limit=25"))
    for name in probes.names:
        reads.append(Read("contact_name", f"/api/v1/contacts?q={quote(name)}&limit=25"))
    for reference in probes.references:
        reads.append(
            Read("search_reference", f"/api/v1/search/messages?q={quote(reference)}&limit=25")
        )
    for word in COMMON_WORDS:
        reads.append(Read("search_word", f"/api/v1/search/messages?q={quote(word)}&limit=25"))
    return reads


def capture_sql(url: str, token: str, reads: Sequence[Read]) -> list[tuple[str, list[Statement]]]:
    """Each read made once in-process; the SELECTs it sent, with their parameters."""
    return asyncio.run(_capture(url, token, reads))


async def _capture(
    url: str, token: str, reads: Sequence[Read]
) -> list[tuple[str, list[Statement]]]:
    import httpx
    from sqlalchemy import event

    from hilo.app import create_app
    from hilo.db import Database
    from hilo.settings import Settings

    database = Database(url, pool_size=2)
    app = create_app(Settings(database_url=url, run_workers=False), db=database)
    seen: list[Statement] = []

    def record(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        seen.append((statement, parameters))

    event.listen(database.engine.sync_engine, "before_cursor_execute", record)
    plan: list[tuple[str, list[Statement]]] = []
    headers = {"Authorization": f"Bearer {token}"}
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            # The first request also sets up the driver's connection (version, schema...).
            if reads:
                await client.get(reads[0].path, headers=headers)
            for read in reads:
                seen.clear()
                path = read.path
                while True:
                    response = await client.get(path, headers=headers)
                    response.raise_for_status()
                    following = response.json().get("next_cursor") if read.follow else None
                    if not following:
                        break
                    path = f"{read.path}&cursor={following}"
                kept = [
                    (sql, tuple(params) if params is not None else ())
                    for sql, params in seen
                    if sql.lstrip().upper().startswith("SELECT") and "api_tokens" not in sql
                ]
                plan.append((read.label, kept))
    finally:
        await database.dispose()
    return plan


def summarise(results: Sequence[Sequence[Any]]) -> dict[str, dict[str, Any]]:
    """Latency per read kind (from the load generator's ``reads`` list)."""
    by_label: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    for label, seconds, status, _pages in results:
        if status == 200:
            by_label.setdefault(label, []).append(seconds)
        else:
            errors[label] = errors.get(label, 0) + 1
    summary: dict[str, dict[str, Any]] = {}
    for label in READS:
        values = by_label.get(label, [])
        summary[label] = {
            "count": len(values),
            "errors": errors.get(label, 0),
            **latency_summary(values),
        }
    return summary


def explain(url: str, plan: Sequence[tuple[str, list[Statement]]]) -> dict[str, dict[str, Any]]:
    """The query plans of one example of each read; whether any of them scans a whole table."""
    chosen: dict[str, list[Statement]] = {}
    for label, statements in plan:
        chosen.setdefault(label, statements)
    result: dict[str, dict[str, Any]] = {}
    for label, statements in chosen.items():
        texts = [_explain_one(url, sql, params) for sql, params in statements]
        scans = sorted({t for text in texts for t in table_scans(url, text)})
        result[label] = {
            "statements": [
                {"sql": _one_line(sql), "plan": text}
                for (sql, _p), text in zip(statements, texts, strict=True)
            ],
            "table_scans": scans,
        }
    return result


def _one_line(sql: str) -> str:
    return " ".join(sql.split())


def _explain_one(url: str, sql: str, params: Any) -> str:
    if db.is_sqlite(url):
        import sqlite3

        conn = sqlite3.connect(url.split(":///", 1)[1])
        try:
            rows = conn.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
        finally:
            conn.close()
        depth: dict[int, int] = {0: -1}
        lines = []
        for node, parent, _unused, detail in rows:
            depth[node] = depth.get(parent, -1) + 1
            lines.append("  " * depth[node] + str(detail))
        return "\n".join(lines)
    return asyncio.run(_pg_explain(url, sql, params))


async def _pg_explain(url: str, sql: str, params: Any) -> str:
    import asyncpg

    conn = await asyncpg.connect(db.plain_pg(url))
    try:
        rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}", *params)
    finally:
        await conn.close()
    return "\n".join(str(r[0]) for r in rows)


def table_scans(url: str, plan: str) -> list[str]:
    """Tables a plan reads whole: SQLite's SCAN without an index; on PostgreSQL a sequential
    scan that read more than a thousand rows (a tenant's settings row is no such thing)."""
    if db.is_sqlite(url):
        found = re.findall(r"^\s*SCAN (\w+)\s*$", plan, re.MULTILINE)
        return [t for t in found if not t.startswith("anon")]
    scans = []
    lines = plan.splitlines()
    for number, line in enumerate(lines):
        match = re.search(r"Seq Scan on (\w+).*rows=(\d+) loops=(\d+)", line)
        if not match:
            continue
        rows = int(match.group(2))
        after = " ".join(lines[number + 1 : number + 3])
        removed = re.search(r"Rows Removed by Filter: (\d+)", after)
        rows += int(removed.group(1)) if removed else 0
        rows *= int(match.group(3))
        if rows > 1_000:
            scans.append(f"{match.group(1)} ({rows:,} rows)")
    return scans


def ratios(api: dict[str, dict[str, Any]], base: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """API latency over database latency, per read (p50 and p99)."""
    out: dict[str, Any] = {}
    for label, numbers in api.items():
        other = base.get(label, {})
        out[label] = {
            key: round(numbers[f"{key}_ms"] / other[f"{key}_ms"], 1)
            if other.get(f"{key}_ms")
            else None
            for key in ("p50", "p99")
        }
    return out


def dump(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)
