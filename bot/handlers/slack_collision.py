"""The collision notice: who answers a conversation someone else owns, or one another person answered in the last
two minutes, is told privately who else is on it (at most once per conversation every ten minutes).

The reply has gone out already: the notice is a side matter, and its failure is only logged.
"""

from __future__ import annotations

import logging

from bot.deps import Deps
from bot.slack.inbox_view import who
from storage.collisions import Others, claim_notice, others_on
from storage.models import utcnow

log = logging.getLogger(__name__)


def notice_text(others: Others) -> str:
    """`Heads up: @Asha owns this conversation; @Ravi also answered it in the last 2 minutes.`"""
    parts = []
    if others.owner:
        parts.append(f"{who(others.owner)} owns this conversation")
    answered = [who(u) for u in others.answered]
    if others.phone_app:
        answered.append("someone on the phone app")
    if answered:
        names = answered[0] if len(answered) == 1 else ", ".join(answered[:-1]) + " and " + answered[-1]
        parts.append(f"{names} also answered it in the last 2 minutes")
    return ":busts_in_silhouette: Heads up: " + "; ".join(parts) + ". Your reply was sent."


async def tell_if_others(deps: Deps, conversation_id: int, channel: str, thread_ts: str, user: str) -> bool:
    """After `user`'s reply went out: tell them who else is on the conversation; True when they were told."""
    try:
        now = utcnow()
        async with deps.sessions() as s, s.begin():
            others = await others_on(s, conversation_id, user, now)
            if not others or not await claim_notice(s, conversation_id, user, now):
                return False
        await deps.slack.chat_postEphemeral(channel=channel, user=user, thread_ts=thread_ts,
                                            text=notice_text(others))
        return True
    except Exception:  # the reply went out; a notice that cannot be given is only logged
        log.exception("collision notice for %s on conversation %s failed; the reply was sent", user,
                      conversation_id)
        return False
