"""The worker takes queued deliveries in batches (``HILO_WORKER_BATCH``): what it records must
be exactly what it records taking them one by one.

The same story is played on two servers, one with batches of one and one with the default
batches; the deliveries are queued while the workers are off, so that the second server
really takes them many at a time. The contacts, conversations, messages and conversation
events (channels switched, conversations reopened) must come out the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.channels.test_sms import Sms, create_sms, new_sid, twiml_ok
from tests.conftest import Api, create_workspace_token, dispose_server, make_server, wait_for

PHONES = ("+34611000001", "+34611000002", "+34611000003", "+34611000004")
NAMES = ("A", "B")


def first_round(a: Sms, b: Sms) -> list[tuple[Sms, dict[str, str]]]:
    p1, p2, p3, _p4 = PHONES
    hello = a.inbound(p1, "Hola, tengo una reserva")
    return [
        (a, hello),
        (a, a.inbound(p1, "¿Seguís ahí?")),
        (b, b.inbound(p2, "Buenas tardes")),
        (b, b.inbound(p1, "Os escribo desde el otro número")),  # p1 switches A → B
        (a, a.inbound(p3, "STOP")),  # a keyword: taken one by one
        (a, a.inbound(p3, "Perdón, era broma")),
        (a, a.status(new_sid(), "delivered")),  # a receipt for a reply nobody knows (yet)
        (a, hello),  # Twilio retries the first one
        (a, a.inbound(p2, "Y otra cosa")),  # p2 switches B → A
    ]


def second_round(a: Sms, b: Sms) -> list[tuple[Sms, dict[str, str]]]:
    p1, p2, _p3, p4 = PHONES
    return [
        (a, a.inbound(p1, "Vuelvo a escribir")),  # p1's conversation was resolved: reopened
        (b, b.inbound(p4, "Primera vez que escribo")),
        (b, b.inbound(p2, "Seguimos por aquí")),  # p2 switches A → B
        (b, b.inbound(p4, "Dos mensajes seguidos")),
    ]


def contact_of(api: Api, phone: str) -> dict[str, Any] | None:
    items = api.get("/api/v1/contacts", params={"phone": phone}).json()["items"]
    return items[0] if items else None


def record(api: Api, names: dict[str, str]) -> dict[str, Any]:
    """What an agent would see of each customer, with ids replaced by names."""
    seen: dict[str, Any] = {}
    for phone in PHONES:
        contact = contact_of(api, phone)
        if contact is None:
            continue
        items = api.get(f"/api/v1/contacts/{contact['id']}/timeline").json()["items"]
        conversations: list[str] = []
        for item in items:
            if item["conversation_id"] not in conversations:
                conversations.append(item["conversation_id"])
        trail = []
        for conversation_id in conversations:
            events = api.get(f"/api/v1/conversations/{conversation_id}/events").json()["items"]
            trail.append(
                [
                    (
                        e["type"],
                        names.get(str(e.get("channel_id")), ""),
                        names.get(str(e["data"].get("from_channel_id")), ""),
                        e["data"].get("to", ""),
                    )
                    for e in events
                    if e["type"].startswith(("conversation.", "message.received"))
                ]
            )
        seen[phone] = {
            "name": contact["name"],
            "identities": sorted(
                (i["kind"], i["value"], i["verified"]) for i in contact["identities"]
            ),
            "messages": [
                (conversations.index(i["conversation_id"]), names[i["channel_id"]], i["text"])
                for i in items
            ],
            "trail": trail,
        }
    return seen


def play(backend: str, tmp: Path, batch: int) -> dict[str, Any]:
    tmp.mkdir()
    # One worker task: one by one then means in the order they came, and the trail of
    # events is comparable (concurrent tasks may process two texts the other way round).
    env = {"HILO_WORKER_BATCH": str(batch), "HILO_WORKER_CONCURRENCY": "1"}
    server = make_server(backend, tmp, extra_env=env)
    try:
        server.start(extra_env={"HILO_RUN_WORKERS": "false"})
        token = create_workspace_token(server.db_url, "batches")
        api = Api(
            base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=15
        )
        api.server = server
        a, b = create_sms(api), create_sms(api)
        names = {a.id: NAMES[0], b.id: NAMES[1]}

        def deliver(round_: Callable[[Sms, Sms], list[tuple[Sms, dict[str, str]]]]) -> int:
            sent = round_(a, b)
            for channel, params in sent:
                assert twiml_ok(channel.post(params))
                time.sleep(0.002)  # distinct arrival times, as in life
            server.stop()
            server.start()  # the workers take the queue now
            return sum(1 for _c, p in sent if p.get("Body") is not None)

        def landed(count: int) -> bool:
            return sum(len(r["messages"]) for r in record(api, names).values()) >= count

        first = deliver(first_round) - 1  # the retry is no new message
        wait_for(lambda: landed(first), timeout=30, message="the first round in the timelines")
        p1 = contact_of(api, PHONES[0])
        assert p1 is not None
        conversation = api.get(f"/api/v1/contacts/{p1['id']}/timeline").json()["items"][0]
        resolved = api.patch(
            f"/api/v1/conversations/{conversation['conversation_id']}", json={"status": "resolved"}
        )
        assert resolved.status_code == 200, resolved.text
        server.stop()
        server.start(extra_env={"HILO_RUN_WORKERS": "false"})
        second = first + deliver(second_round)
        wait_for(lambda: landed(second), timeout=30, message="the second round in the timelines")
        return record(api, names)
    finally:
        dispose_server(server)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_batches_record_what_one_by_one_records(backend: str, tmp_path: Path) -> None:
    alone = play(backend, tmp_path / "alone", batch=1)
    together = play(backend, tmp_path / "together", batch=20)
    assert together == alone
    # And what both record is the story: one contact per phone, one conversation each,
    # switches and the reopening in the trail, the keyword's sender still there.
    assert len(alone) == 4
    p1, p2 = alone[PHONES[0]], alone[PHONES[1]]
    assert len(p1["trail"]) == 1 and len(p2["trail"]) == 1
    assert [m[2] for m in p1["messages"]] == [
        "Hola, tengo una reserva",
        "¿Seguís ahí?",
        "Os escribo desde el otro número",
        "Vuelvo a escribir",
    ]
    types = [t[0] for t in p1["trail"][0]]
    assert "conversation.channel_switched" in types and "conversation.reopened" in types
    switches = [(t[1], t[2]) for t in p2["trail"][0] if t[0] == "conversation.channel_switched"]
    assert switches == [("A", "B"), ("B", "A")]
    assert [m[2] for m in alone[PHONES[2]]["messages"]] == ["STOP", "Perdón, era broma"]
