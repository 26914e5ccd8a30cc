"""Tenant isolation, tested systematically: every route, with another workspace's ids."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from tests.conftest import Api, Server, create_workspace_token, wait_for
from tests.core.test_api_channel import create_channel, message, message_visible, timeline
from tests.helpers import post_api_message

# A valid body for every route that takes one, so a 404 can only come from isolation.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/api/v1/contacts/{contact_id}/merge"): {"contact_id": "{other_contact_id}"},
    ("patch", "/api/v1/conversations/{conversation_id}"): {"status": "pending"},
    ("post", "/api/v1/conversations/{conversation_id}/labels"): {"label": "vip"},
    ("post", "/api/v1/conversations/{conversation_id}/messages"): {"text": "hola"},
    ("post", "/api/v1/conversations/{conversation_id}/calls"): {"duration_seconds": 60},
    ("patch", "/api/v1/contacts/{contact_id}"): {"name": "Intruso"},
    ("patch", "/api/v1/deals/{deal_id}"): {"stage": "won"},
    ("post", "/api/v1/teams/{team_id}/members"): {"user_id": "{user_id}"},
}
# Routes with no workspace object in their path, and what proves they leak nothing.
UNSCOPED = {
    ("get", "/api/v1/contacts"),
    ("get", "/api/v1/conversations"),
    ("get", "/api/v1/channels"),
    ("post", "/api/v1/channels"),
    ("post", "/api/v1/attachments"),
    ("post", "/api/v1/stream/tickets"),
    ("get", "/api/v1/stream/sse"),
    ("get", "/api/v1/companies"),
    ("post", "/api/v1/companies"),
    ("get", "/api/v1/deals"),
    ("post", "/api/v1/deals"),
    ("get", "/api/v1/users"),
    ("post", "/api/v1/users"),
    ("get", "/api/v1/teams"),
    ("post", "/api/v1/teams"),
    ("get", "/api/v1/search/messages"),
}


def populated_workspace(api: Api) -> dict[str, str]:
    channel = create_channel(api)
    first = post_api_message(
        api, channel["id"], channel["secret"], message("b-1", "secreto", phone="+34600111222")
    )
    second = post_api_message(api, channel["id"], channel["secret"], message("b-2", "otro secreto"))
    contact = wait_for(lambda: message_visible(api, first.json()["message_id"]))
    other = wait_for(lambda: message_visible(api, second.json()["message_id"]))
    conversation_id = timeline(api, contact["id"])[0]["conversation_id"]
    api.post(f"/api/v1/conversations/{conversation_id}/labels", json={"label": "vip"})
    company = api.post("/api/v1/companies", json={"name": "Rent a Car Sur"}).json()
    deal = api.post(
        "/api/v1/deals",
        json={"title": "Flota 2027", "contact_id": contact["id"], "amount": "1200.50"},
    ).json()
    team = api.post("/api/v1/teams", json={"name": "Asistencia"}).json()
    attachment = api.post(
        "/api/v1/attachments", content=b"secreto", headers={"Content-Type": "text/plain"}
    ).json()
    user = api.post(
        "/api/v1/users",
        json={"email": "ana@example.com", "password": "correct horse", "role": "agent"},
    ).json()
    return {
        "company_id": company["id"],
        "deal_id": deal["id"],
        "team_id": team["id"],
        "attachment_id": attachment["id"],
        "user_id": user["id"],
        "contact_id": contact["id"],
        "other_contact_id": other["id"],
        "conversation_id": conversation_id,
        "channel_id": channel["id"],
        "label": "vip",
    }


def fill(template: Any, ids: dict[str, str]) -> Any:
    if isinstance(template, str):
        return re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], template)
    if isinstance(template, dict):
        return {k: fill(v, ids) for k, v in template.items()}
    return template


def api_routes(api: Api) -> list[tuple[str, str]]:
    spec = api.get("/openapi.json").json()
    return [
        (method, path)
        for path, operations in spec["paths"].items()
        if path.startswith("/api/")
        for method in operations
    ]


def test_every_route_answers_404_for_another_workspaces_objects(api: Api, server: Server) -> None:
    theirs = populated_workspace(api)
    token = create_workspace_token(server.db_url, f"intruder-{uuid.uuid4().hex[:8]}")
    headers = {"Authorization": f"Bearer {token}"}
    mine = Api(base_url=server.base_url, headers=headers, timeout=15)
    # The intruder's own contact, so a merge has a real survivor on their side.
    own_channel = create_channel(mine)
    sent = post_api_message(mine, own_channel["id"], own_channel["secret"], message("a-1", "hi"))
    own_contact = wait_for(lambda: message_visible(mine, sent.json()["message_id"]))
    checked = []
    for method, path in api_routes(api):
        if (method, path) in UNSCOPED:
            continue
        assert "{" in path, f"{method.upper()} {path} has no object id: add it to UNSCOPED"
        url = fill(path, theirs)
        body = fill(BODIES.get((method, path)), theirs)
        response = mine.request(method.upper(), url, json=body)
        assert response.status_code == 404, f"{method.upper()} {path}: {response.status_code}"
        checked.append((method, path))
        if (method, path) == ("post", "/api/v1/contacts/{contact_id}/merge"):
            # Their contact absorbed into mine: also refused.
            response = mine.post(
                f"/api/v1/contacts/{own_contact['id']}/merge",
                json={"contact_id": theirs["contact_id"]},
            )
            assert response.status_code == 404
    assert len(checked) >= 9
    # Lists show none of their objects.
    assert [c["id"] for c in mine.get("/api/v1/contacts").json()["items"]] == [own_contact["id"]]
    assert theirs["conversation_id"] not in str(mine.get("/api/v1/conversations").json())
    assert theirs["channel_id"] not in str(mine.get("/api/v1/channels").json())
    assert mine.get("/api/v1/contacts", params={"q": "secreto"}).json()["items"] == []
    assert mine.get("/api/v1/search/messages", params={"q": "secreto"}).json()["items"] == []
    for listing in ("companies", "deals", "users", "teams"):
        assert mine.get(f"/api/v1/{listing}").json()["items"] == [], listing
    # Their contact cannot be linked to my deals either.
    linked = mine.post("/api/v1/deals", json={"title": "x", "contact_id": theirs["contact_id"]})
    assert linked.status_code == 404
    assert mine.get("/api/v1/contacts", params={"phone": "+34600111222"}).json()["items"] == []
    # And their data is untouched.
    assert [i["text"] for i in timeline(api, theirs["contact_id"])] == ["secreto"]
    mine.close()


def test_webhook_cannot_post_into_another_channel_with_own_secret(api: Api, server: Server) -> None:
    theirs = create_channel(api)
    token = create_workspace_token(server.db_url, f"intruder-{uuid.uuid4().hex[:8]}")
    mine = Api(base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=15)
    own = create_channel(mine)
    forged = post_api_message(api, theirs["id"], own["secret"], message("x", "inyección"))
    assert forged.status_code == 401
    mine.close()


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer nope", "Basic abc"])
def test_requests_without_a_valid_token_are_refused(server: Server, header: str) -> None:
    import httpx

    response = httpx.get(f"{server.base_url}/api/v1/contacts", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json()["error"]["code"] in ("unauthorized", "invalid_token")
