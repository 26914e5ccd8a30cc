"""Live updates over WebSocket and Server-Sent Events, through a real server, on both databases."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from hilo.realtime.service import issue_ticket, verify_ticket
from tests.conftest import (
    Api,
    Server,
    create_pg_database,
    create_workspace_token,
    dispose_server,
    drop_pg_database,
    free_port,
    make_server,
    wait_for,
)
from tests.core.test_api_channel import create_channel, message, message_visible
from tests.helpers import post_api_message

TIMEOUT = 15.0


def new_ticket(api: httpx.Client) -> str:
    response = api.post("/api/v1/stream/tickets")
    assert response.status_code == 200, response.text
    ticket: str = response.json()["ticket"]
    return ticket


def ws_connect(base_url: str, ticket: str, **params: Any) -> ClientConnection:
    query = httpx.QueryParams({"ticket": ticket, **params})
    url = str(base_url).replace("http://", "ws://", 1) + f"/api/v1/stream?{query}"
    return connect(url, open_timeout=TIMEOUT, close_timeout=2)


def recv_until(
    ws: ClientConnection, match: Callable[[dict[str, Any]], bool], seen: list[dict[str, Any]]
) -> dict[str, Any]:
    """Frames until one matches (all of them go to ``seen``); fails after TIMEOUT."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no matching frame in {TIMEOUT}s; saw {seen!r}")
        try:
            frame = json.loads(ws.recv(timeout=remaining))
        except TimeoutError as exc:
            raise AssertionError(f"no matching frame in {TIMEOUT}s; saw {seen!r}") from exc
        seen.append(frame)
        if match(frame):
            return frame


def received(message_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["type"] == "message.received" and e["message_id"] == message_id


def close_code(ws: ClientConnection) -> int | None:
    """The close code the server ends the connection with."""
    with pytest.raises(ConnectionClosed) as info:
        ws.recv(timeout=TIMEOUT)
    return info.value.rcvd.code if info.value.rcvd else None


class SSE:
    """Reads an event stream: parsed events and comments, each read bounded by a timeout."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.iter_lines()
        self.comments: list[str] = []

    def next(self, deadline: float | None = None) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        for line in self.lines:
            if deadline is not None and time.monotonic() > deadline:
                raise AssertionError(f"no matching event in {TIMEOUT}s")
            if line == "":
                if "data" in fields:
                    return fields
                continue
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
                continue
            name, _sep, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value
        raise AssertionError("the event stream ended")

    def until(self, match: Callable[[dict[str, Any]], bool], seen: list[dict[str, Any]]) -> Any:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            event = self.next(deadline)
            data = json.loads(event["data"])
            assert event["id"] == str(data["id"])
            assert event["event"] == data["type"]
            seen.append(data)
            if match(data):
                return data
        raise AssertionError(f"no matching event in {TIMEOUT}s; saw {seen!r}")

    def wait_open(self) -> None:
        """Read up to the opening comment: from then on the server is subscribed."""
        for line in self.lines:
            if line == ": open":
                return
        raise AssertionError("the event stream ended before opening")


def sse_stream(
    client: httpx.Client,
    params: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    timeout = httpx.Timeout(TIMEOUT, read=TIMEOUT + 5)
    return client.stream(
        "GET", "/api/v1/stream/sse", params=params, headers=headers, timeout=timeout
    )


def post(api: Api, channel: dict[str, Any], sender: str, text: str) -> str:
    response = post_api_message(api, channel["id"], channel["secret"], message(sender, text))
    assert response.status_code == 200, response.text
    message_id: str = response.json()["message_id"]
    return message_id


def workspace_of(api: Api) -> str:
    return str(verify_ticket(new_ticket(api)).workspace_id)


def other_workspace(api: Api) -> Api:
    token = create_workspace_token(api.server.db_url, f"ws-{uuid.uuid4().hex[:10]}")
    other = Api(base_url=api.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=15)
    other.server = api.server
    return other


def test_ticket_needs_a_bearer_token_and_lasts_a_minute(api: Api) -> None:
    refused = httpx.post(f"{api.base_url}/api/v1/stream/tickets")
    assert refused.status_code == 401
    response = api.post("/api/v1/stream/tickets")
    assert response.status_code == 200, response.text
    expires_at = datetime.fromisoformat(response.json()["expires_at"])
    assert expires_at.tzinfo is not None
    left = (expires_at - datetime.now(UTC)).total_seconds()
    assert 50 < left <= 61


def test_websocket_receives_new_message_live(api: Api) -> None:
    channel = create_channel(api)
    with ws_connect(api.base_url, new_ticket(api)) as ws:
        message_id = post(api, channel, "u-live", "¿Tenéis talla 42?")
        seen: list[dict[str, Any]] = []
        frame = recv_until(ws, received(message_id), seen)
    workspace_id = workspace_of(api)
    assert frame["workspace_id"] == workspace_id
    assert frame["channel_id"] == channel["id"]
    assert frame["actor"]["type"] == "contact"
    assert datetime.fromisoformat(frame["created_at"]).tzinfo is not None
    assert all(f["workspace_id"] == workspace_id for f in seen)
    ids = [f["id"] for f in seen]
    assert len(ids) == len(set(ids))


def test_websocket_resumes_after_last_event_id(api: Api) -> None:
    channel = create_channel(api)
    first = post(api, channel, "u-ws", "uno")
    second = post(api, channel, "u-ws", "dos")
    with ws_connect(api.base_url, new_ticket(api), last_event_id=0) as ws:
        seen: list[dict[str, Any]] = []
        mark = recv_until(ws, received(first), seen)
        recv_until(ws, received(second), seen)
    assert [f["id"] for f in seen] == sorted(f["id"] for f in seen)
    assert seen[0]["type"] == "workspace.created"
    with ws_connect(api.base_url, new_ticket(api), last_event_id=mark["id"]) as ws:
        again: list[dict[str, Any]] = []
        recv_until(ws, received(second), again)
    assert all(f["id"] > mark["id"] for f in again)
    assert [f["id"] for f in again] == sorted(f["id"] for f in again)


def test_sse_receives_live_events_with_bearer_or_ticket(api: Api) -> None:
    channel = create_channel(api)
    with sse_stream(api) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = SSE(response)
        stream.wait_open()
        message_id = post(api, channel, "u-sse", "hola")
        event = stream.until(received(message_id), [])
    assert event["channel_id"] == channel["id"]
    anonymous = httpx.Client(base_url=api.base_url)
    with sse_stream(anonymous, params={"ticket": new_ticket(api)}) as response:
        assert response.status_code == 200
        stream = SSE(response)
        stream.wait_open()
        message_id = post(api, channel, "u-sse", "otra vez")
        stream.until(received(message_id), [])
    anonymous.close()


def test_sse_resumes_from_last_event_id(api: Api) -> None:
    channel = create_channel(api)
    seen: list[dict[str, Any]] = []
    with sse_stream(api) as response:
        stream = SSE(response)
        stream.wait_open()
        first = post(api, channel, "u-resume", "primero")
        mark = stream.until(received(first), seen)
    # Sent while nobody listens: only the replay can bring it.
    second = post(api, channel, "u-resume", "segundo")
    wait_for(lambda: message_visible(api, second), message="second message stored")
    later: list[dict[str, Any]] = []
    with sse_stream(api, headers={"Last-Event-ID": str(mark["id"])}) as response:
        assert response.status_code == 200
        SSE(response).until(received(second), later)
    assert later and all(e["id"] > mark["id"] for e in later)
    assert not {e["id"] for e in later} & {e["id"] for e in seen}
    # The query parameter works too (a fresh EventSource has no header to send).
    with sse_stream(api, params={"last_event_id": str(mark["id"])}) as response:
        replayed: list[dict[str, Any]] = []
        SSE(response).until(received(second), replayed)
    assert [e["id"] for e in replayed] == [e["id"] for e in later]


def test_stream_never_sends_other_workspaces_events(api: Api) -> None:
    other = other_workspace(api)
    try:
        mine = create_channel(api)
        theirs = create_channel(other)
        my_workspace, their_workspace = workspace_of(api), workspace_of(other)
        their_frames: list[dict[str, Any]] = []
        their_sse: list[dict[str, Any]] = []
        with (
            ws_connect(api.base_url, new_ticket(other)) as their_ws,
            ws_connect(api.base_url, new_ticket(api)) as my_ws,
            sse_stream(other) as response,
        ):
            stream = SSE(response)
            stream.wait_open()
            secret = post(api, mine, "u-a", "confidencial")
            recv_until(my_ws, received(secret), [])
            # Theirs comes after mine was fanned out: had mine leaked, it would be queued first.
            public = post(other, theirs, "u-b", "hola")
            recv_until(their_ws, received(public), their_frames)
            stream.until(received(public), their_sse)
        for item in their_frames + their_sse:
            assert item["workspace_id"] == their_workspace
            assert item["message_id"] != secret
        # Replay from the start of time is scoped to the workspace too.
        with ws_connect(api.base_url, new_ticket(other), last_event_id=0) as ws:
            replayed: list[dict[str, Any]] = []
            recv_until(ws, received(public), replayed)
        assert {f["workspace_id"] for f in replayed} == {their_workspace}
        assert my_workspace != their_workspace
    finally:
        other.close()


def test_invalid_ticket_is_refused(api: Api) -> None:
    ticket = new_ticket(api)
    version, body, signature = ticket.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["w"] = str(uuid.uuid4())
    forged_body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    for bad in ("", "garbage", f"{version}.{forged_body}.{signature}", ticket[:-2] + "00"):
        with ws_connect(api.base_url, bad) as ws:
            assert close_code(ws) == 4401
        response = httpx.get(
            f"{api.base_url}/api/v1/stream/sse", params={"ticket": bad}, timeout=TIMEOUT
        )
        assert response.status_code == 401
    no_auth = httpx.get(f"{api.base_url}/api/v1/stream/sse", timeout=TIMEOUT)
    assert no_auth.status_code == 401
    bad_token = httpx.get(
        f"{api.base_url}/api/v1/stream/sse",
        headers={"Authorization": "Bearer hilo_nope"},
        timeout=TIMEOUT,
    )
    assert bad_token.status_code == 401


def test_ticket_expires(api: Api) -> None:
    principal = verify_ticket(new_ticket(api))
    # Minted here with the server's key, as the server would have 61 s ago.
    expired, expires_at = issue_ticket(
        principal, issued_at=datetime.now(UTC) - timedelta(seconds=61)
    )
    assert expires_at < datetime.now(UTC)
    with ws_connect(api.base_url, expired) as ws:
        assert close_code(ws) == 4401
    response = httpx.get(
        f"{api.base_url}/api/v1/stream/sse", params={"ticket": expired}, timeout=TIMEOUT
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "expired_ticket"
    fresh, _expires = issue_ticket(principal, issued_at=datetime.now(UTC) - timedelta(seconds=50))
    channel = create_channel(api)
    with ws_connect(api.base_url, fresh) as ws:
        message_id = post(api, channel, "u-fresh", "aún vale")
        recv_until(ws, received(message_id), [])


def test_bad_last_event_id_is_refused(api: Api) -> None:
    with ws_connect(api.base_url, new_ticket(api), last_event_id="yesterday") as ws:
        assert close_code(ws) == 4422
    response = api.get("/api/v1/stream/sse", headers={"Last-Event-ID": "-3"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_payload"


def test_sse_sends_keep_alive_comments(api: Api) -> None:
    with sse_stream(api) as response:
        stream = SSE(response)
        stream.wait_open()
        started = time.monotonic()
        for line in stream.lines:
            if line == ": keep-alive":
                break
        assert 10 < time.monotonic() - started < TIMEOUT + 5


# -- across processes (PostgreSQL LISTEN/NOTIFY, Redis pub/sub) -----------------------------


def second_server(api: Api, tmp_path: Path, extra_env: dict[str, str] | None = None) -> Server:
    """Another process on the same database as ``api``'s server."""
    port = free_port()
    env = {**api.server.env, "HILO_PUBLIC_URL": f"http://127.0.0.1:{port}", **(extra_env or {})}
    server = Server(
        backend="postgres", db_url=api.server.db_url, data_dir=tmp_path, port=port, env=env
    )
    server.start()
    return server


# Cross-process fan-out is PostgreSQL's: the embedded SQLite file has one process.
@pytest.mark.parametrize("server", ["postgres"], indirect=True)
def test_postgres_fans_out_to_other_processes(api: Api, tmp_path: Path) -> None:
    # Without workers, every event it streams was committed by the first process.
    other = second_server(api, tmp_path, {"HILO_RUN_WORKERS": "false"})
    try:
        channel = create_channel(api)
        with ws_connect(other.base_url, new_ticket(api)) as ws:
            message_id = post(api, channel, "u-pg", "desde otro proceso")
            frame = recv_until(ws, received(message_id), [])
            # An event too big for a NOTIFY travels by reference and is loaded from the database.
            reference = {"origin": "test", "workspace_id": frame["workspace_id"], "id": frame["id"]}
            notify(api.server.db_url, reference)
            again = recv_until(ws, lambda f: f["id"] == frame["id"], [])
            assert again["message_id"] == message_id
            assert again["type"] == "message.received"
    finally:
        other.stop()


def notify(db_url: str, payload: dict[str, Any]) -> None:
    import asyncpg

    async def go() -> None:
        conn = await asyncpg.connect(db_url)
        try:
            await conn.execute("SELECT pg_notify('hilo_events', $1)", json.dumps(payload))
        finally:
            await conn.close()

    asyncio.run(go())


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: redis_ping(port), message="redis-server up")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def redis_ping(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


# Two processes share a PostgreSQL database, never the embedded SQLite file.
@pytest.mark.parametrize("server", ["postgres"], indirect=True)
def test_redis_fans_out_to_other_processes(api: Api, tmp_path: Path, redis_url: str) -> None:
    env = {"HILO_BROKER": "redis", "HILO_REDIS_URL": redis_url}
    db_url = create_pg_database()
    from hilo.migrate import upgrade

    upgrade(db_url)
    servers: list[Server] = []
    try:
        for name in ("a", "b"):
            port = free_port()
            data_dir = tmp_path / name
            data_dir.mkdir()
            server_env = {
                **api.server.env,
                **env,
                "HILO_DATABASE_URL": db_url,
                "HILO_PUBLIC_URL": f"http://127.0.0.1:{port}",
                # Only the first process commits: what the second streams came through Redis.
                "HILO_RUN_WORKERS": "true" if name == "a" else "false",
            }
            server = Server("postgres", db_url, data_dir, port, server_env)
            server.start()
            servers.append(server)
        token = create_workspace_token(db_url, f"ws-{uuid.uuid4().hex[:10]}")
        client = Api(
            base_url=servers[0].base_url, headers={"Authorization": f"Bearer {token}"}, timeout=15
        )
        with client:
            channel = create_channel(client)
            with ws_connect(servers[1].base_url, new_ticket(client)) as ws:
                message_id = post(client, channel, "u-redis", "por redis")
                recv_until(ws, received(message_id), [])
    finally:
        for server in servers:
            server.stop()
        drop_pg_database(db_url)


@pytest.mark.parametrize("server", ["postgres"], indirect=True)  # LISTEN/NOTIFY
def test_listen_connection_reconnects_and_open_streams_resume(api: Api) -> None:
    with ws_connect(api.base_url, new_ticket(api)) as ws:
        run_sql(
            api.server.db_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'hilo-live' AND datname = current_database()",
        )
        # Events of other hosts may have passed meanwhile: the stream asks to be resumed.
        assert close_code(ws) == 1013
    channel = create_channel(api)
    message_id = post(api, channel, "u-back", "sigo aquí")
    wait_for(lambda: message_visible(api, message_id), message="message stored")
    with ws_connect(api.base_url, new_ticket(api), last_event_id=0) as ws:
        frame = recv_until(ws, received(message_id), [])
        # Listening again: a notification from another host reaches the stream.
        notify(api.server.db_url, {"origin": "x", "event": {**frame, "id": 10**12}})
        recv_until(ws, lambda f: f["id"] == 10**12, [])
    assert "reconnected" in api.server.logs() or "connection failed" in api.server.logs()


def run_sql(db_url: str, sql: str) -> None:
    import asyncpg

    async def go() -> None:
        conn = await asyncpg.connect(db_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(go())


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)  # the process, not the database
def test_open_streams_do_not_hold_up_shutdown(api: Api, tmp_path: Path) -> None:
    server = make_server("sqlite", tmp_path)
    server.start()
    try:
        token = create_workspace_token(server.db_url, "ws-shutdown")
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=server.base_url, headers=headers) as client:
            # A read timeout below the keep-alive interval: a stream left open fails the test.
            timeout = httpx.Timeout(5, read=10)
            with client.stream("GET", "/api/v1/stream/sse", timeout=timeout) as response:
                stream = SSE(response)
                stream.wait_open()
                assert server.proc is not None
                server.proc.terminate()
                # The server ends the stream instead of waiting for the client to leave.
                assert list(stream.lines)[-2:] == [": closed shutdown", ""]
            server.proc.wait(timeout=10)
    finally:
        server.kill()


def test_slow_subscriber_is_dropped_without_blocking_others(tmp_path: Path) -> None:
    from hilo.db import Database
    from hilo.realtime.broker import SLOW, Broker, StreamEvent
    from hilo.settings import Settings

    async def go() -> None:
        db = Database(f"sqlite:///{tmp_path / 'unused.db'}")
        broker = Broker(db, Settings(broker="memory", database_url=db.url), queue_size=3)
        await broker.start()
        try:
            workspace = str(uuid.uuid4())
            slow, fast = broker.subscribe(workspace), broker.subscribe(workspace)
            elsewhere = broker.subscribe(uuid.uuid4())
            for n in range(1, 6):
                broker.deliver([StreamEvent(n, "test.event", workspace, json.dumps({"id": n}))])
                got = await fast.get()
                assert got is not None and got.id == n
            assert slow.closed_reason == SLOW
            assert await slow.get() is None
            assert broker.subscriber_count(workspace) == 1
            assert elsewhere.queue.empty()
        finally:
            await broker.stop()
            await db.dispose()
        assert await fast.get() is None

    asyncio.run(go())


def test_messages_processed_by_a_worker_process_reach_the_api_processes_streams(
    tmp_path: Path,
) -> None:
    """The production layout: API processes without workers, and ``hilo worker`` processes.
    A customer's message is turned into a message by the worker, and the agent watching the
    API process sees it arrive live."""
    api_server = make_server("postgres", tmp_path, extra_env={"HILO_RUN_WORKERS": "false"})
    worker: subprocess.Popen[bytes] | None = None
    try:
        api_server.start()
        token = create_workspace_token(api_server.db_url, f"ws-{uuid.uuid4().hex[:8]}")
        api = Api(base_url=api_server.base_url, headers={"Authorization": f"Bearer {token}"})
        api.server = api_server
        env = {k: v for k, v in api_server.env.items() if k != "HILO_RUN_WORKERS"}
        log = (tmp_path / "worker.log").open("wb")
        worker = subprocess.Popen(
            [sys.executable, "-m", "hilo.cli", "worker"], env=env, stdout=log, stderr=log
        )
        channel = create_channel(api)
        with ws_connect(api.base_url, new_ticket(api)) as ws:
            message_id = post(api, channel, "u-worker", "procesado en otro proceso")
            frame = recv_until(ws, received(message_id), [])
            assert frame["type"] == "message.received"
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=15)
        dispose_server(api_server)
