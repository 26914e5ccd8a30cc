"""Page loads of the agent workspace, against a static page of the same size from the same server.

    python -m bench.bench_ui                       # SQLite, the demo data set
    python -m bench.bench_ui --backend postgres    # on a fresh PostgreSQL database
    python -m bench.bench_ui --requests 500 --json bench/results/ui.json

The demo data set (``hilo demo``) is loaded into a fresh database and the story's
conversation (Marta's breakdown) grows to 500 messages. One ``hilo`` server process serves
both the workspace and, as the baseline, the very bytes of each page as a static file
(``/bench-static/``, Starlette's ``StaticFiles`` mounted on the same application): the ratio
says what rendering a page costs over sending one of the same size. Requests are sequential
on one keep-alive connection, signed in as the demo's admin, after a warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.datasets import pg_run
from bench.ingest import latency_summary
from bench.server import free_port

CONVERSATION_MESSAGES = 500
PG_ADMIN_URL = os.environ.get(
    "HILO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


# -- the data set --------------------------------------------------------------------------


async def _load(db_url: str) -> tuple[str, str, str]:
    """The demo data set, with the story's conversation grown to 500 messages.

    Returns the admin's e-mail, the password and the conversation's id.
    """
    from sqlalchemy import func, select

    from hilo import events
    from hilo.db import Database
    from hilo.demo.service import STORY_NAME, generate
    from hilo.events import Actor
    from hilo.models import Contact, Conversation, Message

    db = Database(db_url, pool_size=1)
    try:
        result = await generate(db, seed=42, reset=False)
        async with db.transaction() as session:
            conversation = (
                await session.scalars(
                    select(Conversation)
                    .join(Contact, Contact.id == Conversation.contact_id)
                    .where(Contact.name == STORY_NAME)
                    .order_by(Conversation.last_activity_at.desc())
                )
            ).first()
            assert conversation is not None, "the demo's story is missing"
            count = await session.scalar(
                select(func.count()).where(Message.conversation_id == conversation.id)
            )
            start = conversation.last_activity_at
            for index in range(CONVERSATION_MESSAGES - int(count or 0)):
                at = start + timedelta(minutes=index + 1)
                inbound = index % 2 == 0
                message = Message(
                    workspace_id=conversation.workspace_id,
                    conversation_id=conversation.id,
                    contact_id=conversation.contact_id,
                    channel_id=conversation.last_channel_id,
                    kind="inbound" if inbound else "outbound",
                    sender_type="contact" if inbound else "user",
                    status="received" if inbound else "delivered",
                    text=(
                        f"Mensaje {index}: sigo con la reserva R-48213, ¿me confirmáis la "
                        "hora de recogida en Málaga Aeropuerto y el depósito de la fianza?"
                        if inbound
                        else f"Respuesta {index}: confirmado, le esperamos en el mostrador 3 "
                        "a las 10:00; la fianza se desbloquea al devolver el coche."
                    ),
                    attachments=[],
                    data={},
                    created_at=at,
                    updated_at=at,
                )
                session.add(message)
                await session.flush()
                row = events.record(
                    session,
                    "message.received" if inbound else "message.queued",
                    workspace_id=conversation.workspace_id,
                    actor=Actor.contact(conversation.contact_id) if inbound else Actor("user"),
                    channel_id=conversation.last_channel_id,
                    conversation_id=conversation.id,
                    contact_id=conversation.contact_id,
                    message_id=message.id,
                    data={"channel_type": "api"},
                )
                row.created_at = at
            conversation.last_activity_at = start + timedelta(minutes=CONVERSATION_MESSAGES)
        return result.admin.email, result.password, str(conversation.id)
    finally:
        await db.dispose()


def _postgres_database() -> str:
    name = f"hilo_bench_ui_{uuid.uuid4().hex[:10]}"
    pg_run(PG_ADMIN_URL, f'CREATE DATABASE "{name}"')
    return PG_ADMIN_URL.rpartition("/")[0] + f"/{name}"


def _drop_postgres_database(url: str) -> None:
    pg_run(PG_ADMIN_URL, f'DROP DATABASE IF EXISTS "{url.rpartition("/")[2]}" WITH (FORCE)')


# -- the server ----------------------------------------------------------------------------


def serve(port: int, static_dir: Path) -> None:
    """The application as ``hilo serve`` builds it, plus the baseline's static files."""
    import uvicorn
    from fastapi.staticfiles import StaticFiles

    from hilo.app import create_app

    app = create_app()
    app.mount("/bench-static", StaticFiles(directory=static_dir), name="bench-static")
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def _start(env: dict[str, str], port: int, static_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.bench_ui", "serve", "--port", str(port), str(static_dir)],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("the server did not start")


# -- measuring -----------------------------------------------------------------------------


def _sign_in(client: httpx.Client, email: str, password: str) -> None:
    form = client.get("/login").text
    token = form.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    response = client.post(
        "/login", data={"csrf_token": token, "email": email, "password": password}
    )
    if response.status_code != 303:
        raise RuntimeError(f"sign-in failed: {response.status_code}")


def _time(client: httpx.Client, path: str, requests: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        client.get(path).raise_for_status()
    timings = []
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(path)
        response.read()
        timings.append(time.perf_counter() - started)
        response.raise_for_status()
    return timings


def run(backend: str, requests: int, warmup: int) -> dict[str, Any]:
    """Load the data, start the server, measure; the results."""
    with tempfile.TemporaryDirectory(prefix="hilo-bench-ui-") as tmp:
        work = Path(tmp)
        db_url = _postgres_database() if backend == "postgres" else f"sqlite:///{work / 'hilo.db'}"
        port = free_port()
        env = {
            **os.environ,
            "HILO_DATABASE_URL": db_url,
            "HILO_DATA_DIR": str(work),
            "HILO_SECRET_KEY": os.environ.get("HILO_SECRET_KEY") or secrets.token_urlsafe(32),
            "HILO_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "HILO_LOG_LEVEL": "WARNING",
        }
        os.environ.update(
            {k: env[k] for k in ("HILO_DATABASE_URL", "HILO_DATA_DIR", "HILO_SECRET_KEY")}
        )
        proc = None
        try:
            from hilo.migrate import upgrade

            upgrade(db_url)
            email, password, conversation_id = asyncio.run(_load(db_url))
            static = work / "static"
            static.mkdir()
            proc = _start(env, port, static, work / "server.log")
            pages = {
                "inbox": "/app/inbox",
                "conversation_500": f"/app/conversations/{conversation_id}?status=any",
                # What every live event of the conversation makes each agent viewing it fetch.
                "timeline_500": f"/app/conversations/{conversation_id}/timeline",
            }
            results: dict[str, Any] = {"backend": backend, "requests": requests, "pages": {}}
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                _sign_in(client, email, password)
                for name, path in pages.items():
                    body = client.get(path).content
                    (static / f"{name}.html").write_bytes(body)
                    page = _time(client, path, requests, warmup)
                    baseline = _time(client, f"/bench-static/{name}.html", requests, warmup)
                    page_summary, static_summary = latency_summary(page), latency_summary(baseline)
                    results["pages"][name] = {
                        "path": path.split("?")[0],
                        "bytes": len(body),
                        "page": page_summary,
                        "static": static_summary,
                        "ratio_p50": round(page_summary["p50_ms"] / static_summary["p50_ms"], 1),
                    }
            return results
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
            if backend == "postgres":
                _drop_postgres_database(db_url)


def report(results: dict[str, Any]) -> str:
    """A Markdown table of the results."""
    lines = [
        f"Agent workspace page loads ({results['backend']}, {results['requests']} sequential "
        "requests each; static = the same bytes as a file from the same server)",
        "",
        "| page | size | page p50 | page p99 | static p50 | static p99 | page / static (p50) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in results["pages"].items():
        lines.append(
            f"| {name} | {row['bytes'] / 1024:.0f} KiB | {row['page']['p50_ms']} ms "
            f"| {row['page']['p99_ms']} ms | {row['static']['p50_ms']} ms "
            f"| {row['static']['p99_ms']} ms | {row['ratio_p50']}× |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_ui", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    serve_cmd = sub.add_parser("serve", help="(internal) the server process")
    serve_cmd.add_argument("--port", type=int, required=True)
    serve_cmd.add_argument("static_dir", type=Path)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.port, args.static_dir)
        return 0
    results = run(args.backend, args.requests, args.warmup)
    print(report(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
