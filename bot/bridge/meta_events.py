"""Apply typed Meta webhook events to storage, and owe Slack the posts they call for.

Everything here runs inside the caller's transaction, so a delivery's effects and its 'processed' mark
commit together: a crash replays the whole delivery, and the unique keys make the replay a no-op.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.bridge.optout import OptChange, opt_change
from bot.core.config import Settings
from bot.meta import events as ev
from scheduler.campaigns.unknown_store import note_callback
from storage import repository as repo
from storage.models import AlertState, CampaignRecipient, CampaignRun, Direction, Source, Template, utcnow

log = logging.getLogger(__name__)



@dataclass
class EventContext:
    """What handlers need besides the session: settings and the channel ids by phone_number_id."""

    settings: Settings
    channel_ids: dict[str, int]
    stats: dict[str, int] = field(default_factory=dict)

    def count(self, key: str) -> None:
        self.stats[key] = self.stats.get(key, 0) + 1


def content_json(content: ev.MessageContent) -> dict[str, Any]:
    """The stored, JSON-safe form of a message's content (for rendering and export)."""
    data = asdict(content)
    return data


def _channel(ctx: EventContext, envelope: ev.Envelope) -> tuple[int, str] | None:
    pnid = envelope.phone_number_id or ""
    channel_id = ctx.channel_ids.get(pnid)
    cfg = ctx.settings.channel_by_phone_number_id(pnid)
    if channel_id is None or cfg is None:
        return None
    return channel_id, cfg.slack_channel


async def _find_channel(session: AsyncSession, ctx: EventContext, envelope: ev.Envelope) -> tuple[int, str] | None:
    found = _channel(ctx, envelope)
    if found is None and envelope.phone_number_id:
        # Perhaps connected seconds ago through /onboard by another process.
        from bot.onboarding.channels import adopt

        if await adopt(session, ctx.settings, ctx.channel_ids, envelope.phone_number_id):
            found = _channel(ctx, envelope)
    return found


async def _store_message(
    session: AsyncSession, ctx: EventContext, *, envelope: ev.Envelope, wa_id: str, profile_name: str | None,
    wamid: str, timestamp: datetime, content: ev.MessageContent, direction: Direction, source: Source,
    history: bool = False,
) -> tuple[int | None, int | None]:
    """Store one message; returns (message id or None if already stored, conversation id)."""
    found = await _find_channel(session, ctx, envelope)
    if found is None:
        ctx.count("unknown_phone_number_id")
        log.warning("delivery for unconfigured phone_number_id %s ignored", envelope.phone_number_id)
        return None, None
    channel_id, slack_channel = found
    contact = await repo.contact_for(session, wa_id, profile_name)
    conv = await repo.conversation_for(session, channel_id, contact.id, slack_channel)
    campaign_id = None
    if content.context and content.context.get("id") and direction is Direction.INBOUND:
        campaign_id = await _campaign_answered(session, str(content.context["id"]))
    media = content.media
    message_id = await repo.insert_message(session, {
        "wamid": wamid, "conversation_id": conv.id, "direction": direction.value, "source": source.value,
        "type": content.kind, "text": content.text, "media_id": media.id if media else None,
        "media_mime": media.mime_type if media else None, "content": content_json(content),
        "wa_timestamp": timestamp, "is_history": history, "campaign_id": campaign_id,
    })
    if message_id is None:
        ctx.count("duplicate_message")
        return None, conv.id
    # Only what the customer wrote opens the window; echoes and history never do.
    if direction is Direction.INBOUND and not history:
        await repo.touch_window(session, conv.id, timestamp)
    if direction is Direction.OUTBOUND:
        await repo.apply_statuses(session, wamid)
    if not history:
        await repo.enqueue_slack(
            session, dedupe_key=f"msg:{message_id}", thread_key=f"conv:{conv.id}", kind="message",
            payload={"message_id": message_id}, order_ts=timestamp, conversation_id=conv.id,
        )
    return message_id, conv.id


async def _campaign_answered(session: AsyncSession, wamid: str) -> int | None:
    row = await session.execute(
        select(CampaignRun.campaign_id).join(CampaignRecipient, CampaignRecipient.run_id == CampaignRun.id)
        .where(CampaignRecipient.wamid == wamid)
    )
    first = row.first()
    return None if first is None else int(first[0])


async def on_inbound(session: AsyncSession, ctx: EventContext, e: ev.InboundMessage) -> None:
    message_id, conv_id = await _store_message(
        session, ctx, envelope=e.envelope, wa_id=e.from_wa_id, profile_name=e.profile_name, wamid=e.wamid,
        timestamp=e.timestamp, content=e.content, direction=Direction.INBOUND, source=Source.CUSTOMER,
    )
    if message_id is None or conv_id is None:
        return
    payload = (e.content.button or {}).get("payload") or (e.content.interactive or {}).get("id")
    change = opt_change(ctx.settings.opt_out, e.content.text, payload)
    if change is not None:
        contact = await repo.contact_for(session, e.from_wa_id)
        opted_out = change is OptChange.OPT_OUT
        if await repo.set_opt_out(session, contact.id, opted_out, reason=f"customer wrote {e.content.text!r}"):
            await repo.enqueue_slack(
                session, dedupe_key=f"optout:{message_id}", thread_key=f"conv:{conv_id}", kind="note",
                payload={"text": "Opted out of marketing campaigns." if opted_out
                         else "Opted back in to marketing campaigns.", "conversation_id": conv_id},
                order_ts=e.timestamp, conversation_id=conv_id,
            )


async def on_echo(session: AsyncSession, ctx: EventContext, e: ev.MessageEcho) -> None:
    await _store_message(
        session, ctx, envelope=e.envelope, wa_id=e.to_wa_id, profile_name=None, wamid=e.wamid,
        timestamp=e.timestamp, content=e.content, direction=Direction.OUTBOUND, source=Source.PHONE_APP,
    )


async def on_status(session: AsyncSession, ctx: EventContext, e: ev.StatusUpdate) -> None:
    err = e.errors[0] if e.errors else None
    pricing = None
    if e.pricing is not None:
        pricing = {"billable": e.pricing.billable, "pricing_model": e.pricing.pricing_model,
                   "category": e.pricing.category, "type": e.pricing.type}
    new = await repo.record_status(session, {
        "wamid": e.wamid, "status": e.status, "wa_timestamp": e.timestamp, "recipient_id": e.recipient_id,
        "error_code": err.code if err else None, "error_title": err.title if err else None,
        "pricing": pricing,
    })
    if not new:
        ctx.count("duplicate_status")
        return
    # A campaign send whose answer was lost is known only by the recipient id it carried.
    await note_callback(session, e.biz_opaque_callback_data, e.wamid, e.status, e.recipient_id,
                        (err.code, err.title) if err else (None, None))
    applied = await repo.apply_statuses(session, e.wamid)
    if e.status not in applied:
        return
    from storage.models import Conversation, Message

    msg = await session.scalar(select(Message).where(Message.wamid == e.wamid))
    if msg is None or msg.source == Source.CAMPAIGN.value:
        return  # campaign statuses feed the campaign's progress message, not threads
    conv = await session.get(Conversation, msg.conversation_id)
    await repo.enqueue_slack(
        session, dedupe_key=f"status:{e.wamid}:{e.status}", thread_key=f"conv:{msg.conversation_id}",
        kind="status", payload={"message_id": msg.id, "status": e.status,
                                "error_code": err.code if err else None,
                                "error_title": err.title if err else None},
        order_ts=e.timestamp, conversation_id=conv.id if conv else None,
    )


async def raise_alert_once(session: AsyncSession, kind: str, subject: str, state: str, text: str,
                           dedupe: str) -> bool:
    """Post text to the alerts channel when subject's state changed since the last alert."""
    current = await session.get(AlertState, (kind, subject))
    if current is not None and current.state == state:
        return False
    if current is None:
        session.add(AlertState(kind=kind, subject=subject, state=state, raised_at=utcnow()))
    else:
        current.state, current.raised_at = state, utcnow()
    await repo.enqueue_slack(session, dedupe_key=f"alert:{dedupe}", thread_key=repo.ALERTS_THREAD, kind="alert",
                             payload={"alert": kind, "subject": subject, "state": state, "text": text})
    return True


async def on_template_status(session: AsyncSession, ctx: EventContext, e: ev.TemplateStatus) -> None:
    name, lang = e.name or "?", e.language or "?"
    tpl = await session.scalar(select(Template).where(
        Template.waba_id == e.envelope.waba_id, Template.name == name, Template.language == lang))
    if tpl is not None:
        tpl.status = e.event
        tpl.rejected_reason = e.reason if e.event == "REJECTED" else None
    reason = f": {e.reason}" if e.reason and e.reason not in {"NONE", "None"} else ""
    await raise_alert_once(session, "template_status", f"{e.envelope.waba_id}/{name}/{lang}", e.event,
                           f"Template {name} ({lang}) {e.event}{reason}",
                           dedupe=f"template:{e.envelope.waba_id}:{name}:{lang}:{e.event}:{utcnow().isoformat()}")


async def on_quality(session: AsyncSession, ctx: EventContext, e: ev.QualityUpdate) -> None:
    subject = e.display_phone_number or e.envelope.waba_id
    # current_limit is announced for removal in favour of max_daily_conversations_per_business.
    limit = e.current_limit or e.max_daily_conversations_per_business
    state = f"{e.event}/{limit or ''}"
    await raise_alert_once(
        session, "quality", subject, state,
        f"Quality update for {subject}: {e.event}"
        + (f", messaging limit now {limit}" if limit else "")
        + (f". {QUALITY_ADVICE[e.event]}" if e.event in QUALITY_ADVICE else ""),
        dedupe=f"quality:{subject}:{state}:{utcnow().isoformat()}",
    )


QUALITY_ADVICE = {
    "FLAGGED": "Quality is low: slow down marketing, check WhatsApp Manager > Insights for blocks and "
               "reports; if it does not recover the messaging limit will be lowered",
    "DOWNGRADE": "The messaging limit was lowered: plan campaigns for the smaller daily audience",
}
TEMPLATE_QUALITY_ADVICE = {
    "YELLOW": "customers are blocking or reporting it: review its content and audience",
    "RED": "it may be paused soon: review its content and audience before sending more",
}


async def on_template_quality(session: AsyncSession, ctx: EventContext, e: ev.TemplateQuality) -> None:
    name, lang = e.name or "?", e.language or "?"
    score = e.new_score or "UNKNOWN"
    tpl = await session.scalar(select(Template).where(
        Template.waba_id == e.envelope.waba_id, Template.name == name, Template.language == lang))
    if tpl is not None:
        tpl.quality = score
    advice = TEMPLATE_QUALITY_ADVICE.get(score)
    await raise_alert_once(session, "template_quality", f"{e.envelope.waba_id}/{name}/{lang}", score,
                           f"Template {name} ({lang}) quality {e.previous_score or '?'} -> {score}"
                           + (f": {advice}" if advice else ""),
                           dedupe=f"tquality:{e.envelope.waba_id}:{name}:{lang}:{score}:{utcnow().isoformat()}")


async def on_template_category(session: AsyncSession, ctx: EventContext, e: ev.TemplateCategory) -> None:
    name, lang = e.name or "?", e.language or "?"
    new = e.new_category or e.correct_category or "?"
    tpl = await session.scalar(select(Template).where(
        Template.waba_id == e.envelope.waba_id, Template.name == name, Template.language == lang))
    if tpl is not None and e.new_category:
        tpl.category = e.new_category
    when = f" on {e.effective_at:%Y-%m-%d}" if e.effective_at and not e.new_category else ""
    await raise_alert_once(session, "template_category", f"{e.envelope.waba_id}/{name}/{lang}", new,
                           f"Template {name} ({lang}) category {e.previous_category or '?'} -> {new}{when}: "
                           "it is billed at the new category's rate",
                           dedupe=f"tcategory:{e.envelope.waba_id}:{name}:{lang}:{new}:{utcnow().isoformat()}")


async def on_account(session: AsyncSession, ctx: EventContext, e: ev.AccountUpdate) -> None:
    subject = e.phone_number or e.envelope.waba_id
    await raise_alert_once(
        session, "account", subject, e.event,
        f"Account update for {subject}: {e.event}" + (f" ({e.details})" if e.details else ""),
        dedupe=f"account:{subject}:{e.event}:{utcnow().isoformat()}",
    )


async def on_history(session: AsyncSession, ctx: EventContext, e: ev.HistoryChunk) -> None:
    """Store a history chunk's messages (never posted one by one) and fold it into the import's progress."""
    from bot.onboarding import syncs

    stored = 0
    for m in e.messages:
        source = Source.CUSTOMER if m.direction is ev.Direction.INBOUND else Source.PHONE_APP
        message_id, conv_id = await _store_message(
            session, ctx, envelope=e.envelope, wa_id=m.wa_id, profile_name=None, wamid=m.wamid,
            timestamp=m.timestamp, content=m.content, direction=Direction(m.direction.value), source=source,
            history=True,
        )
        if message_id is not None:
            stored += 1
        elif conv_id is not None and await syncs.fill_placeholder(session, m, content_json(m.content)):
            stored += 1
    found = await _find_channel(session, ctx, e.envelope)
    if found is not None:
        await syncs.history_chunk(session, channel_id=found[0], slack_channel=found[1], chunk=e, stored=stored)


async def on_contact_sync(session: AsyncSession, ctx: EventContext, e: ev.ContactSync) -> None:
    """The phone's address book changed: the contact's name follows, and so do their threads' parents."""
    from bot.onboarding import syncs

    found = await _find_channel(session, ctx, e.envelope)
    await syncs.contact_synced(session, channel_id=found[0] if found else None, event=e)


async def on_user_preference(session: AsyncSession, ctx: EventContext, e: ev.UserPreference) -> None:
    """Meta's own marketing stop/resume (the customer used WhatsApp's menu, not a keyword)."""
    if e.category != "marketing_messages" or e.value not in {"stop", "resume"}:
        return
    contact = await repo.contact_for(session, e.wa_id)
    await repo.set_opt_out(session, contact.id, e.value == "stop",
                           reason=e.detail or "stopped marketing messages in WhatsApp")


_HANDLERS: dict[type, Callable[[AsyncSession, EventContext, Any], Awaitable[None]]] = {
    ev.InboundMessage: on_inbound,
    ev.MessageEcho: on_echo,
    ev.StatusUpdate: on_status,
    ev.TemplateStatus: on_template_status,
    ev.QualityUpdate: on_quality,
    ev.TemplateQuality: on_template_quality,
    ev.TemplateCategory: on_template_category,
    ev.AccountUpdate: on_account,
    ev.HistoryChunk: on_history,
    ev.ContactSync: on_contact_sync,
    ev.UserPreference: on_user_preference,
}


async def apply_event(session: AsyncSession, ctx: EventContext, event: ev.WebhookEvent) -> None:
    """Apply one parsed event; unknown ones are counted and kept only in the raw log."""
    ctx.count(type(event).__name__)
    handler = _HANDLERS.get(type(event))
    if handler is None:
        log.info("webhook event kept in the log only: %s", type(event).__name__)
        return
    await handler(session, ctx, event)
