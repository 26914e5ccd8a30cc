"""The workspace's pages are as isolated as the API: every route, with another workspace's ids."""

from __future__ import annotations

import re
import uuid
from typing import Any

from fastapi.routing import APIRoute

from hilo.web.endpoints import router
from tests.conftest import Api, Server, create_workspace_token
from tests.core.test_isolation import fill
from tests.web.conftest import add_user, customer_writes, sign_in

# A valid form for every route that takes one, so a 404 can only come from isolation.
FORMS: dict[str, dict[str, Any]] = {
    "/app/conversations/{conversation_id}/messages": {"text": "hola", "mode": "note"},
    "/app/conversations/{conversation_id}/update": {"status": "pending"},
    "/app/conversations/{conversation_id}/labels": {"label": "vip"},
    "/app/conversations/{conversation_id}/contact": {"name": "Intruso"},
    "/app/conversations/{conversation_id}/merge": {"other_id": "{other_contact_id}"},
    "/app/admin/teams/{team_id}/members": {"user_id": "{user_id}"},
}
QUERIES: dict[str, str] = {"/app/conversations/{conversation_id}/merge": "other={other_contact_id}"}


def routes_with_ids() -> list[tuple[str, str]]:
    return sorted(
        (method, route.path)
        for route in router.routes
        if isinstance(route, APIRoute) and "{" in route.path
        for method in route.methods
    )


def test_every_workspace_route_answers_404_for_another_workspaces_objects(
    api: Api, server: Server
) -> None:
    theirs = customer_writes(api, "secreto de empresa", name="Cliente Ajeno")
    other = customer_writes(api, "otro secreto", name="Otro Ajeno")
    team = api.post("/api/v1/teams", json={"name": "Facturación"}).json()
    their_agent = add_user(api)
    ids = {
        "conversation_id": theirs.conversation_id,
        "other_contact_id": other.contact["id"],
        "channel_id": theirs.channel["id"],
        "team_id": team["id"],
        "user_id": their_agent.id,
        "attachment_id": str(uuid.uuid4()),
        "canned_id": str(uuid.uuid4()),
    }
    browser = sign_in(server, their_agent)
    saved = browser.post_form(
        "/app/admin/canned", {"shortcut": "hola", "title": "Saludo", "body": "Hola"}
    )
    assert saved.status_code == 403  # an agent does not manage canned responses
    token = create_workspace_token(server.db_url, f"intruder-{uuid.uuid4().hex[:8]}")
    intruder_api = Api(base_url=server.base_url, headers={"Authorization": f"Bearer {token}"})
    intruder = sign_in(server, add_user(intruder_api, role="admin", name="Intruso Admin"))
    checked = []
    for method, path in routes_with_ids():
        url = fill(path, ids)
        if method == "GET":
            query = fill(QUERIES.get(path, ""), ids)
            response = intruder.get(url + (f"?{query}" if query else ""))
        else:
            response = intruder.post_form(url, fill(FORMS.get(path, {}), ids))
        assert response.status_code == 404, f"{method} {path}: {response.status_code}"
        checked.append(path)
    assert len(checked) >= 15
    # Nothing of theirs shows in the intruder's inbox or searches.
    inbox = intruder.get("/app/inbox", params={"status": "any"}).text
    assert "Cliente Ajeno" not in inbox
    found = intruder.get("/app/inbox/list", params={"q": "secreto", "status": "any"}).text
    assert "Nothing matches “secreto”." in found and "Ajeno" not in found
    # And their conversation is untouched.
    conversation = api.get(f"/api/v1/conversations/{theirs.conversation_id}").json()
    assert conversation["status"] == "open" and conversation["labels"] == []
    contact = api.get(f"/api/v1/contacts/{theirs.contact['id']}").json()
    assert contact["name"] == "Cliente Ajeno"
    intruder_api.close()


def test_pages_need_a_session(server: Server) -> None:
    import httpx

    for method, path in routes_with_ids():
        url = fill(path, {k: str(uuid.uuid4()) for k in re.findall(r"\{(\w+)\}", path)})
        response = httpx.request(method, server.base_url + url, follow_redirects=False)
        assert response.status_code in (303, 403), f"{method} {path}: {response.status_code}"
