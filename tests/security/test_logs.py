"""What the server's log says about a request, and what it keeps out."""

from __future__ import annotations

import uuid
from urllib.parse import quote

from tests.conftest import Api


def test_access_log_names_searches_without_the_customer_data_they_carry(api: Api) -> None:
    """Agents search by phone, e-mail and words a customer wrote; the access log shows that
    a search ran, not what it was for."""
    phone = "+34612" + str(uuid.uuid4().int)[:6]
    email = f"ana.{uuid.uuid4().hex[:10]}@example.es"
    words = f"reembolso{uuid.uuid4().hex[:8]}"
    for path in (
        f"/api/v1/contacts?phone={quote(phone)}",
        f"/api/v1/contacts?email={quote(email)}",
        f"/api/v1/contacts?q={words}",
        f"/api/v1/search/messages?q={words}",
    ):
        assert api.get(path).status_code == 200
    logs = api.server.logs()
    assert '"GET /api/v1/contacts HTTP/1.1" 200' in logs
    assert '"GET /api/v1/search/messages HTTP/1.1" 200' in logs
    for secret in (phone, quote(phone), phone[1:], email, quote(email), words):
        assert secret not in logs
