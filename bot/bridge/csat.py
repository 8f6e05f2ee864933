"""Satisfaction surveys (CSAT): after a conversation is resolved from Slack, the customer is asked "How did we
do?" with three reply buttons; the tap (and a comment in the next message) is kept on the survey, credited to
the conversation's owner, and noted in the thread.

A survey is owed in the transaction that resolves (bot.handlers.slack_inbox), keyed by the resolve, so a
replayed click owes nothing more; `bot.bridge.auto_replies` sends it once. Not owed (and not sent) outside the
24-hour window, to an opted-out customer, on a notes-only number, or when the conversation had a survey within
`csat.quiet_days`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.config import ChannelSettings, CsatSettings, Settings, ThreadReplies
from bot.core.window import window_open
from bot.slack import render
from storage.models import AutoReply, Channel, Contact, Conversation, utcnow
from storage.outbox_kinds import Note, enqueue
from storage.upsert import insert_ignore

CSAT = "csat"
SCORES = (3, 2, 1)  # the buttons, best first
_ANSWER = re.compile(r"csat:(\d{1,18}):([123])")
LIVE = ("pending", "sending", "sent")  # a survey in these states counts for the quiet days


@dataclass(frozen=True)
class Answer:
    """A tap on a survey's button, as its id names it."""

    survey_id: int
    score: int


def button_id(survey_id: int, score: int) -> str:
    return f"csat:{survey_id}:{score}"


def parse_answer(interactive_id: object) -> Answer | None:
    """The survey and score a button reply's id names; None for any other reply."""
    found = _ANSWER.fullmatch(interactive_id) if isinstance(interactive_id, str) else None
    return Answer(int(found.group(1)), int(found.group(2))) if found else None


def buttons(survey_id: int, csat: CsatSettings) -> list[tuple[str, str]]:
    """The three reply buttons (id, title) of a survey, best first."""
    titles = csat.texts[csat.language].buttons
    return [(button_id(survey_id, score), title) for score, title in zip(SCORES, titles, strict=True)]


def any_csat(settings: Settings) -> bool:
    return settings.csat.enabled or any(c.csat is not None and c.csat.enabled for c in settings.channels)


def why_not(settings: Settings, channel: ChannelSettings | None, conv: Conversation, contact: Contact,
            now: datetime) -> str | None:
    """Why a survey must not go to this conversation now (None: it may), whatever was sent before."""
    if channel is None:
        return "the number is no longer configured"
    if not settings.csat_of(channel).enabled:
        return "surveys are off for this number"
    if channel.thread_replies is ThreadReplies.NOTES_ONLY:
        return "the number's channel is notes-only"
    if contact.opted_out:
        return "the customer opted out"
    if not window_open(conv.last_customer_message_at, now):
        return "the customer's 24-hour window has closed"
    return None


async def owe_survey(session: AsyncSession, settings: Settings, conversation_id: int, resolve_key: str,
                     resolver: str, at: datetime) -> bool:
    """Owe the survey for a resolve just applied in this transaction; True when one is owed."""
    found = (await session.execute(
        select(Conversation, Contact, Channel.phone_number_id).join(Contact, Contact.id == Conversation.contact_id)
        .join(Channel, Channel.id == Conversation.channel_id).where(Conversation.id == conversation_id))).first()
    if found is None:
        return False
    conv, contact, pnid = found
    channel = settings.channel_by_phone_number_id(pnid)
    if why_not(settings, channel, conv, contact, at) is not None or channel is None:
        return False
    if await recent_survey(session, conversation_id, at, settings.csat_of(channel).quiet_days):
        return False
    return await insert_ignore(session, AutoReply, {
        "conversation_id": conversation_id, "slack_team": conv.slack_team, "kind": CSAT,
        "period_key": resolve_key[:64], "state": "pending", "trigger_at": at, "staff": conv.owner or resolver,
        "created_at": at, "updated_at": at}, ["conversation_id", "kind", "period_key"]) is not None


async def recent_survey(session: AsyncSession, conversation_id: int, now: datetime, quiet_days: float,
                        but: int | None = None) -> bool:
    """Whether the conversation had a survey owed or sent within the quiet days (other than `but`)."""
    query = select(AutoReply.id).where(
        AutoReply.conversation_id == conversation_id, AutoReply.kind == CSAT, AutoReply.state.in_(LIVE),
        AutoReply.created_at >= now - timedelta(days=quiet_days))
    if but is not None:
        query = query.where(AutoReply.id != but)
    return await session.scalar(query.limit(1)) is not None


def answer_note(score: int, title: str, staff: str | None) -> str:
    stars = ":star:" * score
    credited = f" · credited to <@{staff}>" if staff else ""
    return f"{stars} The customer rated this conversation *{render.escape(title)}* ({score}/3){credited}."


async def record_answer(session: AsyncSession, conversation_id: int, answer: Answer, title: str,
                        at: datetime) -> bool:
    """Keep the first answer to a survey of this conversation and owe the thread its note; True when kept."""
    result = await session.execute(
        update(AutoReply).where(AutoReply.id == answer.survey_id, AutoReply.conversation_id == conversation_id,
                                AutoReply.kind == CSAT, AutoReply.score.is_(None))
        .values(score=answer.score, answer=title[:32], answered_at=at, updated_at=utcnow())
        .execution_options(synchronize_session=False))
    if not isinstance(result, CursorResult) or result.rowcount != 1:
        return False
    staff = await session.scalar(select(AutoReply.staff).where(AutoReply.id == answer.survey_id))
    await enqueue(session, Note(conversation_id, answer_note(answer.score, title, staff), mrkdwn=True),
                  dedupe_key=f"csat-answer:{answer.survey_id}", order_ts=at)
    return True


async def record_comment(session: AsyncSession, settings: Settings, conversation_id: int, text: str | None,
                         at: datetime) -> bool:
    """A customer's text soon after their answer is the survey's comment (the first one only)."""
    if not text or not text.strip() or not any_csat(settings):
        return False
    pnid = await session.scalar(select(Channel.phone_number_id)
                                .join(Conversation, Conversation.channel_id == Channel.id)
                                .where(Conversation.id == conversation_id))
    channel = settings.channel_by_phone_number_id(pnid) if pnid is not None else None
    if channel is None:
        return False
    minutes = settings.csat_of(channel).comment_minutes
    result = await session.execute(
        update(AutoReply).where(AutoReply.conversation_id == conversation_id, AutoReply.kind == CSAT,
                                AutoReply.answered_at.is_not(None), AutoReply.answered_at <= at,
                                AutoReply.answered_at >= at - timedelta(minutes=minutes),
                                AutoReply.comment.is_(None))
        .values(comment=text.strip()[:2000], updated_at=utcnow()).execution_options(synchronize_session=False))
    return isinstance(result, CursorResult) and result.rowcount > 0
