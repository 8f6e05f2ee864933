"""The App Home tab: published when a user opens it, and again when the figures change while they look.

`home_component` wires it: it adds an `app_home_opened` listener to the bolt app and runs the refresher.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from sqlalchemy import func, select

from bot.app.bolt import BOLT
from bot.app.factory import Component
from bot.app.shutdown import stop_tasks
from bot.core.loops import forever
from bot.core.workspace import DEFAULT_WORKSPACE, RequestScope, request_scope, scoped
from bot.deps import Deps
from bot.handlers import appkeys
from bot.ops.csat_figures import load_surveys, per_staff
from bot.ops.csat_home import Satisfaction
from bot.ops.home_inbox_view import MINE_ROWS, TAKE_ROWS
from bot.ops.home_view import CampaignLine, HomeData, manager_view, member_view, shown
from bot.ops.inbox_home import InboxState, read_inbox, unassigned
from bot.ops.insights import Waiting
from bot.ops.insights_store import figures_for
from bot.ops.sla import elapsed_by_channel, elapsed_for, target_for
from bot.slack.errors import slack_reason
from bot.slack.lookup import lookup
from bot.slack.names import UserNames
from bot.slack.permissions import MembershipUnknown, Permissions
from scheduler.campaigns.records import summaries
from storage.models import Campaign, ConversationEvent, Message, utcnow

log = logging.getLogger(__name__)

HOME_EVENT = "app_home_opened"
REFRESH_INTERVAL = 5.0  # seconds between looks for new messages; a viewer's tab is republished at most this often
VIEWER_TTL = 3600.0  # a user who opened the tab this long ago no longer gets refreshes
ACTIVE_CAMPAIGNS = ("running", "scheduled", "paused")


def period_starts(now: datetime, tz: str) -> tuple[datetime, datetime]:
    """Local midnight today and on this week's Monday, in UTC."""
    local = now.astimezone(ZoneInfo(tz))
    today = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return today, today - timedelta(days=today.weekday())


class HomePublisher:
    """Builds and publishes each user's Home tab; remembers who looks at it, for refreshes."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.names = UserNames(deps.slack)
        self.permissions = Permissions(deps.settings.slack, deps.slack)
        self._links: dict[tuple[str, str], str] = {}
        # (workspace, user id) -> when they last opened the tab (monotonic); each sees their workspace only.
        self.viewers: dict[tuple[str, str], float] = {}

    async def on_opened(self, event: dict[str, Any]) -> None:
        """bolt listener for app_home_opened (the Messages tab fires it too, and is left alone)."""
        user = event.get("user")
        if event.get("tab", "home") != "home" or not isinstance(user, str):
            return
        scope = request_scope()
        team = scope.workspace if scope is not None else DEFAULT_WORKSPACE
        self.viewers[(team, user)] = time.monotonic()
        await self.publish(user, team=team)

    async def publish(self, user: str, shared: dict[bool, HomeData] | None = None, *,
                      team: str = DEFAULT_WORKSPACE) -> bool:
        """Publish the user's Home view of their workspace; False when Slack refused it (logged) or the
        workspace has no installation.

        shared: figures already computed in this round for this workspace (by manager or not), reused."""
        client = await self.deps.slack_for(team)
        if client is None:
            return False
        token = client.token if self.deps.many_workspaces else None
        with scoped(RequestScope(team, token)):  # names, permissions and links asked with its token
            view = await self.view_for(user, shared=shared, team=team)
            try:
                await client.views_publish(user_id=user, view=view)
            except SlackApiError as exc:
                log.warning("home tab for %s not published: %s", user, slack_reason(exc))
                return False
        return True

    async def view_for(self, user: str, now: datetime | None = None,
                       shared: dict[bool, HomeData] | None = None, *,
                       team: str = DEFAULT_WORKSPACE) -> dict[str, Any]:
        try:
            manager = await self.permissions.is_manager(user)
        except MembershipUnknown:  # the tab is still published, with what every member sees
            manager = False
        data = shared.get(manager) if shared is not None else None
        if data is None:
            data = await self.data(now or utcnow(), manager=manager, team=team)
            if shared is not None:
                shared[manager] = data
        return manager_view(data, user) if manager else member_view(user, data)

    async def data(self, now: datetime, *, manager: bool, team: str = DEFAULT_WORKSPACE) -> HomeData:
        settings = self.deps.settings
        today, week = period_starts(now, settings.timezone)
        elapsed = elapsed_for(settings)
        # Many workspaces: only this workspace's numbers (single-workspace mode: every number).
        numbers = [c for c in settings.channels if settings.workspace_of(c) == team]
        names_of = [c.name for c in numbers] if self.deps.many_workspaces else None
        today_figures, week_figures = await figures_for(self.deps.sessions, [today, week], now=now, elapsed=elapsed,
                                                        elapsed_of=elapsed_by_channel(settings),
                                                        channels=names_of)
        inbox = await self.inbox(week, names_of, now)
        owners = sorted(set(inbox.owners.values()) | {r.owner for r in inbox.resolves if r.owner}) \
            if inbox is not None and manager else []
        sat = await self.satisfaction(now, names_of)
        surveyed = sorted({s.staff for s in sat.month if s.staff}) if sat is not None and manager else []
        names = await self.names.of([*week_figures.replies, *owners, *surveyed])
        listed = self.inbox_listed(inbox, today_figures.waiting)
        if not manager:
            return HomeData(now, settings.timezone, today_figures, week_figures, [], names=names,
                            links=await self.links(listed), note_prefixes=settings.slack.note_prefixes,
                            inbox=inbox, today_start=today, satisfaction=sat)
        limits = {t.channel: t.limit for c in numbers if (t := target_for(settings, c)) is not None}
        return HomeData(now, settings.timezone, today_figures, week_figures, [c.name for c in numbers],
                        campaigns=await self.campaigns(), names=names,
                        links=await self.links([*listed, *shown(today_figures)]), limits=limits,
                        note_prefixes=settings.slack.note_prefixes, inbox=inbox, today_start=today,
                        satisfaction=sat)

    async def satisfaction(self, now: datetime, channels: Sequence[str] | None) -> Satisfaction | None:
        """The surveys of the last 7 and 30 days per staff member; None when they cannot be read (a side failure:
        the tab goes out without them)."""
        try:
            month = await load_surveys(self.deps.sessions, since=now - timedelta(days=30), until=now,
                                       channels=channels)
        except Exception:
            log.exception("home tab: the satisfaction surveys could not be read; published without them")
            return None
        week = [s for s in month if s.sent_at >= now - timedelta(days=7)]
        return Satisfaction(per_staff(week), per_staff(month))

    async def inbox(self, week: datetime, channels: Sequence[str] | None, now: datetime) -> InboxState | None:
        """The workspace's inbox; None when it cannot be read (a side failure: the tab goes out without it)."""
        try:
            return await read_inbox(self.deps.sessions, week=week, channels=channels, now=now)
        except Exception:
            log.exception("home tab: the inbox could not be read; published without it")
            return None

    @staticmethod
    def inbox_listed(inbox: InboxState | None, waiting: Sequence[Waiting]) -> list[Waiting]:
        """The waiting conversations an inbox part lists (each owner's first, the first unassigned): they need a
        thread link."""
        if inbox is None:
            return []
        per_owner: dict[str, int] = {}
        out = unassigned(inbox, waiting)[:TAKE_ROWS]
        for w in waiting:
            owner = inbox.owners.get(w.conversation_id)
            if owner is not None and per_owner.get(owner, 0) < MINE_ROWS:
                per_owner[owner] = per_owner.get(owner, 0) + 1
                out.append(w)
        return out

    async def campaigns(self) -> list[CampaignLine]:
        out = []
        for c in await summaries(self.deps.sessions, limit=50):
            if c.status not in ACTIVE_CAMPAIGNS:
                continue
            run = c.runs[0] if c.runs else None
            counts = run.counts if run else {}
            total = sum(counts.values()) or c.audience
            left = counts.get("pending", 0) + counts.get("sending", 0)
            done = total - left if run else 0
            out.append(CampaignLine(c.name, c.channel, c.status, done, total, c.next_fire))
        return out

    async def links(self, waiting: Sequence[Waiting]) -> dict[int, str]:
        """Thread permalinks (asked once each, then remembered: chat.getPermalink is rate-limited)."""
        out: dict[int, str] = {}
        for w in waiting:
            if w.thread is None:
                continue
            link = self._links.get(w.thread)
            if link is None:
                resp = await lookup(self.deps.slack.chat_getPermalink(channel=w.thread[0], message_ts=w.thread[1]),
                                    f"the link to thread {w.thread[1]}")
                if resp is None:
                    break  # Slack is not answering: the tab goes out now, without the links not yet known
                link = str(resp.get("permalink") or "")
                if link:
                    self._links[w.thread] = link
            if link:
                out[w.conversation_id] = link
        return out

    async def refresh_forever(self, interval: float = REFRESH_INTERVAL) -> None:
        """Republish the tabs of recent viewers when a message or a campaign has changed since last look."""
        marker: tuple[Any, ...] | None = None

        async def turn() -> None:
            nonlocal marker
            marker = await self.refresh_if_changed(marker)

        await asyncio.sleep(interval)  # nobody has looked at a tab yet
        # A side job: its failures are logged at a bounded rate, but never make the process unhealthy.
        await forever(turn, interval, doing="refreshing home tabs",
                      monitor=self.deps.loop_health.loop("home tab refresh", log, reported=False))

    async def refresh_if_changed(self, marker: tuple[Any, ...] | None) -> tuple[Any, ...]:
        current = await self.change_marker()
        if current != marker:
            cutoff = time.monotonic() - VIEWER_TTL
            shared: dict[str, dict[bool, HomeData]] = {}
            for (team, user), seen in list(self.viewers.items()):
                if seen < cutoff:
                    del self.viewers[(team, user)]
                else:
                    await self.publish(user, shared.setdefault(team, {}), team=team)
        return current

    async def change_marker(self) -> tuple[Any, ...]:
        async with self.deps.sessions() as s:
            # Any new message (a customer waiting, a reply) and any newly failed one change what the tab shows.
            newest = await s.scalar(select(func.max(Message.id)))
            failed = await s.scalar(select(func.count()).select_from(Message).where(Message.status == "failed"))
            campaigns = (await s.execute(select(func.max(Campaign.updated_at), func.count(Campaign.id)))).one()
            inbox = await s.scalar(select(func.max(ConversationEvent.id)))  # a take, assign, resolve…
        # The minute is part of the marker: waiting times grow even when nothing is written.
        return (newest, failed, *campaigns, inbox, self.deps.settings.channels, int(time.monotonic() // 60))


HOME = web.AppKey("home_publisher", HomePublisher)


def register(bolt: AsyncApp, publisher: HomePublisher) -> None:
    bolt.event(HOME_EVENT)(publisher.on_opened)


def make_home_component(refresh_interval: float = REFRESH_INTERVAL) -> Component:
    """Mount after the Slack component: it needs the bolt app that component builds."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        bolt = app.get(BOLT)
        if bolt is None:
            log.warning("no Slack app in this process: the Home tab is not served here")
            yield
            return
        publisher = HomePublisher(app[appkeys.DEPS])
        app[HOME] = publisher
        register(bolt, publisher)
        task = asyncio.create_task(publisher.refresh_forever(refresh_interval), name="home-refresh")
        yield
        await stop_tasks(app, task)

    def component(app: web.Application) -> None:
        app.cleanup_ctx.append(ctx)

    return component


home_component = make_home_component()
