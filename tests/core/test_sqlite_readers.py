"""SQLite has one writer at a time; agents' reads must not queue behind it."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from tests.conftest import Api
from tests.core.test_api_channel import create_channel, message
from tests.helpers import post_api_message


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_reads_answer_while_another_process_holds_the_write_lock(api: Api) -> None:
    """A long write elsewhere (a CLI command, a backup) does not freeze the agents' screens:
    reads answer at once; a write waits its turn and then lands."""
    channel = create_channel(api)
    assert api.get("/api/v1/contacts").status_code == 200  # the token's first use is noted
    path = api.server.db_url.removeprefix("sqlite:///")
    holder = sqlite3.connect(path, isolation_level=None, timeout=30)
    holder.execute("BEGIN IMMEDIATE")
    released = threading.Event()
    try:
        # Were reads to take the write lock, each would wait here until the timeout.
        for path_ in ("/api/v1/contacts", "/api/v1/conversations", "/api/v1/channels"):
            response = api.get(path_, timeout=5)
            assert response.status_code == 200, response.text
        sent: dict[str, object] = {}

        def write() -> None:
            sent["response"] = post_api_message(
                api, channel["id"], channel["secret"], message("c-lock", "Hola")
            )
            sent["while_held"] = not released.is_set()

        writer = threading.Thread(target=write)
        writer.start()
        writer.join(timeout=1.0)
        assert writer.is_alive(), "a write went through while another process held the lock"
    finally:
        released.set()
        holder.execute("ROLLBACK")
        holder.close()
    writer.join(timeout=30)
    assert sent["while_held"] is False
    assert sent["response"].status_code == 200  # type: ignore[attr-defined]
