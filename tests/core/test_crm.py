"""The light CRM: companies, deals and the contact's profile."""

from __future__ import annotations

from tests.conftest import Api
from tests.core.test_conversations import start_conversation


def test_contact_profile_company_and_deals_are_kept_and_traced(api: Api) -> None:
    _channel, contact, _conversation = start_conversation(api, sender="crm-1")
    company = api.post("/api/v1/companies", json={"name": "Autos Pérez", "domain": "autosperez.mx"})
    assert company.status_code == 201
    edited = api.patch(
        f"/api/v1/contacts/{contact['id']}",
        json={
            "name": "José Pérez",
            "company_id": company.json()["id"],
            "attributes": {"plan": "oro"},
            "timezone": "America/Mexico_City",
            "locale": "es",
        },
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["name"] == "José Pérez"
    assert edited.json()["company_id"] == company.json()["id"]
    bad_zone = api.patch(f"/api/v1/contacts/{contact['id']}", json={"timezone": "Mars/Base"})
    assert bad_zone.status_code == 422
    deal = api.post(
        "/api/v1/deals",
        json={
            "title": "Renting 12 meses",
            "contact_id": contact["id"],
            "amount": "899.90",
            "currency": "MXN",
            "stage": "proposal",
        },
    )
    assert deal.status_code == 201, deal.text
    moved = api.patch(f"/api/v1/deals/{deal.json()['id']}", json={"stage": "won"})
    assert moved.json()["stage"] == "won"
    listed = api.get("/api/v1/deals", params={"contact_id": contact["id"]}).json()["items"]
    assert [(d["title"], d["stage"], d["amount"], d["currency"]) for d in listed] == [
        ("Renting 12 meses", "won", "899.90", "MXN")
    ]
    found = api.get("/api/v1/contacts", params={"q": "pérez"}).json()["items"]
    assert [c["id"] for c in found] == [contact["id"]]


def test_agents_cannot_manage_users_channels_or_teams(api: Api) -> None:
    from tests.conftest import create_workspace_token

    token = create_workspace_token(api.server.db_url, api.slug, role="agent")
    headers = {"Authorization": f"Bearer {token}"}
    for path, body in (
        ("/api/v1/users", {"email": "x@example.com", "password": "12345678", "role": "admin"}),
        ("/api/v1/channels", {"type": "api", "name": "x"}),
        ("/api/v1/teams", {"name": "x"}),
    ):
        response = api.post(path, json=body, headers=headers)
        assert response.status_code == 403, path
