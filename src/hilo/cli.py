"""The ``hilo`` command."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import typer

from hilo.settings import get_settings

app = typer.Typer(help="Hilo: one customer, one continuous conversation.", no_args_is_help=True)
user_app = typer.Typer(help="Manage users.")
token_app = typer.Typer(help="Manage API tokens.")
audit_app = typer.Typer(help="The tamper-evident trail.")
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")
app.add_typer(audit_app, name="audit")


def _logging() -> None:
    logging.basicConfig(
        level=get_settings().log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every request URL at INFO, and some providers put credentials in the path
    # (Telegram's bot token): keep it to warnings.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # The access log names each request, but not its query: searches carry customers' phone
    # numbers, e-mail addresses and words, which stay out of logs at info level.
    logging.getLogger("uvicorn.access").addFilter(_without_query)


def _without_query(record: logging.LogRecord) -> bool:
    args = record.args
    # uvicorn's access record: (client, method, path with query, HTTP version, status).
    if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
        record.args = (args[0], args[1], args[2].partition("?")[0], args[3], args[4])
    return True


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema."""
    from hilo.migrate import upgrade

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.effective_database_url)
    typer.echo("database is up to date")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    migrate_first: Annotated[bool, typer.Option("--migrate/--no-migrate")] = True,
) -> None:
    """Run the API, webhooks and workers in one process."""
    import uvicorn

    from hilo.app import create_app

    _logging()
    settings = get_settings()
    if migrate_first:
        migrate()
    uvicorn.run(
        create_app(settings),
        host=host or settings.host,
        port=port or settings.port,
        log_level=settings.log_level.lower(),
        proxy_headers=True,
    )


@app.command()
def worker() -> None:
    """Run only the background workers (for deployments with separate worker processes)."""
    from hilo.db import Database
    from hilo.realtime.broker import Broker
    from hilo.runtime import Runtime

    _logging()
    settings = get_settings()

    async def run() -> None:
        db = Database(settings.effective_database_url)
        # What the workers commit (a customer's message) must reach the agents' live
        # streams, which the API processes serve: through the same broker.
        broker = Broker(db, settings)
        await broker.start()
        runtime = Runtime(db, settings)
        await runtime.start(workers=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runtime.stop()
            await broker.stop()
            await db.dispose()

    asyncio.run(run())


@token_app.command("create")
def token_create(
    workspace: Annotated[str, typer.Option(help="Workspace slug (created if missing).")],
    role: Annotated[str, typer.Option(help="admin, supervisor or agent.")] = "admin",
    name: Annotated[str, typer.Option(help="A label for the token.")] = "",
) -> None:
    """Print a new API token (and nothing else)."""
    from hilo.auth import service
    from hilo.db import Database
    from hilo.events import Actor

    async def run() -> str:
        db = Database(get_settings().effective_database_url)
        try:
            async with db.transaction() as session:
                ws = await service.do_get_or_create_workspace(session, workspace)
                return await service.do_create_token(
                    session, workspace_id=ws.id, role=role, name=name, actor=Actor("cli")
                )
        finally:
            await db.dispose()

    typer.echo(_run_or_exit(run()))


@user_app.command("create")
def user_create(
    workspace: Annotated[str, typer.Option(help="Workspace slug (created if missing).")],
    email: Annotated[str, typer.Option(help="The user's e-mail.")],
    role: Annotated[str, typer.Option(help="admin, supervisor or agent.")] = "agent",
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    password: Annotated[
        str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)
    ] = "",
) -> None:
    """Create a user who signs in with e-mail and password."""
    from hilo.auth import service
    from hilo.db import Database
    from hilo.events import Actor

    async def run() -> str:
        db = Database(get_settings().effective_database_url)
        try:
            async with db.transaction() as session:
                ws = await service.do_get_or_create_workspace(session, workspace)
                user = await service.do_create_user(
                    session,
                    workspace_id=ws.id,
                    email=email,
                    role=role,
                    password=password,
                    name=name,
                    actor=Actor("cli"),
                )
                return str(user.id)
        finally:
            await db.dispose()

    typer.echo(f"user {_run_or_exit(run())} created")


@audit_app.command("verify")
def audit_verify(
    workspace: Annotated[str, typer.Option(help="Workspace slug.")],
) -> None:
    """Check the workspace's event chain; exits non-zero on any tampering."""
    from hilo.audit.service import verify
    from hilo.db import Database

    async def run() -> bool:
        db = Database(get_settings().effective_database_url)
        try:
            report = await verify(db, workspace_slug=workspace)
        finally:
            await db.dispose()
        for problem in report.problems:
            typer.echo(f"PROBLEM: {problem}", err=True)
        typer.echo(f"checked {report.checked} events: {'OK' if report.ok else 'TAMPERED'}")
        return report.ok

    if not asyncio.run(run()):
        raise typer.Exit(1)


@app.command()
def demo(
    reset: Annotated[
        bool, typer.Option("--reset", help="Erase every row of the database first.")
    ] = False,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Start the server afterwards.")
    ] = True,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed, the same data.")] = 42,
) -> None:
    """Fill a fresh database with a Spanish-and-English demo workspace, then serve it."""
    import time

    from hilo.db import Database
    from hilo.demo.service import SLUG, DatabaseNotEmpty, DemoResult, generate
    from hilo.migrate import upgrade

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.effective_database_url)

    async def run() -> DemoResult:
        db = Database(settings.effective_database_url, pool_size=1)
        try:
            return await generate(db, seed=seed, reset=reset)
        finally:
            await db.dispose()

    started = time.monotonic()
    try:
        result = asyncio.run(run())
    except DatabaseNotEmpty as exc:
        typer.echo(
            "error: the database already holds data; run `hilo demo --reset` to erase it "
            "and load the demo.\n"
            "error: la base de datos ya contiene datos; ejecute `hilo demo --reset` para "
            "borrarla y cargar la demo.",
            err=True,
        )
        raise typer.Exit(2) from exc
    elapsed = time.monotonic() - started
    listen_host = host or settings.host
    url_host = "127.0.0.1" if listen_host in ("0.0.0.0", "::") else listen_host
    url = f"http://{url_host}:{port or settings.port}"
    counts = result.counts
    typer.echo(
        f'Demo workspace "{SLUG}" ready in {elapsed:.1f} s: {counts["contacts"]} contacts, '
        f"{counts['conversations']} conversations, {counts['messages']} messages, "
        f"{counts['events']} events (seed {seed})."
    )
    typer.echo(f"Login:     {result.admin.email}  password: {result.password}")
    others = ", ".join(f"{u.email} ({u.role})" for u in result.users if u.role != "admin")
    typer.echo(f"Also:      {others}  (same password)")
    typer.echo(f"API token: {result.token}")
    typer.echo(f"URL:       {url}  (API docs: {url}/docs)")
    for line in result.notes:
        typer.echo(line)
    if serve_after:
        import os

        # The demo's providers do not exist: a reply fails at the first attempt instead of
        # waiting in the queue for a day (unless the person chose otherwise).
        os.environ.setdefault("HILO_OUTBOUND_GIVE_UP_HOURS", "0")
        serve(host=host, port=port, migrate_first=False)


def _run_or_exit(coro: object) -> str:
    from hilo.errors import HiloError

    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except HiloError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from exc


def main() -> None:
    """Entry point of the ``hilo`` script."""
    app()


if __name__ == "__main__":
    main()
