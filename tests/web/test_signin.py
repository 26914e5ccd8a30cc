"""Signing in to the workspace over HTTP, on SQLite and PostgreSQL: cookies, CSRF, limits on
attempts, the TOTP second factor and signing out everywhere."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pyotp
import pytest

from tests.conftest import Api, Server, create_workspace_token, dispose_server, make_server
from tests.web.conftest import Agent, Browser, add_user, csrf_of, customer_writes, sign_in


def post_login(client: httpx.Client, email: str, password: str, **extra: str) -> httpx.Response:
    token = csrf_of(client.get("/login").text)
    return client.post(
        "/login", data={"csrf_token": token, "email": email, "password": password, **extra}
    )


def anonymous(server: Server) -> httpx.Client:
    return httpx.Client(
        base_url=server.base_url,
        timeout=15,
        follow_redirects=False,
        headers={"Accept-Language": "en"},
    )


def test_sign_in_sets_an_http_only_same_site_session_cookie(api: Api, server: Server) -> None:
    agent = add_user(api)
    with anonymous(server) as client:
        response = post_login(client, agent.email, agent.password)
        assert response.status_code == 303
        cookie = next(
            v
            for k, v in response.headers.multi_items()
            if k == "set-cookie" and "hilo_session" in v
        )
        flags = cookie.lower()
        assert "httponly" in flags and "samesite=lax" in flags and "path=/" in flags
        # Served over plain http here: a Secure cookie would never come back.
        assert "secure" not in flags
        assert client.get("/app/inbox").status_code == 200


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)  # flags, not storage
def test_session_cookie_is_secure_when_hilo_is_served_over_https(
    tmp_path: Path, api: Api, server: Server
) -> None:
    https = make_server("sqlite", tmp_path, extra_env={"HILO_PUBLIC_URL": "https://hilo.example"})
    https.start()
    try:
        token = create_workspace_token(https.db_url, "secure-cookies")
        admin = Api(base_url=https.base_url, headers={"Authorization": f"Bearer {token}"})
        agent = add_user(admin)
        with anonymous(https) as client:
            form = client.get("/login")
            # Over plain http a client keeps no Secure cookie: send it back by hand, as the
            # browser would over https.
            seed = form.cookies.get("hilo_pre") or form.headers["set-cookie"].split(";")[0]
            seed = seed.removeprefix("hilo_pre=")
            assert "secure" in form.headers["set-cookie"].lower()
            response = client.post(
                "/login",
                data={
                    "csrf_token": csrf_of(form.text),
                    "email": agent.email,
                    "password": agent.password,
                },
                headers={"Cookie": f"hilo_pre={seed}"},
            )
            assert response.status_code == 303, response.text
            cookie = next(
                v
                for k, v in response.headers.multi_items()
                if k == "set-cookie" and "hilo_session" in v
            )
            assert "secure" in cookie.lower()
        admin.close()
    finally:
        dispose_server(https)


def test_wrong_password_is_refused_without_saying_which_part_was_wrong(
    api: Api, server: Server
) -> None:
    agent = add_user(api)
    with anonymous(server) as client:
        wrong = post_login(client, agent.email, "not the password")
        unknown = post_login(client, "nobody@example.com", "not the password")
        for response in (wrong, unknown):
            assert response.status_code == 401
            assert "The e-mail or the password is not right." in response.text
            assert "hilo_session" not in response.headers.get("set-cookie", "")
        assert client.get("/app/inbox").status_code == 303


def test_sign_in_with_a_nul_character_is_refused_with_422_not_a_500(
    api: Api, server: Server
) -> None:
    agent = add_user(api)
    with anonymous(server) as client:
        response = post_login(client, agent.email + "\x00", agent.password, workspace="a\x00")
        assert response.status_code == 422
        assert "The form could not be read." in response.text
        assert "hilo_session" not in response.headers.get("set-cookie", "")


def test_sign_in_form_without_its_csrf_token_is_refused(api: Api, server: Server) -> None:
    agent = add_user(api)
    with anonymous(server) as client:
        client.get("/login")
        response = client.post("/login", data={"email": agent.email, "password": agent.password})
        assert response.status_code == 403
        assert "hilo_session" not in response.headers.get("set-cookie", "")


def test_workspace_posts_without_the_session_csrf_token_change_nothing(
    api: Api, server: Server
) -> None:
    thread = customer_writes(api, "Hola")
    browser = sign_in(server, add_user(api))
    url = f"/app/conversations/{thread.conversation_id}/update"
    missing = browser.post(url, data={"status": "resolved"}, headers={"HX-Request": "true"})
    forged = browser.post(
        url, data={"status": "resolved"}, headers={"X-CSRF-Token": "0" * 64, "HX-Request": "true"}
    )
    # A page of another site posting with the right token still carries its own Origin.
    cross_site = browser.post_form(
        url, {"status": "resolved"}, headers={"Origin": "https://evil.example"}
    )
    for response in (missing, forged, cross_site):
        assert response.status_code == 403, response.text
        assert "This form has expired" in response.text
    assert api.get(f"/api/v1/conversations/{thread.conversation_id}").json()["status"] == "open"
    accepted = browser.post_form(url, {"status": "resolved"})
    assert accepted.status_code == 200
    assert api.get(f"/api/v1/conversations/{thread.conversation_id}").json()["status"] == "resolved"


def test_repeated_wrong_passwords_lock_that_account_for_a_while(api: Api, server: Server) -> None:
    agent, colleague = add_user(api), add_user(api, name="Tom Bennett")
    with anonymous(server) as client:
        for _attempt in range(5):
            assert post_login(client, agent.email, "guessing").status_code == 401
        locked = post_login(client, agent.email, agent.password)
        assert locked.status_code == 429
        assert "Too many failed attempts" in locked.text
        assert "hilo_session" not in locked.headers.get("set-cookie", "")
    # Other accounts are not locked by someone guessing this one.
    assert sign_in(server, colleague).get("/app/inbox").status_code == 200


def test_two_step_verification_asks_for_a_fresh_code_after_the_password(
    api: Api, server: Server
) -> None:
    agent = add_user(api)
    browser = sign_in(server, agent)
    started = browser.post("/app/settings/totp/start", data={"csrf_token": browser.csrf})
    assert started.status_code == 200
    secret = started.text.split('id="totp-secret">')[1].split("<")[0]
    totp = pyotp.TOTP(secret)
    refused = browser.post(
        "/app/settings/totp/enable", data={"csrf_token": browser.csrf, "code": "000000"}
    )
    assert refused.status_code == 422
    enabled = browser.post(
        "/app/settings/totp/enable", data={"csrf_token": browser.csrf, "code": totp.now()}
    )
    assert enabled.status_code == 200 and "Two-step verification is on." in enabled.text

    def code_step(code: str) -> tuple[httpx.Response, httpx.Client]:
        client = anonymous(server)
        first = post_login(client, agent.email, agent.password)
        assert first.status_code == 303 and first.headers["location"].startswith("/login/code")
        assert "hilo_session" not in first.headers.get("set-cookie", "")
        assert client.get("/app/inbox").status_code == 303  # not signed in yet
        page = client.get("/login/code")
        sent = client.post("/login/code", data={"csrf_token": csrf_of(page.text), "code": code})
        return sent, client

    wrong, _ = code_step("123456")
    assert wrong.status_code == 401
    # The code that switched it on is spent: the next one (30 s on) signs in, once.
    fresh = totp.at(time.time() + 30)
    accepted, client = code_step(fresh)
    assert accepted.status_code == 303 and accepted.headers["location"] == "/app/inbox"
    assert client.get("/app/inbox").status_code == 200
    replayed, _ = code_step(fresh)
    assert replayed.status_code == 401
    signed_ins = client.get("/app/settings").text
    assert "signed in (with a code)" in signed_ins
    assert "failed attempt" in signed_ins


def test_sign_out_everywhere_ends_every_session_of_the_user(api: Api, server: Server) -> None:
    agent = add_user(api)
    laptop, tablet = sign_in(server, agent), sign_in(server, agent)
    other_user = sign_in(server, add_user(api, name="Tom Bennett"))
    response = laptop.post("/app/settings/sign-out-everywhere", data={"csrf_token": laptop.csrf})
    assert response.status_code == 303 and response.headers["location"] == "/login"
    for browser in (laptop, tablet):
        gone = browser.get("/app/inbox")
        assert gone.status_code == 303 and gone.headers["location"].startswith("/login")
        # An HTMX request is told to go to the sign-in page instead of getting a fragment.
        partial = browser.get("/app/inbox/list", headers={"HX-Request": "true"})
        assert partial.status_code == 401 and partial.headers["HX-Redirect"] == "/login"
    assert other_user.get("/app/inbox").status_code == 200
    # Signing in again works.
    assert sign_in(server, agent).get("/app/inbox").status_code == 200


def test_sign_out_ends_this_session_only(api: Api, server: Server) -> None:
    agent = add_user(api)
    laptop, tablet = sign_in(server, agent), sign_in(server, agent)
    assert laptop.post("/logout", data={"csrf_token": laptop.csrf}).status_code == 303
    assert laptop.get("/app/inbox").status_code == 303
    assert tablet.get("/app/inbox").status_code == 200


def test_sign_ins_and_failed_attempts_are_recorded_for_the_user_to_see(
    api: Api, server: Server
) -> None:
    agent = add_user(api)
    with anonymous(server) as client:
        post_login(client, agent.email, "typo")
    browser = sign_in(server, agent)
    settings = browser.get("/app/settings").text
    assert "failed attempt" in settings and "signed in" in settings
    assert "this browser" in settings


def test_a_signed_in_browser_gets_a_stream_ticket_that_opens_the_live_stream(
    api: Api, server: Server
) -> None:
    browser: Browser = sign_in(server, add_user(api))
    assert browser.post("/app/stream/ticket").status_code == 403  # no CSRF token
    ticket = browser.post_form("/app/stream/ticket", {}).json()["ticket"]
    with httpx.stream(
        "GET", f"{server.base_url}/api/v1/stream/sse", params={"ticket": ticket}, timeout=15
    ) as stream:
        assert stream.status_code == 200
        assert next(stream.iter_lines()).startswith("retry:")


def test_next_page_after_sign_in_stays_on_this_site(api: Api, server: Server) -> None:
    agent: Agent = add_user(api)
    for target, expected in (
        ("/app/settings", "/app/settings"),
        ("https://evil.example/app", "/app/inbox"),
        ("//evil.example/app", "/app/inbox"),
    ):
        with anonymous(server) as client:
            response = post_login(client, agent.email, agent.password, next=target)
            assert response.headers["location"] == expected
