"""Campaigns inside `serve`: the scheduler (fires campaigns) and the runner (sends them), as cleanup contexts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from bot import appkeys
from scheduler.jobs import CampaignScheduler
from scheduler.runner import CampaignRunner, campaign_throttle

log = logging.getLogger(__name__)

CAMPAIGN_SCHEDULER = web.AppKey("campaign_scheduler", CampaignScheduler)
CAMPAIGN_RUNNER = web.AppKey("campaign_runner", CampaignRunner)


def _add_progress_kind(app: web.Application) -> None:
    from scheduler import progress

    try:
        from bot.slack.component import add_outbox_kinds
    except ImportError:  # a build without the Slack outbox: progress rows wait in the table
        log.warning("Slack outbox not available: campaign progress messages will not be posted")
        return
    add_outbox_kinds(app, progress.KINDS)


async def _campaigns_ctx(app: web.Application) -> AsyncIterator[None]:
    deps = app[appkeys.DEPS]
    throttle = campaign_throttle(app[appkeys.REDIS], deps.throttle)
    runner = CampaignRunner(deps.sessions, deps.graph, throttle, deps.settings, metrics=deps.metrics)
    scheduler = CampaignScheduler(deps.sessions, on_fire=lambda _run_id: runner.wake())
    app[CAMPAIGN_RUNNER] = runner
    app[CAMPAIGN_SCHEDULER] = scheduler
    task = asyncio.create_task(runner.run(), name="campaign-runner")
    await scheduler.start()
    yield
    await scheduler.stop()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def campaign_component(app: web.Application) -> None:
    """Mount the campaign scheduler and runner on a `serve` application."""
    _add_progress_kind(app)  # before any outbox worker starts, so queued progress rows find their handler
    app.cleanup_ctx.append(_campaigns_ctx)
