"""Crash tests: real ``hilo serve`` processes killed with SIGKILL, on SQLite and PostgreSQL.

Each test builds its own server (it kills it, so it cannot share the session one) and runs it
with ``HILO_JOB_LEASE_SECONDS=2``: on PostgreSQL a job left ``running`` by the dead process is
taken again once its lease runs out; on SQLite it is requeued when the next process starts.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from hilo.channels.api import sign
from hilo.db import Database
from hilo.models import InboundEvent, Job
from tests.conftest import Server, create_workspace_token, dispose_server, make_server, wait_for
from tests.helpers import post_api_message

WORKERS = 4


@pytest.fixture(params=["sqlite", "postgres"])
def crash_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    """A server of its own (not started): the test starts, kills and restarts it."""
    server = make_server(
        request.param,
        tmp_path,
        extra_env={"HILO_JOB_LEASE_SECONDS": "2", "HILO_WORKER_CONCURRENCY": str(WORKERS)},
    )
    try:
        yield server
    finally:
        dispose_server(server)
        # Shown only when the test fails.
        for log in sorted(tmp_path.glob("server-*.log")):
            print(f"----- {log.name} -----\n{log.read_text()[-4000:]}")


def new_token(server: Server) -> str:
    """An admin token of a fresh workspace (it outlives restarts: it is in the database)."""
    return create_workspace_token(server.db_url, f"crash-{uuid.uuid4().hex[:10]}")


def api_client(server: Server, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=15
    )


def create_channel(client: httpx.Client, callback_url: str | None = None) -> dict[str, Any]:
    config = {"callback_url": callback_url} if callback_url else {}
    response = client.post(
        "/api/v1/channels", json={"type": "api", "name": "App", "config": config}
    )
    assert response.status_code == 201, response.text
    return response.json()


def inbound(sender_id: str, text: str) -> dict[str, Any]:
    return {"id": f"m-{uuid.uuid4().hex}", "from": {"id": sender_id}, "text": text}


def every(client: httpx.Client, path: str) -> list[dict[str, Any]]:
    """Every item of a paginated list."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 200}
        if cursor:
            params["cursor"] = cursor
        response = client.get(path, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if not cursor:
            return items


def messages_by_timelines(client: httpx.Client) -> list[dict[str, Any]]:
    """Every message, gathered over every contact's timeline."""
    found: list[dict[str, Any]] = []
    for contact in every(client, "/api/v1/contacts"):
        found.extend(every(client, f"/api/v1/contacts/{contact['id']}/timeline"))
    return found


def messages_by_conversations(client: httpx.Client) -> list[dict[str, Any]]:
    """Every message, gathered over every conversation."""
    found: list[dict[str, Any]] = []
    for conversation in every(client, "/api/v1/conversations"):
        found.extend(every(client, f"/api/v1/conversations/{conversation['id']}/messages"))
    return found


def db_count(db_url: str, query: Any) -> int:
    """A scalar count straight from the database (to know the queue is drained)."""

    async def go() -> int:
        db = Database(db_url, pool_size=1)
        try:
            async with db.transaction() as session:
                return int(await session.scalar(query) or 0)
        finally:
            await db.dispose()

    return int(asyncio.run(go()))


def test_acknowledged_webhooks_survive_sigkill_before_processing(crash_server: Server) -> None:
    """A 2xx means the delivery is stored: SIGKILL before any processing loses none of them.

    The server runs without workers, so it acknowledges but never processes. Distinct
    messages, provider retries of some of them, and forged deliveries arrive concurrently;
    then a second batch is cut off by SIGKILL half-way. After a normal restart every
    acknowledged delivery becomes exactly one message; a delivery cut off by the kill is
    retried by the provider, as it would be, and also ends up exactly once; forged
    deliveries never appear.
    """
    server = crash_server
    server.start({"HILO_RUN_WORKERS": "false"})
    token = new_token(server)
    client = api_client(server, token)  # post_api_message takes the address from it
    channel = create_channel(client)
    channel_id, secret = channel["id"], channel["secret"]

    def deliver(payload: dict[str, Any], key: str) -> tuple[str, httpx.Response | None]:
        try:
            return payload["id"], post_api_message(client, channel_id, key, payload)
        except httpx.HTTPError:
            return payload["id"], None

    genuine = [inbound(f"u-{i % 8}", f"mensaje {i}") for i in range(40)]
    retried = genuine[::4]
    forged = [inbound("u-forger", f"falso {i}") for i in range(5)]
    attempts = [(p, secret) for p in genuine + retried + retried]
    attempts += [(p, "not-the-secret") for p in forged]
    random.shuffle(attempts)
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda a: deliver(*a), attempts))

    acked: dict[str, str] = {}
    first_copies: Counter[str] = Counter()
    texts = {p["id"]: p["text"] for p in genuine}
    forged_ids = {p["id"] for p in forged}
    for provider_id, response in results:
        assert response is not None, f"delivery {provider_id} got no answer"
        if provider_id in forged_ids:
            assert response.status_code == 401, response.text
            continue
        assert response.status_code == 200, response.text
        body = response.json()
        assert acked.setdefault(provider_id, body["message_id"]) == body["message_id"]
        first_copies[provider_id] += not body["duplicate"]
    assert set(acked) == set(texts)
    assert all(first_copies[p] == 1 for p in acked), first_copies

    # A second batch, cut off by SIGKILL while deliveries are in flight.
    tail = [inbound(f"u-{i % 8}", f"tarde {i}") for i in range(24)]
    texts.update({p["id"]: p["text"] for p in tail})
    answered = threading.Semaphore(0)

    def deliver_tail(payload: dict[str, Any]) -> tuple[str, httpx.Response | None]:
        outcome = deliver(payload, secret)
        if outcome[1] is not None:
            answered.release()
        return outcome

    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(deliver_tail, p) for p in tail]
        for _ in range(3):
            assert answered.acquire(timeout=15)
        server.kill()
        tail_results = [f.result() for f in futures]
    client.close()
    unanswered = []
    for provider_id, response in tail_results:
        if response is None:
            unanswered.append(provider_id)
            continue
        assert response.status_code == 200, response.text
        acked[provider_id] = response.json()["message_id"]

    server.start()
    with api_client(server, token) as client:
        # The provider retries what was never acknowledged; some may have been stored.
        stored_before_kill = 0
        for provider_id in unanswered:
            payload = next(p for p in tail if p["id"] == provider_id)
            response = post_api_message(client, channel_id, secret, payload)
            assert response.status_code == 200, response.text
            acked[provider_id] = response.json()["message_id"]
            stored_before_kill += response.json()["duplicate"]
        print(
            f"tail: {len(tail) - len(unanswered)} acknowledged before the kill, "
            f"{len(unanswered)} cut off, of which {stored_before_kill} had been stored"
        )

        expected_ids = set(acked.values())
        wait_for(
            lambda: expected_ids <= {m["id"] for m in messages_by_timelines(client)},
            timeout=30,
            message="every acknowledged message processed after the restart",
        )
        wait_for(
            lambda: (
                db_count(
                    server.db_url,
                    select(func.count()).select_from(Job).where(Job.name == "inbound.process"),
                )
                == 0
            ),
            timeout=15,
            message="inbound queue drained",
        )
        assert (
            db_count(
                server.db_url,
                select(func.count())
                .select_from(InboundEvent)
                .where(InboundEvent.status != "processed"),
            )
            == 0
        )

        by_timeline = messages_by_timelines(client)
        by_conversation = messages_by_conversations(client)

    for found in (by_timeline, by_conversation):
        ids = Counter(m["id"] for m in found)
        provider_ids = Counter(m["provider_message_id"] for m in found)
        assert all(m["kind"] == "inbound" for m in found)
        assert [i for i, n in ids.items() if n > 1] == []
        assert [p for p, n in provider_ids.items() if n > 1] == []
        # Exactly the acknowledged deliveries, each under the id its 2xx announced.
        assert {m["provider_message_id"]: m["id"] for m in found} == acked
        assert {m["provider_message_id"]: m["text"] for m in found} == texts
        assert not forged_ids & set(provider_ids)
    assert sorted(m["id"] for m in by_timeline) == sorted(m["id"] for m in by_conversation)


@dataclass
class Delivery:
    """One POST the company's app received."""

    delivery_id: str
    headers: dict[str, str]
    body: bytes
    epoch: int
    answered: bool = False


@dataclass
class SlowCompanyApp:
    """A company's app that takes ``delay`` seconds per request and dedups on X-Hilo-Delivery.

    ``allow`` caps how many requests are answered; the rest wait, in flight, until the app
    is told the sending process died (``next_epoch``): requests from an earlier epoch are then
    dropped unanswered, as a real app's answer to a dead peer is lost.
    """

    delay: float = 0.3
    allow: int | None = None
    epoch: int = 0
    deliveries: list[Delivery] = field(default_factory=list)
    processed: set[str] = field(default_factory=set)
    cond: threading.Condition = field(default_factory=threading.Condition)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hilo"

    def answered(self) -> list[Delivery]:
        with self.cond:
            return [d for d in self.deliveries if d.answered]

    def in_flight(self) -> list[Delivery]:
        """Requests that started and were not answered (and will not be, if from a past epoch)."""
        with self.cond:
            return [d for d in self.deliveries if not d.answered]

    def next_epoch(self) -> None:
        """The sender died: drop what it left in flight, answer everything from now on."""
        with self.cond:
            self.epoch += 1
            self.allow = None
            self.cond.notify_all()

    def start(self) -> SlowCompanyApp:
        app = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with app.cond:
                    delivery = Delivery(
                        headers.get("x-hilo-delivery", ""), headers, body, app.epoch
                    )
                    app.deliveries.append(delivery)
                time.sleep(app.delay)
                with app.cond:
                    while (
                        delivery.epoch == app.epoch
                        and app.allow is not None
                        and sum(d.answered for d in app.deliveries) >= app.allow
                    ):
                        app.cond.wait()
                    if delivery.epoch != app.epoch:
                        self.close_connection = True
                        return
                    delivery.answered = True
                    app.processed.add(delivery.delivery_id)  # idempotent on the delivery id
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.next_epoch()
        if self.server:
            self.server.shutdown()
            self.server.server_close()


def test_replies_are_delivered_once_across_sigkill_during_delivery(crash_server: Server) -> None:
    """Replies in flight when the process is SIGKILLed are delivered after the restart.

    The guarantee is at-least-once delivery with a stable idempotency key: a reply whose
    request was in flight at the kill (the app got it, Hilo never got the answer) is sent
    again after the restart, with the same ``X-Hilo-Delivery`` id and the same body, so the
    company's app, deduplicating on that id, processes every reply exactly once. Nothing is
    lost, nothing is re-sent under a new id, and nothing already answered is re-sent.

    The app answers the first ``ALLOW`` requests and holds the next ones; once Hilo has
    recorded every answered reply as sent and its workers are all stuck on held requests,
    the server is SIGKILLed. That makes "in flight at the kill" an exact count (started, not
    answered), which bounds the redeliveries. (Killed at an arbitrary instant, a reply
    answered a moment before the kill but not yet recorded may also be re-sent, under the
    same id, which the guarantee allows.)
    """
    replies, allow = 20, 6
    server = crash_server
    app = SlowCompanyApp(delay=0.3, allow=allow).start()
    try:
        server.start()
        token = new_token(server)
        client = api_client(server, token)
        channel = create_channel(client, callback_url=app.url)
        first = post_api_message(client, channel["id"], channel["secret"], inbound("u-1", "hola"))
        assert first.status_code == 200, first.text

        def conversation_of_first() -> str | None:
            for m in messages_by_timelines(client):
                if m["id"] == first.json()["message_id"]:
                    return str(m["conversation_id"])
            return None

        conversation_id = wait_for(conversation_of_first, timeout=15)
        reply_ids: list[str] = []
        for i in range(replies):
            response = client.post(
                f"/api/v1/conversations/{conversation_id}/messages", json={"text": f"Respuesta {i}"}
            )
            assert response.status_code == 202, response.text
            reply_ids.append(response.json()["id"])

        def statuses() -> dict[str, str]:
            items = every(client, f"/api/v1/conversations/{conversation_id}/messages")
            return {m["id"]: m["status"] for m in items if m["kind"] == "outbound"}

        def settled() -> bool:
            answered = {d.delivery_id for d in app.answered()}
            if len(answered) < allow or len(app.in_flight()) < WORKERS:
                return False
            current = statuses()
            return all(current[i] == "sent" for i in answered)

        wait_for(settled, timeout=20, message="answered replies recorded, workers all held")
        server.kill()
        client.close()
        time.sleep(0.3)  # a request already on the wire still reaches the app
        in_flight = app.in_flight()
        answered_before = {d.delivery_id for d in app.answered()}
        started_before = {d.delivery_id for d in app.deliveries}
        app.next_epoch()

        assert len(answered_before) == allow
        assert len(in_flight) >= 1
        assert len(started_before) < replies, "every reply had started: nothing to recover"
        assert not answered_before & {d.delivery_id for d in in_flight}

        server.start()
        client = api_client(server, token)
        wait_for(
            lambda: set(statuses().values()) == {"sent"},
            timeout=30,
            message="every reply sent after the restart",
        )
        final = statuses()
        client.close()
        wait_for(
            lambda: (
                db_count(
                    server.db_url,
                    select(func.count()).select_from(Job).where(Job.name == "outbound.send"),
                )
                == 0
            ),
            timeout=15,
            message="outbound queue drained",
        )
    finally:
        app.stop()

    assert sorted(final) == sorted(reply_ids)
    deliveries = list(app.deliveries)
    received = Counter(d.delivery_id for d in deliveries)
    print(f"{len(deliveries)} POSTs for {replies} replies; in flight at the kill: {len(in_flight)}")
    # Every reply arrived, under its own id, and the app processed each once.
    assert set(received) == set(reply_ids)
    assert app.processed == set(reply_ids)
    # Redeliveries repeat an id, only of requests in flight at the kill, at most one each.
    duplicates = len(deliveries) - len(received)
    assert duplicates <= len(in_flight)
    in_flight_ids = Counter(d.delivery_id for d in in_flight)
    for delivery_id, count in received.items():
        if count > 1:
            assert delivery_id in in_flight_ids
            assert count <= in_flight_ids[delivery_id] + 1
    assert all(received[i] == 1 for i in answered_before)
    # What was in flight was sent again and answered this time.
    for delivery_id in in_flight_ids:
        assert any(d.answered and d.delivery_id == delivery_id for d in deliveries)
    # Each request is signed, and a redelivery carries the very same body.
    bodies: dict[str, bytes] = {}
    for d in deliveries:
        assert json.loads(d.body)["message_id"] == d.delivery_id
        assert d.headers["x-hilo-signature"] == sign(
            channel["secret"], d.headers["x-hilo-timestamp"], d.body
        )
        assert bodies.setdefault(d.delivery_id, d.body) == d.body
