"""``hilo audit verify`` on a workspace filled through the real API, before and after tampering."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import text

from tests.conftest import Api, wait_for
from tests.core.test_api_channel import create_channel, message, message_visible
from tests.helpers import post_api_message


def verify(api: Api) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hilo.cli", "audit", "verify", "--workspace", api.slug],
        env=api.server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


WS = "workspace_id = (SELECT id FROM workspaces WHERE slug = :slug)"


def tamper(api: Api, statement: str) -> None:
    import asyncio

    from hilo.db import Database

    async def go() -> None:
        db = Database(api.server.db_url, pool_size=1)
        async with db.engine.begin() as conn:
            await conn.execute(text(statement.replace("{ws}", WS)), {"slug": api.slug})
        await db.dispose()

    asyncio.run(go())


def fill(api: Api) -> None:
    channel = create_channel(api)
    last = None
    for n in range(3):
        last = post_api_message(api, channel["id"], channel["secret"], message(f"u{n}", f"msg {n}"))
    assert last is not None
    wait_for(lambda: message_visible(api, last.json()["message_id"]))
    wait_for(lambda: verify(api).returncode == 0, timeout=15)


@pytest.mark.parametrize(
    "how",
    [
        "UPDATE events SET type = 'contact.erased' WHERE id = "
        "(SELECT MIN(id) FROM events WHERE {ws} AND type = 'message.received')",
        "DELETE FROM events WHERE id = (SELECT MIN(id) FROM events WHERE {ws} AND seq > 2)",
        "DELETE FROM events WHERE id = (SELECT MAX(id) FROM events WHERE {ws})",
        "UPDATE events SET seq = -seq WHERE {ws} AND seq IN (2, 3)",
    ],
    ids=["edited", "deleted", "deleted-newest", "reordered"],
)
def test_tampering_with_one_event_row_makes_audit_verify_fail(api: Api, how: str) -> None:
    fill(api)
    ok = verify(api)
    assert ok.returncode == 0, ok.stderr
    assert "OK" in ok.stdout
    if "seq = -seq" in how:
        # Swap two rows' places in the chain (through a negative to dodge the unique index).
        tamper(api, "UPDATE events SET seq = -seq WHERE {ws} AND seq IN (2, 3)")
        tamper(api, "UPDATE events SET seq = 3 WHERE {ws} AND seq = -2")
        tamper(api, "UPDATE events SET seq = 2 WHERE {ws} AND seq = -3")
    else:
        tamper(api, how)
    result = verify(api)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "TAMPERED" in result.stdout
    assert "PROBLEM" in result.stderr
