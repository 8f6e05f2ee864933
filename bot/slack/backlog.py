"""How far behind each Slack channel is: outbox rows still owed per channel, and the wait that implies.

Slack takes about one post per second per channel (bot.slack.pacing), so a channel's backlog drains no
faster than that whatever the number of workers; a backlog minutes long means staff see replies minutes late.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.slack.pacing import SLACK_LIMITS
from storage.models import Conversation, SlackOutbox

WARN_AFTER_SECONDS = 120.0  # "minutes long": staff would read the last of it two minutes late or more


@dataclass(frozen=True)
class ChannelLag:
    channel: str
    owed: int  # outbox items not delivered yet
    wait_seconds: float  # at least this long until the last is posted, at Slack's per-channel rate


def estimate(owed: Mapping[str, int], per_second: float | None = None) -> list[ChannelLag]:
    """Each channel's wait at Slack's post rate, longest first."""
    rate = per_second or SLACK_LIMITS["chat.postMessage"].per_second
    lags = [ChannelLag(channel, n, n / rate) for channel, n in owed.items() if n > 0]
    return sorted(lags, key=lambda lag: (-lag.wait_seconds, lag.channel))


async def owed_per_channel(session: AsyncSession) -> dict[str, int]:
    """Undelivered conversation items per Slack channel (items without a conversation are not counted)."""
    rows = await session.execute(
        select(Conversation.slack_channel, func.count())
        .join(SlackOutbox, SlackOutbox.conversation_id == Conversation.id)
        .where(SlackOutbox.done_at.is_(None), Conversation.slack_channel.is_not(None))
        .group_by(Conversation.slack_channel))
    return {str(channel): int(n) for channel, n in rows.all()}
