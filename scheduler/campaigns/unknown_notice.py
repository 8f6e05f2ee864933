"""`unknown` recipients shown to the campaign's manager, with a "Resend N" button; or resent automatically.

One pass (`check_unknowns`, run every few seconds by every process) finds runs whose `unknown` recipients
have been quiet for `campaigns.unknown_quiet` seconds. With `campaigns.resend_unknown_after` set and that
much time gone, they are offered for sending again at once; otherwise the run's channel gets one notice per
set of unknowns (the outbox's dedupe key names the newest of them), whose button names the same set, so a
second click, or a click on an old notice, sends nobody again.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.config import Settings
from bot.core.workspace import DEFAULT_WORKSPACE
from bot.slack.outbox import ItemContext
from bot.slack.outbox_handlers import Kinds, handle, kinds
from bot.slack.render import Post, escape
from scheduler.campaigns.unknown_store import UnknownRun, quiet_unknowns, resend_unknown
from scheduler.campaigns.unknowns import quiet_enough
from storage.models import utcnow
from storage.outbox_kinds import CampaignUnknown, enqueue
from storage.workspaces import run_teams

KIND = CampaignUnknown.KIND
RESEND_ACTION = "campaign_resend_unknown"


def button_value(campaign_id: int, newest_id: int) -> str:
    return f"{campaign_id}:{newest_id}"


def parse_button_value(value: str) -> tuple[int, int] | None:
    """(campaign id, newest recipient id) from a button's value; None for anything malformed."""
    left, sep, right = value.partition(":")
    if not sep or not left.isdigit() or not right.isdigit() or len(value) > 40:
        return None
    return int(left), int(right)


def render_notice(run: UnknownRun) -> Post:
    """The notice with its button (pure)."""
    who = f"<@{run.created_by}> " if run.created_by and run.created_by.isalnum() else ""
    n = run.count
    plural = "s" if n != 1 else ""
    text = (f":grey_question: {who}Campaign #{run.campaign_id} {escape(run.campaign_name)}: {n} recipient{plural} "
            f"may not have received the message. Meta reported nothing on them, so sending again is "
            f"unlikely to reach anyone twice.")
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {"type": "actions", "elements": [{
            "type": "button", "action_id": RESEND_ACTION, "style": "primary",
            "text": {"type": "plain_text", "text": f"Resend {n}"},
            "value": button_value(run.campaign_id, run.newest_id),
            "confirm": {"title": {"type": "plain_text", "text": "Send again?"},
                        "text": {"type": "plain_text", "text": f"Send the template again to {n} recipient{plural}."},
                        "confirm": {"type": "plain_text", "text": f"Resend {n}"},
                        "deny": {"type": "plain_text", "text": "Cancel"}},
        }]},
    ]
    return Post(text=text, blocks=blocks)


def resent_text(campaign_id: int, n: int, user: str) -> str:
    if n == 0:
        return f":white_check_mark: Campaign #{campaign_id}: nothing left to send again (already done)."
    plural = "s" if n != 1 else ""
    return f":arrows_counterclockwise: Campaign #{campaign_id}: <@{user}> sent {n} unknown recipient{plural} again."


async def check_unknowns(session: AsyncSession, settings: Settings, now: datetime) -> tuple[int, int]:
    """One pass: (notices owed, recipients resent automatically)."""
    conf = settings.campaigns
    quiet = timedelta(seconds=conf.unknown_quiet)
    auto = timedelta(seconds=conf.resend_unknown_after) if conf.resend_unknown_after is not None else None
    noticed = resent = 0
    runs = await quiet_unknowns(session, now, min(quiet, auto) if auto is not None else quiet)
    teams = await run_teams(session, [run.run_id for run in runs])
    for run in runs:
        if auto is not None and quiet_enough(run.last_attempt, now, auto):
            resent += await resend_unknown(session, run.campaign_id, up_to=run.newest_id)
            continue
        if not quiet_enough(run.last_attempt, now, quiet):
            continue
        if not run.slack_channel:
            continue
        notice = CampaignUnknown(run_id=run.run_id, channel=run.slack_channel, campaign_id=run.campaign_id,
                                 name=run.campaign_name, count=run.count, newest_id=run.newest_id,
                                 created_by=run.created_by)
        if await enqueue(session, notice, dedupe_key=f"{KIND}:{run.run_id}:{run.newest_id}",
                         slack_team=teams.get(run.run_id, DEFAULT_WORKSPACE)):
            noticed += 1
    return noticed, resent


async def deliver(ctx: ItemContext, notice: CampaignUnknown) -> None:
    """Outbox handler: post the notice in the campaign's channel."""
    run = UnknownRun(notice.run_id, notice.campaign_id, notice.name, notice.channel, notice.created_by,
                     notice.count, notice.newest_id, utcnow())
    await ctx.post(notice.channel, render_notice(run), part="unknown")


KINDS: Kinds = kinds(handle(CampaignUnknown, deliver))
"""The outbox kind this module delivers (added by the campaign component)."""
