"""The benchmark's correctness checks, on SQLite and PostgreSQL, at a tiny size (not timed).

The suite (``python -m bench run --quick``) must never report a figure for a run that lost
or duplicated messages. This runs the same code on a small generated workspace: signed
WhatsApp and Twilio webhooks with redeliveries, both baselines, the agent reads under
background ingest and the SQL baseline, then the ledger check. Nothing here looks at a clock.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx
import pytest
from bench.datagen import generate
from bench.datasets import Dataset
from bench.reads import READS
from bench.run import Options, run_all
from bench.sizes import Size, parse_size

from bench import report
from tests.conftest import PG_URL, Server, require_postgres


def options(backend: str, tmp_path: Path) -> Options:
    return Options(
        mode="test",
        backends=[backend],
        size=parse_size("6k"),
        seed=7,
        data_dir=tmp_path / "bench-data",
        pg_url=PG_URL,
        out_dir=tmp_path / "results",
        ingest_requests=300,
        warmup_requests=20,
        read_seconds=1.5,
        background_rate=10.0,
        concurrency=16,
        readers=2,
    )


@pytest.mark.timeout(240)
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_quick_benchmark_loses_and_duplicates_no_message(backend: str, tmp_path: Path) -> None:
    if backend == "postgres":
        require_postgres()
    chosen = options(backend, tmp_path)
    kept = Dataset(backend, chosen.size, chosen.seed, chosen.data_dir, chosen.pg_url)
    try:
        document = run_all(chosen, "test", log=lambda _line: None)
    finally:
        kept.drop()
    result = document["backends"][backend]
    verification = result["verification"]
    ingest = result["ingest"]
    # Every acknowledged delivery is one message: none lost, none twice, none refused.
    assert verification["ok"], verification
    assert (verification["lost"], verification["duplicated"]) == (0, 0)
    assert verification["non_2xx_by_status"] == {}
    assert verification["acknowledged_ids"] == verification["stored_messages"]
    # Redeliveries were really sent, and collapsed into the messages already stored.
    assert ingest["hilo"]["redeliveries"] > 0
    assert ingest["hilo"]["unique_messages"] < ingest["hilo"]["requests"]
    # Each message showed on the live stream, and both baselines answered every request.
    assert ingest["hilo"]["visible_seen"] == ingest["hilo"]["unique_messages"]
    assert ingest["parse"]["non_2xx"] == ingest["store"]["non_2xx"] == 0
    # Every kind of agent read answered 200 through the API, and ran on the database.
    for label in READS:
        assert result["reads"]["api"][label]["errors"] == 0, label
        assert result["reads"]["api"][label]["count"] > 0, label
        assert result["reads"]["database"][label]["count"] > 0, label
    # The durability the figures were measured under is on the record.
    if backend == "sqlite":
        assert result["durability"] == {"journal_mode": "WAL", "synchronous": "FULL"}
    else:
        assert result["durability"]["synchronous_commit"] == "on"
    written = report.write(document, tmp_path / "results")
    assert {p.name for p in written} >= {"test.json", "test.md", "test-plans.md"}
    assert json.loads((tmp_path / "results" / "test.json").read_text())["mode"] == "test"


def test_data_set_resumes_where_it_stopped_and_matches_one_run(tmp_path: Path) -> None:
    size = Size("resume-test", 4_500, 9_000)  # three chunks of contacts
    whole, resumed = tmp_path / "whole.db", tmp_path / "resumed.db"
    generate(f"sqlite:///{whole}", size, 3, progress=lambda _line: None)
    interrupted = generate(f"sqlite:///{resumed}", size, 3, progress=lambda _l: None, stop_after=1)
    assert interrupted.messages < size.messages
    finished = generate(f"sqlite:///{resumed}", size, 3, progress=lambda _line: None)
    assert finished.resumed_from == 1

    def rows(path: Path) -> list[tuple[object, ...]]:
        with sqlite3.connect(path) as conn:
            return conn.execute(
                "SELECT id, conversation_id, contact_id, text, created_at FROM messages ORDER BY id"
            ).fetchall()

    assert rows(whole) == rows(resumed)
    assert len(rows(whole)) == size.messages


def test_baseline_endpoints_exist_only_when_the_benchmark_turns_them_on(server: Server) -> None:
    response = httpx.post(
        f"{server.base_url}/bench/parse/whatsapp/00000000-0000-0000-0000-000000000000",
        content=b"{}",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 404
