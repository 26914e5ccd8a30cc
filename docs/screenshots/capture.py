"""Take the README's screenshots of the agent workspace from the demo data set.

    .venv/bin/python docs/screenshots/capture.py      # needs Debian's chromium

A fresh demo workspace (``hilo demo --no-serve``) in a temporary directory, one ``hilo
serve``, and headless Chromium signed in as Tom Bennett (an agent who works in English).
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent.parent))  # the checkout, for the test harness' helpers

from tests.conftest import free_port  # noqa: E402
from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="hilo-shots-") as tmp:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "HILO_DATA_DIR": tmp,
            "HILO_SECRET_KEY": secrets.token_urlsafe(32),
            "HILO_PUBLIC_URL": base,
            "HILO_LOG_LEVEL": "WARNING",
        }
        env.pop("HILO_DATABASE_URL", None)
        hilo = [sys.executable, "-m", "hilo.cli"]
        subprocess.run([*hilo, "demo", "--no-serve"], env=env, check=True, capture_output=True)
        server = subprocess.Popen([*hilo, "serve", "--port", str(port), "--no-migrate"], env=env)
        try:
            for _ in range(100):
                try:
                    if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            shoot(base, panel_contact(Path(tmp) / "hilo.db"))
        finally:
            server.terminate()
            server.wait(timeout=30)


def panel_contact(db_path: Path) -> str:
    """A customer with a company, a deal, earlier conversations and the most kinds of identity."""
    with sqlite3.connect(db_path) as db:
        (name,) = db.execute(
            "SELECT c.name FROM contacts c WHERE c.company_id IS NOT NULL"
            " AND EXISTS (SELECT 1 FROM deals d WHERE d.contact_id = c.id)"
            " AND (SELECT count(*) FROM conversations v WHERE v.contact_id = c.id) >= 2"
            " ORDER BY (SELECT count(DISTINCT kind) FROM contact_identities i"
            " WHERE i.contact_id = c.id) DESC, c.name LIMIT 1"
        ).fetchone()
    return str(name)


def shoot(base: str, panel_name: str) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(
            viewport={"width": 1440, "height": 900}, locale="en-GB", device_scale_factor=1
        )
        page = context.new_page()
        page.goto(base + "/login")
        page.get_by_label("E-mail").fill("tom.bennett@rutarent.example")
        page.get_by_label("Password").fill("hilo-demo")
        page.locator("form button[type=submit]").first.click()
        page.wait_for_url("**/app/inbox")
        page.locator("label[for=view-mine]").click()
        page.wait_for_timeout(800)
        page.locator("#inbox-list .row-link").nth(2).click()
        page.locator("#conv-name").wait_for()
        page.wait_for_timeout(800)
        page.evaluate("document.activeElement.blur()")
        page.screenshot(path=HERE / "inbox.png")
        page.locator("label[for=view-all]").click()
        page.wait_for_timeout(500)

        page.fill("#q", "Marta Jiménez")
        page.locator("#inbox-list .row-name", has_text="Marta Jiménez Ruiz").first.wait_for()
        page.locator("#inbox-list .row-link").first.click()
        page.locator("#conv-name").wait_for()
        page.wait_for_timeout(800)
        switch = page.locator("#timeline .sys", has_text="moved from")
        switch.evaluate("el => el.scrollIntoView({block: 'center'})")
        page.evaluate("document.activeElement.blur()")
        page.wait_for_timeout(300)
        page.screenshot(path=HERE / "conversation.png")

        # The panel of a customer with a company, a deal and earlier conversations.
        page.fill("#q", panel_name)
        page.locator("#inbox-list .row-name", has_text=panel_name).first.wait_for()
        page.locator("#inbox-list .row-link").first.click()
        page.locator("#conv-name", has_text=panel_name.split()[0]).wait_for()
        page.set_viewport_size({"width": 1440, "height": 1300})
        page.wait_for_timeout(600)
        box = page.locator("#panel").bounding_box()
        bottom = page.evaluate(
            "Math.max(...[...document.querySelectorAll('#panel .panel-card')]"
            ".map(c => c.getBoundingClientRect().bottom))"
        )
        assert box is not None
        clip = {"x": box["x"], "y": box["y"], "width": box["width"], "height": bottom - box["y"] + 12}
        page.screenshot(path=HERE / "context-panel.png", clip=clip)
        browser.close()


if __name__ == "__main__":
    main()
