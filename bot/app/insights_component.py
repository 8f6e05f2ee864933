"""Every half minute: bring back snoozed conversations whose time came, refresh the first-response histogram
and queue reminders for overdue waits."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app.factory import Component
from bot.app.shutdown import stop_tasks
from bot.bridge.inbox import wake_snoozed
from bot.core.config import Settings
from bot.core.loop_health import LoopHealth
from bot.core.loops import SLACK_OUTBOX, WakeHub, forever, monitor_of
from bot.core.response_metrics import FirstResponseHistogram
from bot.handlers import appkeys
from bot.ops.insights_store import period_figures
from bot.ops.nudges import nudges
from bot.ops.sla import elapsed_by_channel, elapsed_for, target_for
from storage.models import utcnow
from storage.outbox_kinds import Note, enqueue

log = logging.getLogger(__name__)

INTERVAL = 30.0
HISTOGRAM_SPAN = timedelta(hours=24)


class InsightsWorker:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession],
                 histogram: FirstResponseHistogram, wakes: WakeHub | None = None) -> None:
        self.settings = settings
        self.sessions = sessions
        self.histogram = histogram
        self.wakes = wakes  # the outbox is woken for the reminders queued

    async def run_once(self, now: datetime | None = None) -> int:
        """Bring back snoozed conversations whose time came, refresh the histogram, queue what reminders are
        owed; returns how many reminders and snooze notes were new."""
        now = now or utcnow()
        async with self.sessions() as s, s.begin():
            woken = await wake_snoozed(s, now)  # each once, whichever process looks first
        if woken and self.wakes is not None:
            self.wakes.wake(SLACK_OUTBOX)
        figures = await period_figures(self.sessions, since=now - HISTOGRAM_SPAN, now=now,
                                       elapsed=elapsed_for(self.settings),
                                       elapsed_of=elapsed_by_channel(self.settings))
        self.histogram.update(figures.first_responses)
        targets = {t.channel: t for c in self.settings.channels if (t := target_for(self.settings, c)) is not None}
        owed = nudges(figures.waiting, targets, now)
        if not owed:
            return woken
        queued = 0
        async with self.sessions() as s, s.begin():
            for n in owed:
                queued += await enqueue(s, Note(n.conversation_id, n.text, mrkdwn=True), dedupe_key=n.key)
        if queued and self.wakes is not None:
            self.wakes.wake(SLACK_OUTBOX)
        return queued + woken

    async def run(self, interval: float = INTERVAL, health: LoopHealth | None = None) -> None:
        async def turn() -> None:
            await self.run_once()

        # A side job: its failures are logged, but never make the process unhealthy.
        await forever(turn, interval, monitor=monitor_of(health, "insights", log, reported=False),
                      doing="insights round")


INSIGHTS = web.AppKey("insights_worker", InsightsWorker)


def make_insights_component(interval: float | None = INTERVAL) -> Component:
    """Histogram for /metrics in every process; reminders are deduplicated, so every process may queue them.

    interval=None registers the worker (app[INSIGHTS]) without running its loop."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        histogram = FirstResponseHistogram()
        app[appkeys.METRICS].registry.register(histogram)

        worker = InsightsWorker(app[appkeys.SETTINGS], app[appkeys.SESSIONS], histogram, app[appkeys.WAKES])
        app[INSIGHTS] = worker
        if interval is None:
            yield
            return
        task = asyncio.create_task(worker.run(interval, app[appkeys.LOOP_HEALTH]), name="insights")
        yield
        await stop_tasks(app, task)

    def component(app: web.Application) -> None:
        app.cleanup_ctx.append(ctx)

    return component


insights_component = make_insights_component()
