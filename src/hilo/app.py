"""The FastAPI application: routes, error rendering, and what runs beside it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from hilo import __version__, flows, http
from hilo.attachments.endpoints import links as attachment_links_router
from hilo.attachments.endpoints import router as attachments_router
from hilo.auth.endpoints import router as auth_router
from hilo.calls.endpoints import router as calls_router
from hilo.channels.email_io.listener import SmtpListener
from hilo.channels.endpoints import router as channels_router
from hilo.channels.endpoints import webhooks as webhooks_router
from hilo.contacts.endpoints import router as contacts_router
from hilo.conversations.endpoints import router as conversations_router
from hilo.crm.endpoints import router as crm_router
from hilo.db import Database, GroupCommit
from hilo.errors import HiloError
from hilo.forms.endpoints import router as forms_router
from hilo.i18n import _, negotiate, translate
from hilo.realtime.broker import Broker
from hilo.realtime.endpoints import router as realtime_router
from hilo.runtime import Runtime
from hilo.search.endpoints import router as search_router
from hilo.settings import Settings, get_settings
from hilo.web.endpoints import install as install_workspace
from hilo.webchat.endpoints import router as webchat_router
from hilo.webchat.middleware import WebchatMiddleware

log = logging.getLogger("hilo")


# SQLSTATEs of text PostgreSQL cannot store (a NUL character, an untranslatable escape).
UNSTORABLE_TEXT = ("22021", "22P05")


def _error(request: Request, status: int, code: str, message: str, **params: Any) -> JSONResponse:
    locale = negotiate(request.headers.get("accept-language"), default="en")
    text = translate(message, locale, **params)
    return JSONResponse({"error": {"code": code, "message": text}}, status_code=status)


def create_app(settings: Settings | None = None, *, db: Database | None = None) -> FastAPI:
    """Build the application; workers run inside it when ``settings.run_workers``."""
    settings = settings or get_settings()
    database = db or Database(settings.effective_database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Webhook deliveries arriving together share one commit (see flows.receive_webhook).
        app.state.deliveries = GroupCommit(database, flows.store_deliveries)
        broker = Broker(database, settings)
        app.state.broker = broker
        await broker.start()
        runtime = Runtime(database, settings)
        app.state.runtime = runtime
        await runtime.start(workers=settings.run_workers)
        smtp = SmtpListener(database, settings)
        await smtp.start()
        try:
            yield
        finally:
            await smtp.stop()
            await runtime.stop()
            await broker.stop()
            await http.close()
            await database.dispose()

    app = FastAPI(
        title="Hilo",
        version=__version__,
        description="One customer, one continuous conversation, across every channel.",
        lifespan=lifespan,
    )
    app.state.db = database
    app.state.settings = settings

    @app.exception_handler(HiloError)
    async def _hilo_error(request: Request, exc: HiloError) -> JSONResponse:
        log.info("%s %s -> %s %s", request.method, request.url.path, exc.status_code, exc.code)
        return _error(request, exc.status_code, exc.code, exc.message, **exc.params)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = sorted({".".join(str(p) for p in e["loc"][1:]) or "body" for e in exc.errors()})
        log.info("%s %s -> 422 invalid fields %s", request.method, request.url.path, fields)
        return _error(
            request,
            422,
            "invalid_payload",
            _("Invalid payload: check the fields {fields}."),
            fields=", ".join(fields),
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        log.info("%s %s -> %s", request.method, request.url.path, exc.status_code)
        messages = {404: _("Not found."), 405: _("Method not allowed.")}
        message = messages.get(exc.status_code, _("The request could not be processed."))
        return _error(request, exc.status_code, f"http_{exc.status_code}", message)

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> JSONResponse:
        # PostgreSQL refuses NUL (and untranslatable) characters in text: bad input, a 422.
        if getattr(exc.orig, "sqlstate", None) in UNSTORABLE_TEXT:
            log.info("%s %s -> 422 unstorable character", request.method, request.url.path)
            return _error(request, 422, "invalid_payload", _("The request body is not valid."))
        return await _unexpected(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(request, 500, "internal_error", _("Something went wrong on our side."))

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    for router in (
        realtime_router,
        channels_router,
        forms_router,
        webhooks_router,
        webchat_router,
        contacts_router,
        conversations_router,
        attachments_router,
        attachment_links_router,
        calls_router,
        crm_router,
        auth_router,
        search_router,
    ):
        app.include_router(router)
    app.add_middleware(WebchatMiddleware)
    install_workspace(app)
    if settings.bench_endpoints:
        from hilo.benchmark.endpoints import router as bench_router

        app.include_router(bench_router)
    return app
