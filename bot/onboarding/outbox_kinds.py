"""Slack outbox kinds of onboarding, as the mapping `KINDS` the Slack component hands to the outbox.

- HistoryPost: a manager asked for the earlier history in the thread
- HistoryProgress: the one alerts-channel message of a history import, posted then updated
- OnboardingNotice: how an onboarding went, for the alerts channel
"""

from __future__ import annotations

import logging

from sqlalchemy import update

from bot.onboarding.history import post_history_intro
from bot.onboarding.syncs import progress_text, view_of
from bot.slack import limits, render
from bot.slack.outbox import ItemContext
from bot.slack.outbox_handlers import Kinds, handle, kinds
from storage.models import Channel, SmbSync
from storage.outbox_kinds import HistoryPost, HistoryProgress, OnboardingNotice

log = logging.getLogger(__name__)


def notice_channel(ctx: ItemContext, fallback: str | None) -> str | None:
    """The alerts channel, else the Slack channel the number is bridged into."""
    if ctx.deps.many_workspaces:  # the deployment's alerts channel is in no business's workspace
        return fallback or None
    return ctx.deps.settings.slack.alerts_channel or fallback or None


async def post_history(ctx: ItemContext, item: HistoryPost) -> None:
    """Summary and transcript of the imported history, in the conversation's thread."""
    conversation_id = item.conversation_id
    thread = await ctx.thread_for(conversation_id)  # a new thread gets the same parts: nothing doubles
    await post_history_intro(ctx, conversation_id, thread)


async def history_progress(ctx: ItemContext, item: HistoryProgress) -> None:
    """Post the import's progress message once, then keep it up to date."""
    sync_id = item.sync_id
    async with ctx.deps.sessions() as s:
        sync = await s.get(SmbSync, sync_id)
        channel_row = await s.get(Channel, sync.channel_id) if sync is not None else None
    if sync is None or channel_row is None:
        return
    channel = sync.slack_channel if sync.slack_ts else notice_channel(ctx, channel_row.slack_channel)
    if not channel:
        log.info("history progress not posted: no alerts channel and no Slack channel for %s", channel_row.name)
        return
    name = channel_row.name + (f" ({channel_row.display_phone_number})" if channel_row.display_phone_number else "")
    text = progress_text(view_of(sync, render.escape(name)))
    post = render.Post(text=limits.summary(text), blocks=limits.sections(text) or [limits.section(" ")])
    if sync.slack_ts:
        await ctx.update_message(channel, sync.slack_ts, post)
        return
    ts = await ctx.post(channel, post, part="0")
    async with ctx.deps.sessions() as s, s.begin():
        await s.execute(update(SmbSync).where(SmbSync.id == sync_id, SmbSync.slack_ts.is_(None))
                        .values(slack_channel=channel, slack_ts=ts))


async def onboarding_notice(ctx: ItemContext, notice: OnboardingNotice) -> None:
    """How an onboarding went (success or each failed step in plain words)."""
    channel = notice_channel(ctx, notice.slack_channel)
    if not channel:
        log.info("onboarding notice not posted (no Slack channel): %s", notice.text)
        return
    text = str(notice.text or "")
    for i, blocks in enumerate(limits.pack_blocks(limits.sections(text) or [limits.section(" ")])):
        await ctx.post(channel, render.Post(text=limits.summary(text), blocks=blocks), part=str(i))


KINDS: Kinds = kinds(handle(HistoryPost, post_history), handle(HistoryProgress, history_progress),
                     handle(OnboardingNotice, onboarding_notice))
