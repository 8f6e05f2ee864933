"""Campaigns inside `serve`: the scheduler (fires campaigns) and the runner (sends them), as cleanup contexts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app.health import cached
from bot.app.shutdown import stop_tasks
from bot.app.slack_component import add_outbox_kinds
from bot.core.loops import CAMPAIGNS
from bot.handlers import appkeys
from bot.meta.sender import TemplateSender
from scheduler.campaigns import progress, unknown_notice
from scheduler.campaigns.jobs import CampaignScheduler
from scheduler.campaigns.recovery import run_recovery
from scheduler.campaigns.runner import CampaignRunner, campaign_throttle
from scheduler.campaigns.stalls import stalled_runs
from storage.models import utcnow

log = logging.getLogger(__name__)

CAMPAIGN_SCHEDULER = web.AppKey("campaign_scheduler", CampaignScheduler)
CAMPAIGN_RUNNER = web.AppKey("campaign_runner", CampaignRunner)


async def _campaigns_ctx(app: web.Application) -> AsyncIterator[None]:
    deps = app[appkeys.DEPS]
    throttle = campaign_throttle(app[appkeys.REDIS], deps.throttle)
    heartbeat = app.get(appkeys.HEARTBEAT)
    sender = TemplateSender(deps.graph.base_url, deps.graph.api_version)
    runner = CampaignRunner(deps.sessions, deps.graph, throttle, deps.settings, metrics=deps.metrics, sender=sender,
                            owner=(lambda: heartbeat.worker_id) if heartbeat is not None else None,
                            guard=heartbeat.guard if heartbeat is not None else None, health=deps.loop_health,
                            wakes=deps.wakes)
    scheduler = CampaignScheduler(deps.sessions, on_fire=lambda _run_id: deps.wakes.wake(CAMPAIGNS),
                                  health=deps.loop_health)
    app[CAMPAIGN_RUNNER] = runner
    app[CAMPAIGN_SCHEDULER] = scheduler
    task = asyncio.create_task(runner.run(), name="campaign-runner")
    recovery = asyncio.create_task(run_recovery(deps.sessions, deps.settings, wakes=deps.wakes,
                                                health=deps.loop_health), name="campaign-recovery")
    app[appkeys.HEALTH_CHECKS].append(campaign_health_check(deps.sessions))
    await scheduler.start()
    yield
    await scheduler.stop()
    await stop_tasks(app, task, recovery)
    await sender.aclose()


def campaign_health_check(sessions: async_sessionmaker[AsyncSession], cache_seconds: float = 5.0
                          ) -> Callable[[], Awaitable[dict[str, str]]]:
    """The `/healthz` check of a process that sends campaigns: running runs that stopped moving."""

    async def campaign_runs() -> dict[str, str]:
        async with sessions() as session:
            return await stalled_runs(session, utcnow())

    return cached(campaign_runs, cache_seconds)


def campaign_component(app: web.Application) -> None:
    """Mount the campaign scheduler and runner on a `serve` application."""
    # The outbox worker of this process posts the progress messages and the unknown-recipient notices.
    add_outbox_kinds(app, {**progress.KINDS, **unknown_notice.KINDS})
    app.cleanup_ctx.append(_campaigns_ctx)
