"""Satisfaction figures per staff member: surveys sent in a period, answered, the average score (1 to 3) and the
share of the best answer. Loaded from `auto_replies` (kind csat); summed by a pure function."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import AutoReply, Channel, Conversation, ConversationLabel, as_utc

UNOWNED = ""  # a survey nobody is credited with (should not happen: the resolver is credited at least)


@dataclass(frozen=True)
class Survey:
    staff: str
    score: int | None  # None: not answered
    sent_at: datetime


@dataclass(frozen=True)
class StaffScore:
    staff: str
    sent: int
    answered: int
    average: float | None  # of the answered, 1 to 3
    best_share: float | None  # answered "best" (3) / answered

    def as_dict(self) -> dict[str, object]:
        return {"staff": self.staff, "sent": self.sent, "answered": self.answered,
                "average": self.average, "best_share": self.best_share}


def per_staff(surveys: Iterable[Survey]) -> list[StaffScore]:
    """Each staff member's surveys, most sent first (then by id)."""
    by: dict[str, list[int | None]] = {}
    for s in surveys:
        by.setdefault(s.staff, []).append(s.score)
    out = []
    for staff, scores in by.items():
        answered = [x for x in scores if x is not None]
        average = round(sum(answered) / len(answered), 2) if answered else None
        best = round(sum(1 for x in answered if x == 3) / len(answered), 2) if answered else None
        out.append(StaffScore(staff, len(scores), len(answered), average, best))
    return sorted(out, key=lambda s: (-s.sent, s.staff))


async def load_surveys(sessions: async_sessionmaker[AsyncSession], *, since: datetime, until: datetime,
                       channels: Sequence[str] | None = None, team: str | None = None,
                       label: str | None = None) -> list[Survey]:
    """The surveys sent in [since, until] (optionally on these numbers, in one workspace, or to conversations
    with `label` only, as the report's other figures)."""
    query = (select(AutoReply.staff, AutoReply.score, AutoReply.created_at)
             .join(Conversation, Conversation.id == AutoReply.conversation_id)
             .join(Channel, Channel.id == Conversation.channel_id)
             .where(AutoReply.kind == "csat", AutoReply.state == "sent", AutoReply.created_at >= since,
                    AutoReply.created_at <= until))
    if channels is not None:
        query = query.where(Channel.name.in_(list(channels)))
    if team is not None:
        query = query.where(AutoReply.slack_team == team)
    if label is not None:
        query = query.where(Conversation.id.in_(select(ConversationLabel.conversation_id)
                                                .where(ConversationLabel.label == label)))
    async with sessions() as s:
        rows = (await s.execute(query)).tuples().all()
    return [Survey(staff or UNOWNED, score, as_utc(at)) for staff, score, at in rows]
