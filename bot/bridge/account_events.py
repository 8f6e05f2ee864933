"""Account-level events applied: an alert that says what happened to which account and numbers, campaigns of an
offboarded account paused until it reconnects, PIN changes, and purchases or leads Meta detected in a chat.

Handlers run inside the webhook worker's transaction (like those of `bot.bridge.meta_events`, which dispatches
to them); the sentences come from `bot.bridge.account_texts`.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.bridge import account_texts
from bot.bridge.alert_events import HasSettings, raise_alert_once
from bot.meta import events as ev
from scheduler.campaigns.records import CampaignStatus, pause_loaded, resume_loaded
from storage.models import Campaign, Channel, Conversation, Message, utcnow
from storage.outbox_kinds import Note, enqueue

# The pause reason the bridge writes when Meta offboards an account; only campaigns paused with it are resumed
# on ACCOUNT_RECONNECTED (a manager's own pause stays).
OFFBOARDED = "the WhatsApp account was offboarded (phone app moved or registered again): resumes when it reconnects"


async def _channels(session: AsyncSession, waba_id: str) -> list[Channel]:
    return list((await session.scalars(select(Channel).where(Channel.waba_id == waba_id)
                                       .order_by(Channel.id))).all())


async def _pause_campaigns(session: AsyncSession, channel_ids: list[int]) -> int:
    if not channel_ids:
        return 0
    rows = (await session.scalars(select(Campaign).where(
        Campaign.channel_id.in_(channel_ids),
        Campaign.status.in_((CampaignStatus.SCHEDULED.value, CampaignStatus.RUNNING.value)))
        .order_by(Campaign.id))).all()
    for c in rows:
        await pause_loaded(session, c, OFFBOARDED)
    return len(rows)


async def _resume_campaigns(session: AsyncSession, channel_ids: list[int]) -> int:
    if not channel_ids:
        return 0
    rows = (await session.scalars(select(Campaign).where(
        Campaign.channel_id.in_(channel_ids), Campaign.status == CampaignStatus.PAUSED.value,
        Campaign.pause_reason == OFFBOARDED).order_by(Campaign.id))).all()
    for c in rows:
        await resume_loaded(session, c)
    return len(rows)


async def on_account(session: AsyncSession, ctx: HasSettings, e: ev.AccountUpdate) -> None:
    """An `account_update`: its alert; offboarding pauses the account's campaigns, reconnection resumes them."""
    channels = await _channels(session, e.envelope.waba_id)
    ids = [c.id for c in channels]
    paused = await _pause_campaigns(session, ids) if e.event == "ACCOUNT_OFFBOARDED" else 0
    resumed = await _resume_campaigns(session, ids) if e.event == "ACCOUNT_RECONNECTED" else 0
    numbers = [c.display_phone_number or c.name for c in channels]
    icon, text = account_texts.account(e, numbers, ctx.settings.timezone, paused=paused, resumed=resumed)
    subject = e.phone_number or e.envelope.waba_id
    state = e.event
    if e.event == "DISABLED_UPDATE":  # each ban state is news (a reinstatement after a ban above all)
        state = f"{e.event}:{(e.details.get('ban_info') or {}).get('waba_ban_state', '')}"
    elif e.event == "ACCOUNT_SETTINGS_UPDATE":  # each new setting is news; the same one redelivered is not
        state = f"{e.event}:{text[-120:]}"
    await raise_alert_once(session, "account", subject, state, text,
                           dedupe=f"account:{subject}:{state}:{utcnow().isoformat()}", icon=icon)


async def on_security(session: AsyncSession, ctx: HasSettings, e: ev.SecurityEvent) -> None:
    subject = e.display_phone_number or e.envelope.waba_id
    icon, text = account_texts.security(e)
    await raise_alert_once(session, "security", subject, f"{e.event}:{utcnow().isoformat()}", text,
                           dedupe=f"security:{subject}:{e.event}:{utcnow().isoformat()}", icon=icon)


async def on_automatic_event(session: AsyncSession, ctx: HasSettings, e: ev.AutomaticEvent) -> None:
    """A purchase or lead in a chat: a note in that customer's thread (found by the message it was seen in)."""
    text = account_texts.automatic_event(e)
    conv_id = await session.scalar(select(Message.conversation_id).where(Message.wamid == e.wamid))
    conv = await session.get(Conversation, conv_id) if conv_id is not None else None
    if conv is None:  # the message is not mirrored here: tell the alerts channel instead of dropping it
        await raise_alert_once(session, "automatic_event", e.wamid, e.event_name, f"{text} (message {e.wamid})",
                               dedupe=f"autoevent:{e.wamid}:{e.event_name}")
        return
    await enqueue(session, Note(conv.id, text, mrkdwn=True), dedupe_key=f"autoevent:{e.wamid}:{e.event_name}",
                  order_ts=e.timestamp or utcnow())
