"""Test harness: a real ``hilo serve`` process per database, driven over real HTTP.

Every storage test runs on SQLite and on PostgreSQL. PostgreSQL comes from
``HILO_TEST_POSTGRES_URL`` (default: the local service on 127.0.0.1:5432). Where none is
reachable the PostgreSQL cases are skipped and the run says so loudly, unless
``HILO_REQUIRE_POSTGRES=1`` (set by ``.ci/run``), which turns that into a failure.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HILO_SECRET_KEY", "test-secret-" + secrets.token_hex(8))

import httpx
import pytest

PG_URL = os.environ.get("HILO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRE_PG = os.environ.get("HILO_REQUIRE_POSTGRES") == "1"
_pg_skipped: list[str] = []


def _pg_available() -> str | None:
    import asyncpg

    async def probe() -> None:
        conn = await asyncpg.connect(PG_URL, timeout=3)
        await conn.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def create_pg_database() -> str:
    """A fresh PostgreSQL database; returns its URL."""
    import asyncpg

    name = f"hilo_test_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        conn = await asyncpg.connect(PG_URL)
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()

    asyncio.run(create())
    base, _sep, _db = PG_URL.rpartition("/")
    return f"{base}/{name}"


def drop_pg_database(url: str) -> None:
    """Drop a database made by :func:`create_pg_database`."""
    import asyncpg

    name = url.rpartition("/")[2]

    async def drop() -> None:
        conn = await asyncpg.connect(PG_URL)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()

    asyncio.run(drop())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running ``hilo serve`` process."""

    backend: str
    db_url: str
    data_dir: Path
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=Path)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, extra_env: dict[str, str] | None = None) -> None:
        env = {**self.env, **(extra_env or {})}
        self.log_path = self.data_dir / f"server-{int(time.time() * 1000)}.log"
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hilo.cli", "serve", "--port", str(self.port), "--no-migrate"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.base_url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def logs(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


def require_postgres() -> None:
    """Skip the test when PostgreSQL is not reachable (fail instead where it is required)."""
    reason = _pg_available()
    if reason is not None:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL is required but not reachable at {PG_URL}: {reason}")
        _pg_skipped.append(reason)
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {reason}")


def migrated_database(backend: str, tmp: Path, name: str = "hilo.db") -> str:
    """A fresh database at the latest migration: a file in ``tmp``, or a PostgreSQL database
    (drop it with :func:`drop_pg_database`); returns its URL."""
    from hilo.migrate import upgrade

    if backend == "postgres":
        require_postgres()
        db_url = create_pg_database()
    else:
        db_url = f"sqlite:///{tmp / name}"
    upgrade(db_url)
    return db_url


def make_server(backend: str, tmp: Path, *, extra_env: dict[str, str] | None = None) -> Server:
    """A migrated database and a server process configured for it (not started)."""
    db_url = migrated_database(backend, tmp)
    port = free_port()
    env = {
        **os.environ,
        "HILO_DATABASE_URL": db_url,
        "HILO_DATA_DIR": str(tmp),
        "HILO_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "HILO_LOG_LEVEL": "INFO",
        **(extra_env or {}),
    }
    return Server(backend=backend, db_url=db_url, data_dir=tmp, port=port, env=env)


def dispose_server(server: Server) -> None:
    server.stop()
    if server.backend == "postgres":
        drop_pg_database(server.db_url)


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One running Hilo per database backend, shared by the tests of that backend."""
    srv = make_server(request.param, tmp_path_factory.mktemp(request.param))
    srv.start()
    yield srv
    dispose_server(srv)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def create_workspace_token(db_url: str, slug: str, role: str = "admin") -> str:
    """A workspace and an API token for it, written straight to the database."""
    from hilo.auth import service
    from hilo.db import Database
    from hilo.events import Actor

    async def go() -> str:
        db = Database(db_url, pool_size=1)
        try:
            async with db.transaction() as session:
                ws = await service.do_get_or_create_workspace(session, slug)
                return await service.do_create_token(
                    session, workspace_id=ws.id, role=role, actor=Actor("test")
                )
        finally:
            await db.dispose()

    result: str = run(go())
    return result


class Api(httpx.Client):
    """An HTTP client signed in to one fresh workspace of a server."""

    slug: str
    server: Server


@pytest.fixture
def api(server: Server) -> Iterator[Api]:
    """A fresh workspace on the server, with an admin token."""
    slug = f"ws-{uuid.uuid4().hex[:10]}"
    token = create_workspace_token(server.db_url, slug)
    client = Api(base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=15)
    client.slug = slug
    client.server = server
    yield client
    client.close()


def wait_for(check: Callable[[], Any], *, timeout: float = 10.0, message: str = "") -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting: {message or check} (last: {last!r})")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _pg_skipped:
        line = "!" * 78
        terminalreporter.write_line(line, red=True, bold=True)
        terminalreporter.write_line(
            "POSTGRESQL WAS SKIPPED: every storage test ran on SQLite only.", red=True, bold=True
        )
        terminalreporter.write_line(f"reason: {_pg_skipped[0]}", red=True)
        terminalreporter.write_line(
            "Start PostgreSQL or set HILO_TEST_POSTGRES_URL; .ci/run never skips it.", red=True
        )
        terminalreporter.write_line(line, red=True, bold=True)
