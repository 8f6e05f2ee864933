"""A campaign run's one live Slack message: progress bar, counts, rate, ETA, spend, then the final report.

Senders never post to Slack themselves: they owe a CampaignProgress item to the Slack outbox (in the run's
thread, so updates stay in order) and the outbox handler renders the run's state as it is at
delivery time. The first delivery posts the message and stores its ts on the run; later ones edit it. So
a backlog of owed updates while Slack is slow costs a few edits showing the latest numbers, never a flood.
Campaign sends are not mirrored into conversation threads: a customer's reply is attributed to the
campaign through `campaign_recipients.wamid`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.config import Settings
from bot.core.workspace import DEFAULT_WORKSPACE
from bot.slack import limits
from bot.slack.outbox import ItemContext
from bot.slack.outbox_handlers import Kinds, handle, kinds
from bot.slack.render import Post, escape
from scheduler.campaigns import estimate
from scheduler.campaigns.records import RecipientStatus, RunStatus, run_with_campaign
from storage.models import CampaignRecipient, CampaignRun, utcnow
from storage.outbox_kinds import CampaignProgress
from storage.outbox_kinds import enqueue as enqueue_slack
from storage.progress_refresh import progress_dedupe_key
from storage.workspaces import run_teams

KIND = CampaignProgress.KIND
RATE_WINDOW = timedelta(seconds=10)
BAR_WIDTH = 20
NAME_SHOWN = 200  # the whole name is in `/campaign show`; names typed in Slack are limited to this


@dataclass(frozen=True)
class Snapshot:
    """A run's state for display."""

    campaign_id: int
    run_id: int
    name: str
    template: str
    channel: str
    slack_channel: str | None
    run_status: str
    started_at: datetime
    finished_at: datetime | None
    total: int
    pending: int
    sending: int
    accepted: int  # handed to Meta (has a wamid), whatever happened next
    delivered: int  # delivered or read
    read: int
    failed: int
    skipped: int
    unknown: int
    rate: float  # sends per second over the last RATE_WINDOW
    mps: int
    spend: estimate.Cost | None

    @property
    def remaining(self) -> int:
        return self.pending + self.sending

    @property
    def done(self) -> int:
        return self.total - self.remaining


def bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    """A text progress bar, e.g. ████████░░░░ 40%."""
    frac = 1.0 if total <= 0 else min(1.0, done / total)
    filled = round(frac * width)
    return "█" * filled + "░" * (width - filled) + f" {int(frac * 100)}%"


def eta_seconds(s: Snapshot) -> float:
    """Time left at the current rate (or at the cap before any rate is known)."""
    rate = s.rate if s.rate > 0 else s.mps / (1 + estimate.CAMPAIGN_MARGIN)
    return s.remaining / rate if rate > 0 else 0.0


_TITLES = {
    RunStatus.RUNNING.value: "sending",
    RunStatus.PAUSED.value: "paused",
    RunStatus.CANCELLED.value: "cancelled",
    RunStatus.DONE.value: "finished",
}


def render(s: Snapshot, now: datetime, pause_reason: str | None = None) -> dict[str, Any]:
    """The message as {"text", "blocks"} (pure)."""
    state = _TITLES.get(s.run_status, s.run_status)
    head = (
        f":mega: *Campaign #{s.campaign_id} {escape(limits.clip(s.name, NAME_SHOWN))}* "
        f"({escape(s.template)} from {escape(s.channel)}): {state}"
    )
    counts = (
        f"Sent *{s.accepted:,}* · Delivered *{s.delivered:,}* · Read *{s.read:,}* · "
        f"Failed *{s.failed:,}* · Skipped *{s.skipped:,}*" + (f" · Unknown *{s.unknown:,}*" if s.unknown else "")
    )
    lines = [head, f"`{bar(s.done, s.total)}`  {s.done:,} of {s.total:,}", counts]
    context: list[str] = []
    finished = s.run_status in (RunStatus.DONE.value, RunStatus.CANCELLED.value)
    if finished:
        took = ((s.finished_at or now) - s.started_at).total_seconds()
        context.append(f"Took {estimate.format_duration(took)}")
        if s.unknown:
            context.append(f"{s.unknown} in flight during a restart: not re-sent, outcome unknown")
    else:
        if s.run_status == RunStatus.RUNNING.value:
            context.append(f"Rate {s.rate:.1f}/s (cap {s.mps}/s)")
            context.append(f"ETA {estimate.format_duration(eta_seconds(s))}")
        if pause_reason and s.run_status == RunStatus.PAUSED.value:
            context.append(f"Paused: {escape(pause_reason)}")
    if s.spend is not None and (s.spend.amount or s.spend.unpriced):
        context.append(f"Spend {'' if finished else 'so far '}{s.spend.text()}")
    text = "\n".join(lines)
    blocks: list[dict[str, Any]] = [limits.section(text)]
    if context:
        blocks.append(limits.context(" · ".join(context)))
    summary = limits.summary(f"Campaign #{s.campaign_id} {escape(limits.clip(s.name, NAME_SHOWN))}: "
                             f"{s.done:,} of {s.total:,} {state}")
    return {"text": summary, "blocks": blocks}


async def snapshot(
    session: AsyncSession, run_id: int, settings: Settings, now: datetime | None = None
) -> tuple[Snapshot, str | None] | None:
    """The run's state, and the campaign's pause reason; None when the run does not exist."""
    now = now or utcnow()
    row = await run_with_campaign(session, run_id)
    if row is None:
        return None
    run, camp, channel = row
    r = CampaignRecipient
    counts: dict[str, int] = {}
    accepted = 0
    for status, has_wamid, n in (
        await session.execute(
            select(r.status, r.wamid.is_not(None), func.count())
            .where(r.run_id == run_id)
            .group_by(r.status, r.wamid.is_not(None))
        )
    ).all():
        counts[str(status)] = counts.get(str(status), 0) + int(n)
        if has_wamid:
            accepted += int(n)
    recent = int(
        await session.scalar(
            select(func.count()).select_from(r).where(r.run_id == run_id, r.sent_at >= now - RATE_WINDOW)
        )
        or 0
    )
    prefix = func.substr(r.wa_id, 1, 4)
    billed: dict[tuple[str, str], int] = {}
    for p, category, n in (
        await session.execute(
            select(prefix, r.pricing_category, func.count())
            .where(r.run_id == run_id, r.billable.is_(True))
            .group_by(prefix, r.pricing_category)
        )
    ).all():
        key = (estimate.region_of_prefix(str(p)), str(category or "marketing").lower())
        billed[key] = billed.get(key, 0) + int(n)
    spend = estimate.cost(settings.pricing, billed) if settings.pricing.rates else None
    conf = settings.channel_by_phone_number_id(channel.phone_number_id)
    s = RecipientStatus
    snap = Snapshot(
        campaign_id=camp.id,
        run_id=run.id,
        name=camp.name,
        template=camp.template_name,
        channel=channel.name,
        slack_channel=run.slack_channel or camp.slack_channel or channel.slack_channel or None,
        run_status=run.status,
        started_at=run.started_at,
        finished_at=run.finished_at,
        total=sum(counts.values()),
        pending=counts.get(s.PENDING, 0),
        sending=counts.get(s.SENDING, 0),
        accepted=accepted,
        delivered=counts.get(s.DELIVERED, 0) + counts.get(s.READ, 0),
        read=counts.get(s.READ, 0),
        failed=counts.get(s.FAILED, 0),
        skipped=counts.get(s.SKIPPED, 0),
        unknown=counts.get(s.UNKNOWN, 0),
        rate=recent / RATE_WINDOW.total_seconds(),
        mps=conf.mps if conf else channel.mps,
        spend=spend,
    )
    return snap, camp.pause_reason


async def enqueue(session: AsyncSession, run_id: int, key: str) -> bool:
    """Owe Slack a refresh of the run's progress message; `key` dedupes (e.g. a time bucket, "final")."""
    teams = await run_teams(session, [run_id])
    return await enqueue_slack(session, CampaignProgress(run_id), dedupe_key=progress_dedupe_key(run_id, key),
                               slack_team=teams.get(run_id, DEFAULT_WORKSPACE))


async def deliver(ctx: ItemContext, item: CampaignProgress) -> None:
    """Outbox handler: post the progress message the first time, edit it afterwards."""
    run_id = item.run_id
    deps = ctx.deps
    async with deps.sessions() as session:
        found = await snapshot(session, run_id, deps.settings)
        progress_ts = await session.scalar(select(CampaignRun.slack_progress_ts).where(CampaignRun.id == run_id))
    if found is None:
        return
    snap, reason = found
    if not snap.slack_channel:
        return
    message = render(snap, utcnow(), reason)
    post = Post(text=message["text"], blocks=message["blocks"])
    if progress_ts is None:
        ts = await ctx.post(snap.slack_channel, post, part="progress")
        async with deps.sessions() as session, session.begin():
            await session.execute(
                update(CampaignRun)
                .where(CampaignRun.id == run_id, CampaignRun.slack_progress_ts.is_(None))
                .values(slack_progress_ts=ts)
            )
    else:
        await ctx.update_message(snap.slack_channel, progress_ts, post)


KINDS: Kinds = kinds(handle(CampaignProgress, deliver))
"""The `campaign_progress` kind, handed to the Slack outbox worker by the campaign component."""
