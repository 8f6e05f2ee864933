"""The aiohttp application factory: Meta webhooks, Slack endpoints, health and metrics, background workers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from functools import partial

import redis.asyncio as aioredis
from aiohttp import web

from bot.app.health import healthz
from bot.app.metrics_endpoint import CachedRefresh, Exposure, announce, exposure, metrics_handler, metrics_site
from bot.app.rejections import RateLimitedLog, quiet_malformed_requests, rejection_logger
from bot.app.shutdown import stop_tasks
from bot.app.throughput_gauge import refresh_throughput_gauge
from bot.bridge.auto_replies import AutoReplies
from bot.bridge.ingest_writer import IngestWriter
from bot.bridge.intake_first import IntakeFirst
from bot.bridge.meta_events import EventContext
from bot.bridge.webhook_worker import WebhookWorker
from bot.core.config import Settings
from bot.core.loop_health import LoopHealth
from bot.core.loops import WakeHub
from bot.core.metrics import Metrics
from bot.core.name_cache import NameCache
from bot.core.statement_count import count_statements
from bot.deps import Deps
from bot.handlers import appkeys, meta_webhook
from bot.meta.graph import GraphClient
from bot.onboarding.channels import merge_onboarded
from bot.onboarding.crypto import token_box
from bot.ops import privacy
from bot.ops.retention_worker import RetentionWorker
from bot.slack.client import slack_client, slack_session
from bot.slack.pacer import make_pacer
from bot.slack.workspace_clients import InstalledWorkspaces
from scheduler.throttle import RedisThrottle, Throttle, make_throttle
from storage.db import is_sqlite, make_engine, make_read_sessionmaker, make_sessionmaker, migrate, revision
from storage.installations import SealedInstallationStore
from storage.liveness import Heartbeat
from storage.repository import sync_channels
from storage.takeover import run_takeover
from storage.write_gate import SQLITE_PAUSE, WriteGate

log = logging.getLogger(__name__)

Component = Callable[[web.Application], None]


def database_ctx(run_migrations: bool) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[appkeys.SETTINGS]
        before = await revision(settings.database_url)
        if run_migrations:
            await migrate(settings.database_url)
            after = await revision(settings.database_url)
            app[appkeys.MIGRATIONS] = (f"migrations applied: {before or 'none'} → {after}" if after != before
                                       else f"migrations: at {after}, nothing to apply")
        else:
            app[appkeys.MIGRATIONS] = f"migrations not run (--no-migrate): at {before or 'none'}"
        pool = settings.database_pool_size
        engine = (make_engine(settings.database_url) if is_sqlite(settings.database_url)
                  else make_engine(settings.database_url, pool_size=pool, max_overflow=pool))
        count_statements(engine, app[appkeys.METRICS])
        app[appkeys.ENGINE] = engine
        app[appkeys.SESSIONS] = make_sessionmaker(engine)
        try:
            app[appkeys.CHANNEL_IDS] = await sync_channels(app[appkeys.SESSIONS], settings.channels,
                                                       settings.workspace_of)
            # Numbers connected through /onboard join the configured ones before any worker starts.
            await merge_onboarded(settings, app[appkeys.SESSIONS], app[appkeys.CHANNEL_IDS])
            yield
        finally:
            # Also when start-up fails here: an engine left open keeps SQLite connections whose worker threads
            # outlive the event loop.
            await engine.dispose()

    return ctx


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    url = app[appkeys.SETTINGS].redis_url
    if not url:
        app[appkeys.REDIS] = None
        yield
        return
    client = aioredis.from_url(url)
    app[appkeys.REDIS] = client
    yield
    await client.aclose()


async def deps_ctx(app: web.Application) -> AsyncIterator[None]:
    """Graph client, Slack Web API client and throttle, shared by every worker and listener."""
    settings = app[appkeys.SETTINGS]
    graph = GraphClient(settings.meta.graph_url, settings.meta.api_version)
    slack_http = slack_session()
    slack = slack_client(settings.slack, slack_http)
    redis_client = app[appkeys.REDIS]
    throttle: Throttle = RedisThrottle(redis_client) if redis_client is not None else make_throttle(None)
    deps = Deps(settings=settings, sessions=app[appkeys.SESSIONS], graph=graph, slack=slack, throttle=throttle,
                metrics=app[appkeys.METRICS], channel_ids=app[appkeys.CHANNEL_IDS], slack_names=NameCache(),
                loop_health=app[appkeys.LOOP_HEALTH], wakes=app[appkeys.WAKES],
                reads=make_read_sessionmaker(app[appkeys.ENGINE]))
    # With Redis every process paces each Slack channel's allowance together (bot.slack.pace_redis).
    app[appkeys.PACER] = deps.pacer = make_pacer(redis_client)
    if settings.slack.many_workspaces:
        deps.installations = SealedInstallationStore(settings.slack.client_id, app[appkeys.ENGINE],
                                                     token_box(settings))
        deps.workspaces = InstalledWorkspaces(deps.installations, deps.sessions, slack,
                                              client_id=settings.slack.client_id,
                                              client_secret=settings.slack.client_secret)
    app[appkeys.DEPS] = deps
    yield
    await graph.aclose()
    await slack_http.close()


def background(name: str, start: Callable[[web.Application], asyncio.Task[None]]
               ) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context running one long-lived task, cancelled on shutdown."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = start(app)
        task.set_name(name)
        yield
        await stop_tasks(app, task)

    return ctx


async def heartbeat_ctx(app: web.Application) -> AsyncIterator[None]:
    """This process's row in `workers`, beaten every second: what the work it claims is bound to; and the
    pass that gives back, every second, what silent processes held."""
    heartbeat = Heartbeat(app[appkeys.SESSIONS], f"serve:{app[appkeys.SETTINGS].server.port}",
                          health=app[appkeys.LOOP_HEALTH], gate=app[appkeys.WRITE_GATE])
    await heartbeat.start()
    app[appkeys.HEARTBEAT] = heartbeat
    task = asyncio.create_task(heartbeat.run(), name="heartbeat")
    sweeper = asyncio.create_task(run_takeover(app[appkeys.SESSIONS], wakes=app[appkeys.WAKES],
                                               health=app[appkeys.LOOP_HEALTH],
                                               owner=lambda: heartbeat.worker_id,
                                               hands=app[appkeys.CLAIMS_IN_HAND]), name="takeover")
    yield
    await stop_tasks(app, sweeper, task)


def _start_ingest_writer(app: web.Application) -> asyncio.Task[None]:
    writer = IngestWriter(app[appkeys.ENGINE], wakes=app[appkeys.WAKES], health=app[appkeys.LOOP_HEALTH],
                          gate=app[appkeys.WRITE_GATE], statements=app[appkeys.METRICS].db_statements,
                          intake=app.get(appkeys.INTAKE_FIRST))
    app[appkeys.INGEST_WRITER] = writer
    return asyncio.create_task(writer.run())


def _start_webhook_worker(app: web.Application) -> asyncio.Task[None]:
    settings = app[appkeys.SETTINGS]
    heartbeat = app.get(appkeys.HEARTBEAT)
    worker = WebhookWorker(
        app[appkeys.SESSIONS],
        lambda: EventContext(settings=settings, channel_ids=app[appkeys.CHANNEL_IDS]),
        app[appkeys.METRICS],
        owner=(lambda: heartbeat.worker_id) if heartbeat is not None else None,
        batch=settings.worker.live_batch,
        bulk_batch=settings.worker.bulk_batch,
        health=app[appkeys.LOOP_HEALTH],
        gate=app[appkeys.WRITE_GATE],
        fair=settings.slack.many_workspaces,
        wakes=app[appkeys.WAKES],
        intake=app.get(appkeys.INTAKE_FIRST),
    )
    app[appkeys.WEBHOOK_WORKER] = worker
    app[appkeys.CLAIMS_IN_HAND]["webhook_logs"] = worker.hand
    return asyncio.create_task(worker.run())


def _start_auto_replies(app: web.Application) -> asyncio.Task[None]:
    heartbeat = app.get(appkeys.HEARTBEAT)
    sender = AutoReplies(app[appkeys.DEPS], owner=(lambda: heartbeat.worker_id) if heartbeat is not None else None)
    app[appkeys.AUTO_REPLIES] = sender
    return asyncio.create_task(sender.run())


def _start_retention(app: web.Application) -> asyncio.Task[None]:
    deps = app[appkeys.DEPS]
    worker = RetentionWorker(deps.sessions, deps.settings.retention, metrics=deps.metrics,
                             # Each thread is redacted with its own workspace's token.
                             resume=partial(privacy.resume, deps.sessions, deps.settings, deps.slack_for,
                                            idle=privacy.RESUME_AFTER, pacer=deps.pacer))
    return asyncio.create_task(worker.run())


def create_app(settings: Settings, *, run_migrations: bool = True, workers: bool = True, webhooks: bool = True,
               components: list[Component] | None = None) -> web.Application:
    """Build the application; workers=False leaves background processing to another process or a test.

    webhooks=False (a worker-only process) mounts no /webhooks/meta and runs no ingest writer."""
    refusals = RateLimitedLog()
    quiet_malformed_requests(refusals)
    app = web.Application(client_max_size=settings.server.max_body_bytes + 1024,
                          middlewares=[rejection_logger(refusals)])
    app[appkeys.SETTINGS] = settings
    app[appkeys.METRICS] = Metrics()
    app[appkeys.LOOP_HEALTH] = LoopHealth()
    app[appkeys.WAKES] = WakeHub()
    app[appkeys.WRITE_GATE] = WriteGate(pause=SQLITE_PAUSE if is_sqlite(settings.database_url) else 0.0)
    app[appkeys.HEALTH_CHECKS] = []
    app[appkeys.CLAIMS_IN_HAND] = {}
    if workers and webhooks:
        # One event loop acknowledges and applies deliveries: acks go first when it cannot do both.
        app[appkeys.INTAKE_FIRST] = IntakeFirst()
    app.cleanup_ctx.append(database_ctx(run_migrations))
    app.cleanup_ctx.append(redis_ctx)
    app.cleanup_ctx.append(deps_ctx)
    if workers:
        app.cleanup_ctx.append(heartbeat_ctx)
    if webhooks:
        app.cleanup_ctx.append(background("ingest-writer", _start_ingest_writer))
    if workers:
        app.cleanup_ctx.append(background("webhook-worker", _start_webhook_worker))
        app.cleanup_ctx.append(background("auto-replies", _start_auto_replies))
        app.cleanup_ctx.append(background("retention", _start_retention))
    if webhooks:
        app.router.add_get("/webhooks/meta", meta_webhook.handshake)
        app.router.add_post("/webhooks/meta", meta_webhook.receive)
    app.router.add_get("/healthz", healthz)
    serve_metrics = metrics_handler(app, refresh=CachedRefresh(refresh_throughput_gauge))
    where = exposure(settings.server)
    if where is Exposure.OWN_PORT:
        app.cleanup_ctx.append(metrics_site(serve_metrics))
    else:
        app.on_startup.append(announce)
    if where in (Exposure.TOKEN, Exposure.PUBLIC):
        app.router.add_get("/metrics", serve_metrics)
    for component in components or []:
        component(app)
    return app
