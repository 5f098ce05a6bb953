"""create_app(settings): builds the services once, mounts routes and middleware."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from dockyard.config import Settings
from dockyard.delivery.server import DeliveryServer
from dockyard.delivery.urls import BlobUrlSigner
from dockyard.entitlements.downloads import DownloadRecorder
from dockyard.jobs import JobRegistry, Worker
from dockyard.registry import auth_views
from dockyard.registry import views as registry_views
from dockyard.registry.pulls import PullRecorder
from dockyard.runtime import build_runtime
from dockyard.web.context import AppState
from dockyard.web.headers import SecurityHeadersMiddleware
from dockyard.web.observability import Metrics, ObservabilityMiddleware


def build_state(settings: Settings, *, run_migrations: bool = True) -> AppState:
    """The process's runtime (see dockyard.runtime, the composition root)."""
    return build_runtime(settings, run_migrations=run_migrations)


def build_jobs(state: AppState) -> JobRegistry:
    """Every job kind, with the subscribers wired into the state's bus (once; see Runtime.jobs)."""
    return state.jobs


MACHINE_PATHS = ("/api/", "/static/", "/token", "/metrics", "/healthz")


class CachedStaticFiles(StaticFiles):
    """Static files: kept a year when asked for by a versioned URL (``static()`` in templates adds a hash of
    the content, so a changed file gets a new URL), else for an hour and revalidated by ETag."""

    def file_response(self, full_path, stat_result, scope, status_code=200):  # type: ignore[no-untyped-def]
        response = super().file_response(full_path, stat_result, scope, status_code)
        versioned = b"v=" in scope.get("query_string", b"")
        cache = "public, max-age=31536000, immutable" if versioned else "public, max-age=3600"
        response.headers.setdefault("cache-control", cache)
        return response


class DockyardApp(Starlette):
    """Starlette, with the registry's /v2 API taken ahead of the middleware stack (see registry.views.app)."""

    registry: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path.startswith("/v2/") or path == "/v2":
                scope["app"] = self
                await self.registry(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings, *, state: AppState | None = None) -> Starlette:
    """The ASGI application."""
    state = state or build_state(settings)
    jobs = build_jobs(state)
    # Job worker threads in this process, as many as settings.job_workers (DOCKYARD_JOB_WORKERS) asks for;
    # they share one scheduler (periodic feed updates and purges, start hooks). 0: see `dockyard worker`.
    scheduler = jobs.scheduler(state.sessions)
    metrics = Metrics(lambda: sum(1 for _ in state.blobs.list_uploads()))
    # In-process job workers yield to requests: a scan waits for a quiet moment (at most a second), so
    # pushes and pulls keep the GIL and SQLite's write lock. `dockyard worker` does not wait.
    workers = [
        Worker(
            state.sessions,
            jobs,
            bus=state.bus,
            scheduler=scheduler,
            defer_to=metrics.busy,
            services=state.services,
        )
        for _ in range(settings.job_workers)
    ]
    # Blob GETs redirect to this process's delivery server (DOCKYARD_BLOB_LISTEN); several worker processes
    # each run one on the same port (SO_REUSEPORT) and share the URL secret in DATA_DIR/keys.
    blob_urls = (
        BlobUrlSigner.from_dir(Path(settings.data_dir) / "keys", settings.blob_public_url)
        if settings.blob_delivery
        else None
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        delivery = None
        if blob_urls is not None:  # first: a port that cannot be bound stops the start, nothing to undo
            delivery = DeliveryServer(state.blobs, blob_urls, settings.blob_listen, metrics.blob_delivered)
            delivery.start()
            state.blob_urls = blob_urls
        if settings.pull_event_interval > 0 and state.pull_recorder is None:
            state.pull_recorder = PullRecorder(state.sessions, settings.pull_event_interval)
            state.pull_recorder.start()
        if settings.pull_event_interval > 0 and state.download_recorder is None:
            state.download_recorder = DownloadRecorder(state.sessions, settings.pull_event_interval)
            state.download_recorder.start()
        for worker in workers:
            worker.start()
        try:
            yield
        finally:
            if delivery is not None:
                state.blob_urls = None  # no new redirects to a server that is going away
                await asyncio.to_thread(delivery.stop)
            for worker in workers:
                await asyncio.to_thread(worker.stop)
            if state.pull_recorder is not None:
                await asyncio.to_thread(state.pull_recorder.stop)
                state.pull_recorder = None
            if state.download_recorder is not None:
                await asyncio.to_thread(state.download_recorder.stop)
                state.download_recorder = None

    async def healthz(request: Request) -> Response:
        def check() -> None:
            with state.engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        try:
            await asyncio.to_thread(check)
        except Exception as exc:  # report, don't crash: this is what load balancers poll
            return JSONResponse({"status": "unhealthy", "database": str(exc)[:200]}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def metrics_view(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    from dockyard.accounts import pages as account_pages
    from dockyard.alerts import pages as alert_pages
    from dockyard.compliance import pages as compliance_pages
    from dockyard.entitlements import pages as entitlement_pages
    from dockyard.moderation import pages as moderation_pages
    from dockyard.publishing import pages as publishing_pages
    from dockyard.publishing import product_pages
    from dockyard.registry import pages as registry_pages
    from dockyard.scanning import pages as scan_pages
    from dockyard.store import pages as store_pages
    from dockyard.store import search_pages
    from dockyard.web import pages
    from dockyard.web.api import API_PREFIX, DOCS_PATH, create_api, docs
    from dockyard.webhooks import pages as webhook_pages

    routes = [
        Route("/healthz", healthz),
        Route("/metrics", metrics_view),
        *auth_views.routes,
        # Named, so that the API's route names (its functions') never shadow the pages' in url(): they
        # are "api:<name>" there.
        Mount(API_PREFIX, app=create_api(state, api_routers()), name="api"),
        Route(DOCS_PATH, docs, methods=["GET"]),
        Mount("/static", app=CachedStaticFiles(directory=Path(__file__).parent / "static"), name="static"),
        *account_pages.routes,
        *webhook_pages.routes,
        *product_pages.routes,
        # Before the registry's: its repository page matches any path under /ui/repositories/.
        *scan_pages.routes,
        *alert_pages.routes,
        *registry_pages.routes,
        *moderation_pages.routes,
        *compliance_pages.routes,
        *publishing_pages.routes,
        *entitlement_pages.routes,
        *search_pages.routes,
        *store_pages.routes,
    ]
    from starlette.exceptions import HTTPException

    from dockyard.web.errors import http_exception_response

    def routing_error(request: Request, exc: Exception) -> Response:
        # Pages get the HTML error page; the API, /token and the static files their own formats.
        assert isinstance(exc, HTTPException)
        if request.url.path.startswith(MACHINE_PATHS):
            return http_exception_response(request, exc)
        message = "There is nothing at this address." if exc.status_code == 404 else str(exc.detail)
        return pages.status_page(request, exc.status_code, message, headers=dict(exc.headers or {}))

    app = DockyardApp(
        routes=routes,
        exception_handlers={HTTPException: routing_error},
        lifespan=lifespan,
        middleware=[Middleware(SecurityHeadersMiddleware), pages.session_middleware(settings)],
    )
    app.state.dockyard = state
    app.state.jobs, app.state.workers, app.state.metrics = jobs, workers, metrics
    app.add_middleware(ObservabilityMiddleware, metrics=metrics)
    app.registry = ObservabilityMiddleware(registry_views.app, metrics=metrics)
    logging.getLogger("dockyard").setLevel(settings.log_level.upper())
    return app


def api_routers() -> list[Any]:
    """The routers of the JSON API under /api/v1, one per domain."""
    from dockyard.accounts import views as account_views
    from dockyard.alerts import views as alert_views
    from dockyard.compliance import views as compliance_views
    from dockyard.entitlements import views as entitlement_views
    from dockyard.moderation import views as moderation_views
    from dockyard.publishing import product_views
    from dockyard.publishing import views as publishing_views
    from dockyard.scanning import views as scan_views
    from dockyard.store import search_views
    from dockyard.store import views as store_views
    from dockyard.webhooks import views as webhook_views

    return [
        account_views.router,
        scan_views.router,
        publishing_views.router,
        product_views.router,
        moderation_views.router,
        entitlement_views.router,
        search_views.router,
        store_views.router,
        compliance_views.router,
        webhook_views.router,
        alert_views.router,
    ]


def api_document() -> dict[str, Any]:
    """The OpenAPI document /api/v1/openapi.json serves, built without a database or a server."""
    from dockyard.web.api import create_api

    return create_api(None, api_routers()).openapi()


def app_from_env() -> Starlette:
    """Factory for the ASGI server (granian --factory): reads the environment once."""
    settings = Settings.from_env()
    logging.basicConfig(level=settings.log_level.upper(), format="%(message)s")
    return create_app(settings, state=build_state(settings, run_migrations=False))
