"""The application factory: one FastAPI app per engine, settings and clock."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import Receive, Scope, Send

from mailcast import __version__
from mailcast.accounts.endpoints import account_router
from mailcast.accounts.endpoints import router as api_keys_router
from mailcast.accounts.middleware import ApiKeyAuth
from mailcast.api import errors
from mailcast.api.idempotency import Idempotency
from mailcast.api.middleware import AddressLimit, BodyLimit, NoNulInUrl
from mailcast.api.ratelimit import RateLimits
from mailcast.audiences.endpoints import router as audiences_router
from mailcast.campaigns.endpoints import router as campaigns_router
from mailcast.campaigns.endpoints import sequenzy_router
from mailcast.clock import Clock, system_clock
from mailcast.config import Settings
from mailcast.contacts.endpoints import router as contacts_router
from mailcast.db.engine import create_engine, session_factory
from mailcast.delivery.tokens import TokenCodec
from mailcast.delivery.transports import build_transport
from mailcast.domains.dns import Resolver, TxtLookup
from mailcast.domains.endpoints import router as domains_router
from mailcast.members.endpoints import router as members_router
from mailcast.templates.endpoints import router as templates_router
from mailcast.tracking.endpoints import TrackingFastPath
from mailcast.tracking.endpoints import router as tracking_router
from mailcast.tracking.events import EventWriter
from mailcast.tracking.service import ClickResolver, is_machine
from mailcast.tracking.store import event_store
from mailcast.web import errors as dashboard_errors
from mailcast.web import pages as dashboard_pages
from mailcast.web.people import router as dashboard_people_router
from mailcast.web.routes import router as dashboard_router
from mailcast.web.settings import router as dashboard_settings_router
from mailcast.worker.runner import Worker

log = logging.getLogger("mailcast")

DESCRIPTION = """Self-hosted email broadcast campaigns, speaking the Sendry `/v1` API.

Authenticate with `Authorization: Bearer mc_live_...`. Scopes: `read_only` < `sending_access` <
`full_access`. Errors are `{"error": {"code", "message", "details"}}`."""


def create_app(
    settings: Settings,
    engine: AsyncEngine | None = None,
    clock: Clock = system_clock,
    dns: TxtLookup | None = None,
    run_worker: bool = False,
) -> FastAPI:
    """`run_worker`: also run the scheduler and sender in this process (what `mailcast serve` does
    on the embedded default)."""
    owns_engine = engine is None
    engine = engine or create_engine(settings.resolved_database_url())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # What start-up built (modules, the app, the mappers) lives as long as the process: out of
        # the collector's sight, a full collection no longer walks it (pauses of tens of ms under
        # load).
        gc.freeze()
        stop = asyncio.Event()
        task = transport = None
        if run_worker:
            transport, where = build_transport(settings)
            log.warning(where)
            task = asyncio.create_task(
                Worker(app.state.sessions, settings, transport, clock).run(stop)
            )
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                await task
            if transport is not None:
                await transport.close()
            if app.state.transport is not None:  # test sends' (api/deps.py)
                await app.state.transport.close()
            await app.state.events.close()
            if owns_engine:
                await engine.dispose()

    _redact_access_log()
    app = MailcastAPI(
        title="mailcast", version=__version__, description=DESCRIPTION, lifespan=lifespan
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = session_factory(engine)
    app.state.clock = clock
    app.state.dns = dns or Resolver(settings.dns_nameservers, settings.dns_timeout_seconds)
    app.state.codec = TokenCodec(settings.secret())
    app.state.limits = RateLimits(settings) if settings.rate_limits_enabled else None
    app.state.events = EventWriter(
        app.state.sessions,
        event_store(engine),
        settings.machine_open_window_seconds,
        is_machine,
        settings.tracking_flush_seconds,
        settings.tracking_max_buffered,
    )
    app.state.clicks = ClickResolver(app.state.codec)
    app.state.transport = None

    errors.install(app, dashboard_errors)
    routers = (
        account_router,
        api_keys_router,
        domains_router,
        audiences_router,
        members_router,
        contacts_router,
        templates_router,
        campaigns_router,
        sequenzy_router,
        tracking_router,
        dashboard_router,
        dashboard_people_router,
        dashboard_settings_router,
    )
    for router in routers:
        app.include_router(router)
    app.mount(
        "/dashboard/static",
        StaticFiles(directory=Path(dashboard_pages.__file__).parent / "static"),
        name="dashboard-static",
    )

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/dashboard/", status_code=307)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.state.route_methods = errors.route_methods(
        [*app.router.routes, *(r for router in routers for r in router.routes)]
    )

    # Outermost first: the body limit sees every request, then authentication for /v1, then the
    # idempotency keys (they belong to the caller's account).
    app.add_middleware(Idempotency)
    app.add_middleware(ApiKeyAuth)
    app.add_middleware(
        BodyLimit,
        default_limit=settings.max_body_bytes,
        overrides={
            "/v1/contacts/import": settings.import_max_body_bytes,
            # the file, and a multipart form's few lines around it
            "/v1/contacts/imports": settings.import_max_file_bytes + 65_536,
            "/dashboard/company/[^/]+/imports": settings.import_max_file_bytes + 65_536,
        },
    )
    app.add_middleware(AddressLimit)
    app.add_middleware(NoNulInUrl)
    app.tracking = TrackingFastPath(app.state)  # in front of all of it: see MailcastAPI
    return app


class RedactTokens(logging.Filter):
    """The access log keeps tracking and unsubscribe paths without their tokens: each stands for
    one person's delivery (an unsubscribe token unsubscribes them)."""

    _TOKEN = re.compile(r"(/(?:t/[oc]|u)/)[^/?\s\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], self._TOKEN.sub(r"\1...", args[2]), *args[3:])
        return True


def _redact_access_log() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactTokens) for f in access.filters):
        access.addFilter(RedactTokens())


class MailcastAPI(FastAPI):
    """The application, with pixel and click requests answered before FastAPI's own per-request
    work and middleware (`TrackingFastPath`)."""

    tracking: TrackingFastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.tracking is None or not await self.tracking.answer(scope, send):
            await super().__call__(scope, receive, send)


def create_app_from_environment() -> FastAPI:
    """For `mailcast serve --workers N`: each HTTP process serves the API; none runs the sender."""
    from mailcast.config import get_settings

    return create_app(get_settings(), run_worker=False)
