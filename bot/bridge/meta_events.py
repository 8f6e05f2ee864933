"""Apply typed Meta webhook events to storage, and owe Slack the posts they call for.

Everything here runs inside the caller's transaction, so a delivery's effects and its 'processed' mark
commit together: a crash replays the whole delivery, and the unique keys make the replay a no-op.

The conversation handlers share storing a message (channel lookup, contact resolution,
window, outbox) and the one dispatch table; alerts live in `alert_events`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.bridge import account_events, alert_events, alert_texts, away, csat, group_events, inbox
from bot.bridge.alert_events import raise_alert_once
from bot.bridge.message_revisions import apply_edit, apply_revoke
from bot.bridge.optout import OptChange, opt_change
from bot.core.config import Settings
from bot.core.identity_hash import optional_salt, wa_id_hash
from bot.core.origin import Direction, Source
from bot.core.workspace import DEFAULT_WORKSPACE
from bot.meta import events as ev
from bot.onboarding import syncs
from bot.onboarding.channels import adopt
from scheduler.campaigns.unknown_store import note_callback
from storage import erasure
from storage import repository as repo
from storage.identities import Identity, add_id, change_number, looks_like_user_id, resolve_contact
from storage.models import (
    CSAT_ANSWER,
    CampaignRecipient,
    CampaignRun,
    Contact,
    ContactIdentity,
    Conversation,
    Message,
    utcnow,
)
from storage.outbox_kinds import MessagePost, Note, StatusMark, enqueue

log = logging.getLogger(__name__)



@dataclass
class EventContext:
    """What handlers need besides the session: settings and the channel ids by phone_number_id."""

    settings: Settings
    channel_ids: dict[str, int]
    stats: dict[str, int] = field(default_factory=dict)

    def count(self, key: str, n: int = 1) -> None:
        self.stats[key] = self.stats.get(key, 0) + n

    def team_of(self, channel_id: int) -> str:
        """The workspace a channel's conversations are filed under (bot.core.workspace)."""
        if not self.settings.slack.many_workspaces:
            return DEFAULT_WORKSPACE
        return self.teams().get(channel_id, DEFAULT_WORKSPACE)

    def teams(self) -> dict[int, str]:
        """channels.id -> workspace of every channel this process knows (empty in single-workspace mode)."""
        if not self.settings.slack.many_workspaces:
            return {}
        return {self.channel_ids[c.phone_number_id]: self.settings.workspace_of(c) for c in self.settings.channels
                if c.phone_number_id in self.channel_ids}


def content_json(content: ev.MessageContent) -> dict[str, Any]:
    """The stored, JSON-safe form of a message's content (for rendering and export).

    What `dataclasses.asdict` gives, without its deep copy of every leaf: the content's fields hold only
    dataclasses, dicts, lists and JSON scalars (a third of the webhook worker's CPU per message went to it)."""
    return _plain(content)


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _plain(value: Any) -> Any:
    kind = type(value)
    if value is None or kind is str or kind is int or kind is bool or kind is float:
        return value
    if kind is dict:
        return {_plain(k): _plain(v) for k, v in value.items()}
    if kind is list:
        return [_plain(v) for v in value]
    names = _FIELD_NAMES.get(kind)
    if names is None:
        if not is_dataclass(value):
            return _asdict_leaf(value)
        names = _FIELD_NAMES[kind] = tuple(f.name for f in fields(value))
    return {name: _plain(getattr(value, name)) for name in names}


def _asdict_leaf(value: Any) -> Any:
    """Anything else, as `dataclasses.asdict` would copy it (tuples, other containers, other objects)."""
    return asdict(_Leaf(value))["value"]


@dataclass(frozen=True, slots=True)
class _Leaf:
    value: Any


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
        if await adopt(session, ctx.settings, ctx.channel_ids, envelope.phone_number_id):
            found = _channel(ctx, envelope)
    return found


async def _store_message(
    session: AsyncSession, ctx: EventContext, *, envelope: ev.Envelope, wa_id: str, profile_name: str | None,
    wamid: str, timestamp: datetime, content: ev.MessageContent, direction: Direction, source: Source,
    history: bool = False, identity: Identity | None = None, content_extra: dict[str, Any] | None = None,
    reopens: bool = True,
) -> tuple[int | None, int | None]:
    """Store one message; returns (message id or None if already stored, conversation id)."""
    found = await _find_channel(session, ctx, envelope)
    if found is None:
        ctx.count("unknown_phone_number_id")
        log.warning("delivery for unconfigured phone_number_id %s ignored", envelope.phone_number_id)
        return None, None
    channel_id, slack_channel = found
    ident = identity or Identity.of(wa_id)
    number_was_known = await _number_known(session, ident)
    contact = await resolve_contact(session, ident, profile_name, salt=optional_salt(ctx.settings))
    conv = await repo.conversation_for(session, channel_id, contact.id, slack_channel, ctx.team_of(channel_id))
    if not number_was_known and conv.slack_thread_ts:
        # A customer known by user id until now: the thread's header shows the number from now on.
        await repo.owe_parent_refresh(session, conv.id, f"number:{ident.phone}", timestamp)
    campaign_id = None
    if content.context and content.context.get("id") and direction is Direction.INBOUND:
        campaign_id = await _campaign_answered(session, str(content.context["id"]))
    media = content.media
    message_id = await repo.insert_message(session, {
        "wamid": wamid, "conversation_id": conv.id, "direction": direction, "source": source,
        "type": content.kind, "text": content.text, "media_id": media.id if media else None,
        "media_mime": media.mime_type if media else None, "content": {**content_json(content), **(content_extra or {})},
        "wa_timestamp": timestamp, "is_history": history, "campaign_id": campaign_id,
    })
    if message_id is None:
        ctx.count("duplicate_message")
        return None, conv.id
    # Only what the customer wrote opens the window; echoes and history never do.
    if direction is Direction.INBOUND and not history:
        await repo.touch_window(session, conv.id, timestamp)
    early = await repo.apply_statuses(session, wamid) if direction is Direction.OUTBOUND else []
    if not history:
        await enqueue(session, MessagePost(message_id, conv.id), dedupe_key=f"msg:{message_id}", order_ts=timestamp)
        await repo.owe_status_posts(session, wamid, early)
        if direction is Direction.INBOUND and reopens:  # the customer wrote again: a resolved conversation is open
            await inbox.customer_wrote(session, {conv.id: timestamp})
    return message_id, conv.id


async def _number_known(session: AsyncSession, ident: Identity) -> bool:
    """False only when this event brings a phone number next to a user id and the number is new to us."""
    if not (ident.phone and (ident.user_id or ident.parent_user_id)):
        return True
    found = await session.scalar(select(ContactIdentity.id).where(ContactIdentity.kind == "phone",
                                                                  ContactIdentity.value == ident.phone).limit(1))
    return found is not None or await session.scalar(select(Contact.id).where(Contact.wa_id == ident.phone)
                                                     .limit(1)) is not None


async def _campaign_answered(session: AsyncSession, wamid: str) -> int | None:
    row = await session.execute(
        select(CampaignRun.campaign_id).join(CampaignRecipient, CampaignRecipient.run_id == CampaignRun.id)
        .where(CampaignRecipient.wamid == wamid)
    )
    first = row.first()
    return None if first is None else int(first[0])


def _inbound_identity(e: ev.InboundMessage) -> Identity:
    return Identity(phone=e.phone, user_id=e.user_id, parent_user_id=e.parent_user_id,
                    username=e.username) if (e.phone or e.user_id or e.parent_user_id) \
        else Identity.of(e.from_wa_id)


async def _revision(session: AsyncSession, ctx: EventContext, content: ev.MessageContent, wamid: str,
                    at: datetime) -> bool:
    """Apply an edit or deletion to the stored original; False when the original is unknown here."""
    if content.edits:
        return await apply_edit(session, target_wamid=content.edits, event_wamid=wamid,
                                new=content_json(content), text=content.text, kind=content.kind, at=at)
    if content.revokes:
        return await apply_revoke(session, target_wamid=content.revokes, event_wamid=wamid, at=at)
    return False


def _stored_as(content: ev.MessageContent, wamid: str, at: datetime) -> tuple[str, dict[str, Any]]:
    """The wamid and extra content an edit or deletion of an unknown message is stored under: the original's,
    so the original arriving late (deliveries are not ordered) is a duplicate, never a second post."""
    if content.edits:
        return content.edits, {"revisions": [wamid], "edited_at": at.isoformat()}
    if content.revokes:
        return content.revokes, {"revisions": [wamid]}
    return wamid, {}


async def on_inbound(session: AsyncSession, ctx: EventContext, e: ev.InboundMessage) -> None:
    if e.group_id:  # a participant wrote in a group: the group's thread, not a 1:1 conversation
        await group_events.on_group_message(session, ctx, e, _store_message)
        return
    if (e.content.edits or e.content.revokes) and await _revision(session, ctx, e.content, e.wamid, e.timestamp):
        ctx.count("revision")
        return
    wamid, extra = _stored_as(e.content, e.wamid, e.timestamp)
    # A tap on a satisfaction survey asks nothing: stored as such, it neither reopens nor starts a wait.
    answer = csat.parse_answer((e.content.interactive or {}).get("id"))
    content = replace(e.content, kind=CSAT_ANSWER) if answer is not None else e.content
    message_id, conv_id = await _store_message(
        session, ctx, envelope=e.envelope, wa_id=e.from_wa_id, profile_name=e.profile_name, wamid=wamid,
        timestamp=e.timestamp, content=content, direction=Direction.INBOUND, source=Source.CUSTOMER,
        identity=_inbound_identity(e), content_extra=extra, reopens=answer is None,
    )
    if message_id is None or conv_id is None:
        return
    if answer is not None:
        await csat.record_answer(session, conv_id, answer, e.content.text or "", e.timestamp)
        return
    if e.content.kind == "text":
        await csat.record_comment(session, ctx.settings, conv_id, e.content.text, e.timestamp)
    conv = await session.get(Conversation, conv_id)
    if e.content.kind == "system" and conv is not None:
        await _system_change(session, ctx, e, conv)
    # Meta's message-level errors are shown on the message's own post (one line, not a note and an alert).
    payload = (e.content.button or {}).get("payload") or (e.content.interactive or {}).get("id")
    change = opt_change(ctx.settings.opt_out, e.content.text, payload)
    if change is not None and conv is not None:
        opted_out = change is OptChange.OPT_OUT
        salt = optional_salt(ctx.settings)
        if not opted_out and salt is not None:  # an erased person who comes back and opts in may hear from us
            await erasure.lift(session, [wa_id_hash(salt, e.from_wa_id)])
        if await repo.set_opt_out(session, conv.contact_id, opted_out, reason=f"customer wrote {e.content.text!r}"):
            text = "Opted out of marketing campaigns." if opted_out else "Opted back in to marketing campaigns."
            await enqueue(session, Note(conv_id, text), dedupe_key=f"optout:{message_id}", order_ts=e.timestamp)
    if e.content.kind not in away.NOT_ASKING:  # after the opt-out: STOP at night gets no away message
        await away.owe_away(session, ctx.settings, {conv_id: e.timestamp})


async def _system_change(session: AsyncSession, ctx: EventContext, e: ev.InboundMessage,
                         conv: Conversation) -> None:
    """`user_changed_number`: the contact moves to the new number, keeping its thread; the header follows."""
    system = e.content.system or {}
    contact = await session.get(Contact, conv.contact_id)
    if contact is None:
        return
    kind = system.get("type")
    if kind not in ("user_changed_number", "user_changed_user_id"):
        return
    if kind == "user_changed_number" and system.get("wa_id"):
        await change_number(session, contact, str(system["wa_id"]))
    if system.get("user_id"):  # the new business-scoped id (sent with either change): the same person
        await add_id(session, contact, "user_id", str(system["user_id"]))
    await repo.owe_parent_refresh(session, conv.id, f"system:{e.wamid}", e.timestamp)


def is_business_number(number: str | None, envelope: ev.Envelope) -> bool:
    """True when number is the business's own (an echo of a note to self)."""
    digits = "".join(ch for ch in number or "" if ch.isdigit())
    own = "".join(ch for ch in envelope.display_phone_number or "" if ch.isdigit())
    return bool(digits) and digits == own


async def on_echo(session: AsyncSession, ctx: EventContext, e: ev.MessageEcho) -> None:
    if is_business_number(e.to_phone, e.envelope):
        ctx.count("echo_to_self")  # a note-to-self on the phone: no customer, no thread
        return
    if (e.content.edits or e.content.revokes) and await _revision(session, ctx, e.content, e.wamid, e.timestamp):
        ctx.count("revision")
        return
    identity = Identity(phone=e.to_phone, user_id=e.to_user_id, username=e.username) \
        if (e.to_phone or e.to_user_id) else Identity.of(e.to_wa_id)
    wamid, extra = _stored_as(e.content, e.wamid, e.timestamp)
    await _store_message(
        session, ctx, envelope=e.envelope, wa_id=e.to_wa_id, profile_name=None, wamid=wamid,
        timestamp=e.timestamp, content=e.content, direction=Direction.OUTBOUND, source=Source.PHONE_APP,
        identity=identity, content_extra=extra,
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
                        (err.code, err.title) if err else (None, None), phone_number_id=e.envelope.phone_number_id)
    applied = await repo.apply_statuses(session, e.wamid)
    if e.status not in applied:
        return
    msg = await session.scalar(select(Message).where(Message.wamid == e.wamid))
    if msg is None or msg.source == Source.CAMPAIGN:
        return  # campaign statuses feed the campaign's progress message, not threads
    mark = StatusMark(msg.id, e.status, msg.conversation_id, err.code if err else None, err.title if err else None)
    await enqueue(session, mark, dedupe_key=f"status:{e.wamid}:{e.status}", order_ts=e.timestamp)


def call_slot(e: ev.CallEvent) -> str | None:
    """Which of a call's (at most two) thread lines an event fills: "start" (a customer's call ringing) or "end"
    (its outcome); None for events that add nothing. A call from the business gets one line, its outcome:
    RINGING and ACCEPTED come and go, and a REJECTED status is followed by a terminate saying it again."""
    business = e.event == "status" or e.direction == "BUSINESS_INITIATED"
    if e.event == "terminate" or (e.event == "status" and (e.status or "").upper() == "REJECTED"):
        return "end"
    if e.event == "connect" and not business:
        return "start"
    return None


def call_note(e: ev.CallEvent, tz: str) -> str | None:
    """The thread line for a call event; None for events that add nothing (see `call_slot`)."""
    if call_slot(e) is None:
        return None
    incoming = e.direction != "BUSINESS_INITIATED" and e.event != "status"
    who = "Incoming call" if incoming else "Call from the business"
    if e.event == "connect":
        return f":telephone_receiver: {who} ringing"
    if e.event == "terminate":
        secs = e.duration or 0
        if (e.status or "").upper() == "COMPLETED" and secs > 0:
            return f":telephone_receiver: {who} answered, lasted {secs // 60} min {secs % 60:02d} s"
        if incoming:
            return ":telephone_receiver: Missed call from the customer"
        return ":telephone_receiver: Call from the business not answered"
    status = (e.status or "").upper()
    words = {"RINGING": "ringing", "ACCEPTED": "answered by the customer", "REJECTED": "declined by the customer"}
    if status in words:
        return f":telephone_receiver: Call from the business {words[status]}"
    return None


async def on_call(session: AsyncSession, ctx: EventContext, e: ev.CallEvent) -> None:
    """A call (Calling API): a note in the customer's thread."""
    found = await _find_channel(session, ctx, e.envelope)
    if found is None:
        ctx.count("unknown_phone_number_id")
        return
    text = call_note(e, ctx.settings.timezone)
    if text is None:
        return
    identity = Identity(phone=e.customer if e.customer != e.customer_user_id else None,
                        user_id=e.customer_user_id, username=e.username) if e.customer_user_id \
        else Identity.of(e.customer)
    contact = await resolve_contact(session, identity, e.profile_name)
    conv = await repo.conversation_for(session, found[0], contact.id, found[1], ctx.team_of(found[0]))
    await enqueue(session, Note(conv.id, text, mrkdwn=True), dedupe_key=f"call:{e.call_id}:{call_slot(e)}",
                  order_ts=e.timestamp)


async def on_history(session: AsyncSession, ctx: EventContext, e: ev.HistoryChunk) -> None:
    """Store a history chunk's messages (never posted one by one) and fold it into the import's progress."""
    await fold_history(session, ctx, e, await store_history(session, ctx, e, e.messages))


async def store_history(session: AsyncSession, ctx: EventContext, e: ev.HistoryChunk,
                        messages: Sequence[ev.HistoryMessage]) -> int:
    """Store some of a chunk's messages (a slice, in `history_import`); returns how many were new."""
    stored = 0
    for m in messages:
        source = Source.CUSTOMER if m.direction is ev.Direction.INBOUND else Source.PHONE_APP
        message_id, conv_id = await _store_message(
            session, ctx, envelope=e.envelope, wa_id=m.wa_id, profile_name=None, wamid=m.wamid,
            timestamp=m.timestamp, content=m.content, direction=m.direction, source=source,
            history=True, identity=Identity(phone=m.phone, user_id=m.user_id, username=m.username)
            if (m.phone or m.user_id) else None,
        )
        if message_id is not None:
            stored += 1
        elif conv_id is not None and await syncs.fill_placeholder(session, m, content_json(m.content)):
            stored += 1
    return stored


async def fold_history(session: AsyncSession, ctx: EventContext, e: ev.HistoryChunk, stored: int) -> None:
    """Fold a chunk whose messages are stored into its import's progress."""
    found = await _find_channel(session, ctx, e.envelope)
    if found is not None:
        await syncs.history_chunk(session, channel_id=found[0], slack_channel=found[1], chunk=e, stored=stored)


async def on_contact_sync(session: AsyncSession, ctx: EventContext, e: ev.ContactSync) -> None:
    """The phone's address book changed: the contact's name follows, and so do their threads' parents."""
    found = await _find_channel(session, ctx, e.envelope)
    await syncs.contact_synced(session, channel_id=found[0] if found else None, event=e)


async def on_user_preference(session: AsyncSession, ctx: EventContext, e: ev.UserPreference) -> None:
    """Meta's own marketing stop/resume (the customer used WhatsApp's menu, not a keyword); other
    preferences (e.g. a `signup`) are announced in the alerts channel."""
    identity = Identity(phone=e.wa_id if e.wa_id != e.user_id else None, user_id=e.user_id) if e.user_id \
        else Identity.of(e.wa_id)
    if e.category != "marketing_messages" or e.value not in {"stop", "resume"}:
        icon, text = alert_texts.user_preference(e, ctx.settings.timezone)
        await raise_alert_once(session, "user_preferences", e.wa_id, f"{e.category}:{e.value}", text,
                               dedupe=f"pref:{e.wa_id}:{e.category}:{e.value}:{utcnow().isoformat()}", icon=icon)
        return
    contact = await resolve_contact(session, identity)
    if not await repo.set_opt_out(session, contact.id, e.value == "stop",
                                  reason=e.detail or "stopped marketing messages in WhatsApp"):
        return
    _, text = alert_texts.user_preference(e, ctx.settings.timezone, in_thread=True)
    convs = list((await session.scalars(select(Conversation).where(Conversation.contact_id == contact.id))).all())
    found = await _find_channel(session, ctx, e.envelope) if not convs else None
    if found is not None:  # no conversation yet (or its first message is still on its way): this opens it
        convs = [await repo.conversation_for(session, found[0], contact.id, found[1], ctx.team_of(found[0]))]
    for conv in convs:  # staff see it where they talk to the customer
        await enqueue(session, Note(conv.id, text), dedupe_key=f"pref:{conv.id}:{e.value}:{e.timestamp}",
                      order_ts=e.timestamp or utcnow())


async def on_user_id_change(session: AsyncSession, ctx: EventContext, e: ev.UserIdChange) -> None:
    """`user_id_update`: the customer's new BSUID joins the contact that held the old one (one contact, one
    thread); replies go on to whatever id the contact is known by."""
    contact = await resolve_contact(session, Identity(phone=e.phone, user_id=e.previous_user_id))
    await add_id(session, contact, "user_id", e.current_user_id)
    if looks_like_user_id(contact.wa_id) and contact.wa_id == e.previous_user_id:
        contact.wa_id = e.current_user_id  # the old id no longer reaches them


_HANDLERS: dict[type, Callable[[AsyncSession, EventContext, Any], Awaitable[None]]] = {
    ev.InboundMessage: on_inbound,
    ev.MessageEcho: on_echo,
    ev.StatusUpdate: on_status,
    ev.TemplateStatus: alert_events.on_template_status,
    ev.QualityUpdate: alert_events.on_quality,
    ev.TemplateQuality: alert_events.on_template_quality,
    ev.TemplateCategory: alert_events.on_template_category,
    ev.TemplateComponents: alert_events.on_template_components,
    ev.ChangeErrors: alert_events.on_change_errors,
    ev.CallEvent: on_call,
    ev.AccountUpdate: account_events.on_account,
    ev.SecurityEvent: account_events.on_security,
    ev.AutomaticEvent: account_events.on_automatic_event,
    ev.GroupEvent: lambda session, ctx, e: group_events.on_group_event(session, ctx, e, _find_channel),
    ev.HistoryChunk: on_history,
    ev.ContactSync: on_contact_sync,
    ev.UserPreference: on_user_preference,
    ev.UserIdChange: on_user_id_change,
    ev.BusinessUsername: alert_events.on_business_username,
    ev.ParseProblem: alert_events.on_parse_problem,
}


async def apply_event(session: AsyncSession, ctx: EventContext, event: ev.WebhookEvent) -> None:
    """Apply one parsed event; unknown ones are counted and kept only in the raw log."""
    ctx.count(type(event).__name__)
    handler = _HANDLERS.get(type(event))
    if handler is None:
        log.info("webhook event kept in the log only: %s", type(event).__name__)
        return
    envelope = getattr(event, "envelope", None)
    target = alert_events.alert_target(ctx.settings, envelope.phone_number_id, envelope.waba_id) \
        if isinstance(envelope, ev.Envelope) else None
    token = alert_events.ALERT_TARGET.set(target)
    try:
        await handler(session, ctx, event)
    finally:
        alert_events.ALERT_TARGET.reset(token)
