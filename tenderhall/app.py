"""The application factory and its lifespan: pool, embedded database, bus, log key, templates, media hub."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from typing import Any, AsyncIterator, TypedDict

import asyncpg
import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from tenderhall import db, formatting
from tenderhall.bus import Bus
from tenderhall.embedded_pg import EmbeddedPostgres
from tenderhall.headers import SecurityHeaders
from tenderhall.i18n import Translator, load_catalogues
from tenderhall.media_hub import MediaHub
from tenderhall.media_log import segment_logger
from tenderhall.data_key import DataKey, load_or_create as load_data_key
from tenderhall.platform_key import PlatformKey, load_or_create
from tenderhall.settings import REPO_ROOT, Settings

log = logging.getLogger(__name__)

TEMPLATE_DIRS = [REPO_ROOT / pkg / "templates" for pkg in ("tenderhall", "trading", "evaluation", "venue", "supervision")]


class State(TypedDict):
    settings: Settings
    pool: asyncpg.Pool
    bus: Bus
    platform_key: PlatformKey
    data_key: DataKey
    templates: Jinja2Templates
    translator: Translator
    media_hub: MediaHub
    session_media: Any
    venue_engine: Any
    venue_device_token: str


def make_templates(translator: Translator, settings: Settings) -> Jinja2Templates:
    loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(str(d)) for d in TEMPLATE_DIRS if d.exists()])
    env = jinja2.Environment(loader=loader, autoescape=True, extensions=["jinja2.ext.i18n"])
    env.install_gettext_callables(translator.gettext, translator.ngettext, newstyle=True)  # type: ignore[attr-defined]
    zone = formatting.display_zone(settings.display_timezone)
    env.filters["when"] = lambda value, seconds=True: formatting.when(value, zone, seconds=seconds)
    env.filters["yuan"] = formatting.yuan
    # For values (statuses, roles, error messages): a plain str, so autoescape applies and a '%'
    # in the value is never taken for a format directive, unlike `_()` in newstyle gettext.
    env.filters["translate"] = lambda value: translator.gettext(str(value))
    return Jinja2Templates(env=env)


_collector_tuned = False


def _tune_collector() -> None:
    """Once per process (tests start many apps in one): what exists now is frozen."""
    global _collector_tuned
    if not _collector_tuned:
        gc.freeze()
        gc.set_threshold(20_000, 20, 50)
        _collector_tuned = True


async def run_periodically(app: Starlette, state: State, jobs: list, interval: float) -> None:
    """Run each domain job now and then every `interval` seconds; a failing job is logged, not fatal."""
    while True:
        for job in jobs:
            try:
                await job(app, state)
            except Exception:  # noqa: BLE001 - one bad run must not stop the next ones
                log.exception("periodic job %s failed", job.__name__)
        await asyncio.sleep(interval)


async def resolve_dsn(settings: Settings) -> tuple[str, EmbeddedPostgres | None]:
    """DATABASE_URL when set; otherwise start (or join) the embedded server."""
    if settings.database_url:
        return settings.database_url, None
    embedded = EmbeddedPostgres(settings.data_dir)
    dsn = await asyncio.to_thread(embedded.start)
    return dsn, embedded


def create_app(settings: Settings, *, extra_routes: list[BaseRoute] | None = None) -> Starlette:
    """Build the ASGI app. Nothing starts until the lifespan runs."""
    from evaluation.jobs import JOBS as EVALUATION_JOBS
    from evaluation.pool_service import ensure_specialty_tree
    from evaluation.draw_service import Deps as SessionDeps
    from evaluation.routes import ROUTES as EVALUATION_ROUTES
    from evaluation.session_media import SessionMedia
    from tenderhall.routes import ROUTES as SHELL_ROUTES
    from trading.jobs import JOBS as TRADING_JOBS
    from trading.hall_routes import ROUTES as HALL_ROUTES
    from trading.routes import ROUTES as TRADING_ROUTES
    from venue.devices import load_or_create_token as load_device_token
    from venue.engine import VenueEngine
    from venue.alert_jobs import JOBS as ALERT_JOBS, TICK_SECONDS as ALERT_TICK_SECONDS
    from venue.jobs import INTERVAL_SECONDS as VENUE_JOB_SECONDS, JOBS as VENUE_JOBS, finish as finish_venue
    from venue.position_jobs import JOBS as POSITION_JOBS
    from venue.routes import ROUTES as VENUE_ROUTES

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        dsn, embedded = await resolve_dsn(settings)
        pool = await db.create_pool(dsn, settings.pool_min, settings.pool_max)
        try:
            async with pool.acquire() as conn:
                await db.migrate(conn)
                # Reference data, not schema: the default specialty code tree (idempotent).
                await ensure_specialty_tree(conn)
            settings.storage_dir.mkdir(parents=True, exist_ok=True)
            translator = Translator(load_catalogues())
            bus = Bus(pool, dsn)
            await bus.start()
            platform_key = load_or_create(settings.platform_key_path)
            data_key = load_data_key(settings.data_key_path)
            media_hub = MediaHub(settings, on_segment=segment_logger(pool, platform_key))
            session_media = SessionMedia(SessionDeps(pool, settings, platform_key, data_key))
            venue_engine = VenueEngine(settings)
            await venue_engine.start(pool, bus, platform_key)
            state = State(
                settings=settings,
                pool=pool,
                bus=bus,
                platform_key=platform_key,
                data_key=data_key,
                templates=make_templates(translator, settings),
                translator=translator,
                media_hub=media_hub,
                session_media=session_media,
                venue_engine=venue_engine,
                venue_device_token=load_device_token(settings),
            )
            jobs = [asyncio.create_task(run_periodically(app, state, TRADING_JOBS, settings.job_interval_seconds)),
                    asyncio.create_task(run_periodically(app, state, EVALUATION_JOBS, settings.draw_job_seconds)),
                    asyncio.create_task(session_media.run_live_check()),
                    asyncio.create_task(run_periodically(app, state, VENUE_JOBS, VENUE_JOB_SECONDS)),
                    asyncio.create_task(run_periodically(app, state, ALERT_JOBS, ALERT_TICK_SECONDS)),
                    asyncio.create_task(run_periodically(app, state, POSITION_JOBS, settings.job_interval_seconds))]
            # What start-up made lives as long as the process: out of the collector's sight, and
            # fewer young-generation passes, so a full pass does not stall door decisions and
            # alerts by tens of milliseconds under position load (bench/ingest.py, bench/access.py).
            _tune_collector()
            try:
                yield state
            finally:
                for job in jobs:
                    job.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await job
                await finish_venue(app, state)  # door decisions still queued
                # Closing the hub finishes the open recordings, whose log entries need the pool.
                await media_hub.close()
                await session_media.close()
                await venue_engine.stop()
                await bus.stop()
        finally:
            await pool.close()
            if embedded is not None:
                embedded.stop()

    routes: list[BaseRoute] = [
        *SHELL_ROUTES,
        *TRADING_ROUTES,
        *HALL_ROUTES,
        *EVALUATION_ROUTES,
        *VENUE_ROUTES,
        *(extra_routes or []),
        Mount("/static", app=StaticFiles(directory=str(REPO_ROOT / "static")), name="static"),
    ]
    return Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(SecurityHeaders)])


async def healthz(request: Request) -> Response:
    """The process is alive."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """The database answers and every migration is applied."""
    try:
        async with request.state.pool.acquire(timeout=2) as conn:
            pending = await db.pending_migrations(conn)
    except (OSError, asyncpg.PostgresError, db.MigrationError, TimeoutError) as exc:
        return JSONResponse({"status": "unavailable", "reason": str(exc)}, status_code=503)
    if pending:
        names = [f"{m.version:04d}_{m.name}" for m in pending]
        return JSONResponse({"status": "unavailable", "reason": f"pending migrations: {names}"}, status_code=503)
    return JSONResponse({"status": "ready"})
