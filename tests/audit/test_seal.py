"""The seal of the event log: sealing after commit, verification, tampering and erasure."""

from __future__ import annotations

import os

# Before importing hilo: the signing key is derived from it.
os.environ.setdefault("HILO_SECRET_KEY", "test-secret")

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import func, select, text

from hilo import audit, events
from hilo.audit import service as audit_service
from hilo.db import Database
from hilo.events import Actor, record
from hilo.migrate import upgrade
from hilo.models import AuditCheckpoint, Event, Workspace

PG_URL = os.environ.get("HILO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRE_PG = os.environ.get("HILO_REQUIRE_POSTGRES") == "1"
ACTOR = Actor("user", "u-1")


async def _pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A freshly migrated database on each backend; PostgreSQL's is dropped afterwards."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'hilo.db'}"
        upgrade(url)
        yield url
        return
    name = f"hilo_audit_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL is required but not reachable at {PG_URL}: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {exc}")
    url = f"{PG_URL.rpartition('/')[0]}/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def run_with_db(url: str, scenario: Callable[[Database], Awaitable[Any]]) -> Any:
    """Run ``scenario`` with a Database bound to this test's event loop."""

    async def go() -> Any:
        db = Database(url, pool_size=2)
        try:
            return await scenario(db)
        finally:
            await db.dispose()

    return asyncio.run(go())


async def make_workspace(db: Database) -> Workspace:
    async with db.transaction() as session:
        ws = Workspace(slug=f"ws-{uuid.uuid4().hex[:10]}", name="Acme")
        session.add(ws)
    return ws


async def record_events(db: Database, ws: Workspace, count: int, *, start: int = 0) -> list[int]:
    """Record ``count`` events, one transaction each; return their ids."""
    ids = []
    for n in range(start, start + count):
        async with db.transaction() as session:
            event = record(
                session,
                "message.received",
                workspace_id=ws.id,
                actor=ACTOR,
                conversation_id=uuid.uuid4(),
                data={"n": n, "body": f"hola número {n}"},
            )
        ids.append(event.id)
    return ids


async def sealed_log(db: Database, count: int = 5) -> Workspace:
    """A workspace with ``count`` sealed events."""
    ws = await make_workspace(db)
    await record_events(db, ws, count)
    await audit.seal_pending(db)
    return ws


async def execute(db: Database, sql: str, **params: Any) -> None:
    """Tamper with the rows behind the application's back."""
    async with db.engine.begin() as conn:
        await conn.execute(text(sql), params)


async def event_id_at(db: Database, ws: Workspace, seq: int) -> int:
    async with db.transaction() as session:
        event_id = await session.scalar(
            select(Event.id).where(Event.workspace_id == ws.id, Event.seq == seq)
        )
    assert event_id is not None
    return event_id


def test_events_are_recorded_unsealed_and_sealed_after_commit(db_url: str) -> None:
    async def scenario(db: Database) -> None:
        ws = await make_workspace(db)
        await record_events(db, ws, 3)
        async with db.transaction() as session:
            seqs = (await session.scalars(select(Event.seq).order_by(Event.id))).all()
        assert seqs == [None, None, None]

        assert await audit.seal_pending(db) == 3
        assert await audit.seal_pending(db) == 0
        async with db.transaction() as session:
            rows = (await session.scalars(select(Event).order_by(Event.id))).all()
            checkpoints = (await session.scalars(select(AuditCheckpoint))).all()
        assert [e.seq for e in rows] == [1, 2, 3]
        assert all(e.digest == audit.event_digest(e) for e in rows)
        assert [c.seq for c in checkpoints] == [3]
        assert checkpoints[0].chain == rows[-1].chain

    run_with_db(db_url, scenario)


def test_sealing_in_small_batches_continues_the_chain(db_url: str) -> None:
    async def scenario(db: Database) -> None:
        ws = await make_workspace(db)
        await record_events(db, ws, 7)
        assert await audit.seal_pending(db, batch_size=3) == 7
        await record_events(db, ws, 2, start=7)
        assert await audit.seal_pending(db, batch_size=3) == 2
        async with db.transaction() as session:
            checkpoint_seqs = (
                await session.scalars(select(AuditCheckpoint.seq).order_by(AuditCheckpoint.seq))
            ).all()
        assert checkpoint_seqs == [3, 6, 7, 9]
        report = await audit.verify(db, workspace_slug=ws.slug)
        assert report.ok, report.problems
        assert report.checked == 9

    run_with_db(db_url, scenario)


def test_untouched_log_verifies(db_url: str) -> None:
    async def scenario(db: Database) -> None:
        ws = await make_workspace(db)
        await record_events(db, ws, 5)
        # verify seals what is pending first.
        report = await audit.verify(db, workspace_slug=ws.slug)
        assert report.ok, report.problems
        assert report.checked == 5
        assert report.problems == []

    run_with_db(db_url, scenario)


def test_empty_log_verifies(db_url: str) -> None:
    async def scenario(db: Database) -> None:
        ws = await make_workspace(db)
        report = await audit.verify(db, workspace_slug=ws.slug)
        assert report.ok, report.problems
        assert report.checked == 0

    run_with_db(db_url, scenario)


def test_unknown_workspace_fails_verification(db_url: str) -> None:
    async def scenario(db: Database) -> None:
        report = await audit.verify(db, workspace_slug="no-such-workspace")
        assert not report.ok
        assert report.problems == ["unknown workspace"]

    run_with_db(db_url, scenario)


def test_workspaces_are_chained_separately(db_url: str) -> None:
    async def scenario(db: Database) -> None:
        first, second = await make_workspace(db), await make_workspace(db)
        await record_events(db, first, 2)
        await record_events(db, second, 3)
        await record_events(db, first, 1, start=2)
        assert await audit.seal_pending(db) == 6
        async with db.transaction() as session:
            seqs = (
                await session.scalars(
                    select(Event.seq).where(Event.workspace_id == first.id).order_by(Event.seq)
                )
            ).all()
        assert seqs == [1, 2, 3]
        tampered = await event_id_at(db, second, 2)
        await execute(db, "UPDATE events SET actor_id = 'mallory' WHERE id = :id", id=tampered)
        assert (await audit.verify(db, workspace_slug=first.slug)).ok
        assert not (await audit.verify(db, workspace_slug=second.slug)).ok

    run_with_db(db_url, scenario)


def test_edited_event_fails_verification(db_url: str) -> None:
    async def scenario(db: Database) -> None:
        ws = await sealed_log(db)
        event_id = await event_id_at(db, ws, 3)
        # A literal, not a parameter: both SQLite and PostgreSQL's jsonb accept it as is.
        await execute(db, "UPDATE events SET data = '{\"n\": 99}' WHERE id = :id", id=event_id)
        report = await audit.verify(db, workspace_slug=ws.slug)
        assert not report.ok
        assert any("seq 3" in p and "digest" in p for p in report.problems), report.problems

    run_with_db(db_url, scenario)


def test_edited_event_with_recomputed_digest_fails_verification(db_url: str) -> None:
    async def scenario(db: Database) -> None:
        ws = await sealed_log(db)
        event_id = await event_id_at(db, ws, 2)
        await execute(db, "UPDATE events SET actor_id = 'mallory' WHERE id = :id", id=event_id)
        async with db.transaction() as session:
            event = await session.get_one(Event, event_id)
            forged = audit.event_digest(event)
        await execute(db, "UPDATE events SET digest = :d WHERE id = :id", d=forged, id=event_id)
        report = await audit.verify(db, workspace_slug=ws.slug)
        assert not report.ok
        assert any("seq 2" in p and "chain" in p for p in report.problems), report.problems

    run_with_db(db_url, scenario)


def test_deleted_event_fails_verification(db_url: str) -> None:
    async def scenario(db: Database) -> None:
        ws = await sealed_log(db)
        await execute(db, "DELETE FROM events WHERE id = :id", id=await event_id_at(db, ws, 3))
        report = await audit.verify(db, workspace_slug=ws.slug)
        assert not report.ok
        assert any("missing" in p for p in report.problems), report.problems

    run_with_db(db_url, scenario)


def test_deleted_newest_event_fails_verification(db_url: str) -> None:
    async def scenario(db: Database) -> None:
        ws = await sealed_log(db)
        await execute(db, "DELETE FROM events WHERE id = :id", id=await event_id_at(db, ws, 5))
        report = await audit.verify(db, workspace_slug=ws.slug)
        assert not report.ok
        assert report.checked == 4
        assert any("latest signed checkpoint is seq 5" in p for p in report.problems)

    run_with_db(db_url, scenario)


def test_forged_checkpoint_fails_verification(db_url: str) -> None:
    async def scenario(db: Database) -> None:
        ws = await sealed_log(db)
        # Hide the deletion of the newest event behind a new head with a made-up signature.
        await execute(db, "DELETE FROM events WHERE id = :id", id=await event_id_at(db, ws, 5))
        async with db.transaction() as session:
            chain = await session.scalar(
                select(Event.chain).where(Event.workspace_id == ws.id, Event.seq == 4)
            )
            assert chain is not None
            session.add(
                AuditCheckpoint(workspace_id=ws.id, seq=4, chain=chain, signature="AAAA" * 22)
            )
        report = await audit.verify(db, workspace_slug=ws.slug)
        assert not report.ok
        assert any("invalid signature" in p for p in report.problems), report.problems
        assert any("latest signed checkpoint is seq 5" in p for p in report.problems)

    run_with_db(db_url, scenario)


def test_reordered_events_fail_verification(db_url: str) -> None:
    async def scenario(db: Database) -> None:
        ws = await sealed_log(db)
        second, fourth = await event_id_at(db, ws, 2), await event_id_at(db, ws, 4)
        # Three steps: the unique (workspace_id, seq) index forbids a direct swap.
        await execute(db, "UPDATE events SET seq = -1 WHERE id = :id", id=second)
        await execute(db, "UPDATE events SET seq = 2 WHERE id = :id", id=fourth)
        await execute(db, "UPDATE events SET seq = 4 WHERE id = :id", id=second)
        report = await audit.verify(db, workspace_slug=ws.slug)
        assert not report.ok
        assert any("chain does not link" in p for p in report.problems), report.problems

    run_with_db(db_url, scenario)


def test_redacted_event_still_verifies(db_url: str) -> None:
    async def scenario(db: Database) -> None:
        ws = await sealed_log(db)
        target = await event_id_at(db, ws, 2)
        async with db.transaction() as session:
            before = await session.get_one(Event, target)
            digest, chain = before.digest, before.chain
        async with db.transaction() as session:
            marker = await audit.redact_events(
                session, workspace_id=ws.id, event_ids=[target], actor=ACTOR
            )
        assert marker.type == "audit.redacted"
        assert marker.data == {"event_ids": [target]}

        report = await audit.verify(db, workspace_slug=ws.slug)
        assert report.ok, report.problems
        assert report.checked == 6
        async with db.transaction() as session:
            after = await session.get_one(Event, target)
        assert after.data == {}
        assert after.redacted
        assert (after.digest, after.chain) == (digest, chain)

    run_with_db(db_url, scenario)


def test_redaction_ignores_events_of_other_workspaces(db_url: str) -> None:
    async def scenario(db: Database) -> None:
        ws, other = await sealed_log(db, 2), await sealed_log(db, 2)
        foreign = await event_id_at(db, other, 1)
        async with db.transaction() as session:
            marker = await audit.redact_events(
                session, workspace_id=ws.id, event_ids=[foreign], actor=ACTOR
            )
        assert marker.data == {"event_ids": []}
        async with db.transaction() as session:
            untouched = await session.get_one(Event, foreign)
        assert not untouched.redacted
        assert untouched.data["n"] == 0

    run_with_db(db_url, scenario)


def test_unlisted_redaction_fails_verification(db_url: str) -> None:
    async def scenario(db: Database) -> None:
        ws = await sealed_log(db)
        target = await event_id_at(db, ws, 3)
        await execute(
            db, "UPDATE events SET data = '{}', redacted = :r WHERE id = :id", r=True, id=target
        )
        report = await audit.verify(db, workspace_slug=ws.slug)
        assert not report.ok
        assert any("redacted without" in p for p in report.problems), report.problems

    run_with_db(db_url, scenario)


def test_concurrent_sealers_never_duplicate_a_seq(db_url: str) -> None:
    async def scenario(db: Database) -> None:
        ws = await make_workspace(db)
        await record_events(db, ws, 60)
        other = Database(db.url, pool_size=2)
        try:
            results = await asyncio.gather(
                audit.seal_pending(db, batch_size=7),
                audit.seal_pending(other, batch_size=7),
                audit.seal_pending(db, batch_size=5),
            )
        finally:
            await other.dispose()
        assert sum(results) == 60
        async with db.transaction() as session:
            seqs = (
                await session.scalars(
                    select(Event.seq).where(Event.workspace_id == ws.id).order_by(Event.seq)
                )
            ).all()
            unsealed = await session.scalar(
                select(func.count()).select_from(Event).where(Event.seq.is_(None))
            )
        assert seqs == list(range(1, 61))
        assert unsealed == 0
        report = await audit.verify(db, workspace_slug=ws.slug)
        assert report.ok, report.problems

    run_with_db(db_url, scenario)


def test_sealer_seals_when_woken_by_committed_events(db_url: str) -> None:
    async def scenario(db: Database) -> None:
        ws = await make_workspace(db)
        # A long interval: only the wake-up can explain a prompt seal.
        sealer = audit.Sealer(db, interval_seconds=60)
        task = asyncio.create_task(sealer.run())
        events.add_listener(audit.wake_on_events)
        try:
            await asyncio.sleep(0.1)
            await record_events(db, ws, 3)
            for _ in range(100):
                async with db.transaction() as session:
                    unsealed = await session.scalar(
                        select(func.count()).select_from(Event).where(Event.seq.is_(None))
                    )
                if unsealed == 0:
                    break
                await asyncio.sleep(0.05)
            assert unsealed == 0
        finally:
            events.remove_listener(audit.wake_on_events)
            await sealer.stop()
        await asyncio.wait_for(task, 5)

    run_with_db(db_url, scenario)


def test_sealer_survives_a_failing_round(
    db_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0
    real_seal = audit_service.seal_pending

    async def flaky(db: Database, *, batch_size: int = 500) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database went away")
        return await real_seal(db, batch_size=batch_size)

    monkeypatch.setattr(audit_service, "seal_pending", flaky)

    async def scenario(db: Database) -> None:
        ws = await make_workspace(db)
        await record_events(db, ws, 2)
        sealer = audit.Sealer(db, interval_seconds=0.05)
        task = asyncio.create_task(sealer.run())
        try:
            for _ in range(100):
                if calls >= 3:
                    break
                await asyncio.sleep(0.05)
        finally:
            await sealer.stop()
        await asyncio.wait_for(task, 5)
        report = await audit.verify(db, workspace_slug=ws.slug)
        assert report.ok, report.problems

    run_with_db(db_url, scenario)
    assert calls >= 3
    assert "sealing the event log failed" in caplog.text
