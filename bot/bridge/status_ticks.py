"""A mirrored message's status ticks: which states it reached, which were superseded, which to add now."""

from __future__ import annotations

from sqlalchemy import select

from bot.slack import status_marks
from bot.slack.outbox import ItemContext
from storage.models import Message, SlackOutbox
from storage.status_fold import STATUS_RANK


def statuses_seen(msg: Message) -> list[str]:
    """The message's states in their own order (reports of one second, or late ones, come in any order)."""
    seen = [str(h.get("status")) for h in msg.status_history or []]
    if msg.status and msg.status not in seen:
        seen.append(msg.status)
    return sorted(seen, key=lambda st: STATUS_RANK.get(st, 0))


async def skipped_statuses(ctx: ItemContext, wamid: str | None, statuses: list[str]) -> list[str]:
    """Which of these statuses' outbox items were skipped as superseded (in the order given)."""
    if not wamid or not statuses:
        return []
    keys = {status_marks.status_dedupe_key(wamid, st): st for st in statuses}
    async with ctx.deps.sessions() as s:
        rows = (await s.execute(select(SlackOutbox.dedupe_key, SlackOutbox.result).where(
            SlackOutbox.dedupe_key.in_(list(keys)), SlackOutbox.done_at.is_not(None)))).all()
    skipped = {keys[k] for k, result in rows if (result or {}).get("skipped")}
    return [st for st in statuses if st in skipped]


async def status_reactions(ctx: ItemContext, channel: str, ts: str, msg: Message) -> None:
    """The reactions of statuses reached before the message was posted (the ticks accumulate, like
    WhatsApp's); statuses whose own outbox items are still to run add theirs themselves."""
    seen = statuses_seen(msg)
    keys = {status_marks.status_dedupe_key(msg.wamid, s): s for s in seen} if msg.wamid else {}
    owed: list[str] = []
    if keys:
        async with ctx.deps.sessions() as s:
            pending = (await s.scalars(select(SlackOutbox.dedupe_key).where(
                SlackOutbox.dedupe_key.in_(list(keys)), SlackOutbox.done_at.is_(None),
                SlackOutbox.id != ctx.item.id))).all()
        owed = [keys[k] for k in pending]
    for name in status_marks.reactions_to_add(seen, owed):
        await ctx.react(channel, ts, name)
