"""WhatsApp groups (Groups API): one thread per group, its messages with their senders, lifecycle and membership
changes as thread notes, a suspension as an alert.

A group's thread belongs to the contact `group:<group_id>` (replies from it go to the group: see
`bot.meta.graph`); `whatsapp_groups` holds its subject, participants and state for the thread's header.
Handlers run inside the webhook worker's transaction, like those of `bot.bridge.meta_events`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.bridge import account_texts
from bot.bridge.alert_events import raise_alert_once
from bot.core.origin import Direction, Source
from bot.meta import events as ev
from bot.meta.parser import parse_errors
from bot.meta.recipients import GROUP_PREFIX
from bot.slack.display_names import shown_name
from bot.slack.render import escape, format_number
from storage import repository as repo
from storage.identities import Identity, resolve_contact
from storage.models import Contact, Conversation, WhatsAppGroup, utcnow
from storage.outbox_kinds import Note, enqueue


def group_wa_id(group_id: str) -> str:
    """The contact id a group's thread is kept under."""
    return f"{GROUP_PREFIX}{group_id}"


def member_of(m: ev.GroupMember, name: str | None = None) -> dict[str, Any]:
    return {"wa_id": m.wa_id or m.input, "user_id": m.user_id, "username": m.username, "name": name}


def member_label(member: dict[str, Any], known: list[dict[str, Any]] | None = None) -> str:
    """How staff know a participant: their name, else username, else number."""
    for k in known or []:
        if (member.get("wa_id") and k.get("wa_id") == member.get("wa_id")) or (
                member.get("user_id") and k.get("user_id") == member.get("user_id")):
            member = {**k, **{key: v for key, v in member.items() if v}}
    # Names and usernames are the customers' own text: cleaned and isolated (bot.slack.display_names).
    name = shown_name(str(member.get("name") or ""))
    number = format_number(str(member["wa_id"])) if member.get("wa_id") else None
    if name:
        return f"{name} ({number})" if number else name
    return shown_name(str(member.get("username") or "")) or number or str(member.get("user_id") or "someone")


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return bool((a.get("wa_id") and a.get("wa_id") == b.get("wa_id"))
                or (a.get("user_id") and a.get("user_id") == b.get("user_id")))


def with_member(participants: list[dict[str, Any]], member: dict[str, Any]) -> list[dict[str, Any]]:
    """The list with `member` added, or its known entry filled in (a name learnt later)."""
    out, found = [], False
    for p in participants:
        if _same(p, member):
            found = True
            p = {**p, **{k: v for k, v in member.items() if v}}
        out.append(p)
    return out if found else [*out, member]


def without_member(participants: list[dict[str, Any]], member: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in participants if not _same(p, member)]


async def ensure_group(session: AsyncSession, group_id: str, *, subject: str | None = None
                       ) -> tuple[Contact, WhatsAppGroup]:
    """The group's contact and row, created on first sight; a subject Meta names becomes the contact's name."""
    contact = await resolve_contact(session, Identity(user_id=group_wa_id(group_id)), subject)
    group = await session.get(WhatsAppGroup, contact.id)
    if group is None:
        group = WhatsAppGroup(contact_id=contact.id, group_id=group_id, subject=subject, participants=[],
                              state="active", updated_at=utcnow())
        session.add(group)
        await session.flush()
    elif subject and group.subject != subject:
        group.subject = subject
    return contact, group


# The dispatcher's (bot.bridge.meta_events) channel lookup and message store, handed in: it imports this module.
FindChannel = Callable[[AsyncSession, Any, ev.Envelope], Awaitable[tuple[int, str] | None]]
StoreMessage = Callable[..., Awaitable[tuple[int | None, int | None]]]


async def _conversation(session: AsyncSession, ctx: Any, e: ev.GroupEvent, contact: Contact,
                        find_channel: FindChannel) -> Conversation | None:
    found = await find_channel(session, ctx, e.envelope)
    if found is None:
        ctx.count("unknown_phone_number_id")
        return None
    return await repo.conversation_for(session, found[0], contact.id, found[1])


async def on_group_message(session: AsyncSession, ctx: Any, e: ev.InboundMessage, store: StoreMessage) -> None:
    """A participant's message: stored in the group's thread with its sender; the sender joins the header."""
    assert e.group_id is not None
    contact, group = await ensure_group(session, e.group_id)
    sender = {"wa_id": e.phone, "user_id": e.user_id, "username": e.username, "name": e.profile_name}
    message_id, conv_id = await store(
        session, ctx, envelope=e.envelope, wa_id=contact.wa_id, profile_name=None, wamid=e.wamid,
        timestamp=e.timestamp, content=e.content, direction=Direction.INBOUND, source=Source.CUSTOMER,
        identity=Identity(user_id=contact.wa_id), content_extra={"group_sender": sender})
    before = list(group.participants or [])
    group.participants = with_member(before, sender)
    if message_id is not None and conv_id is not None and len(group.participants) != len(before):
        await repo.owe_parent_refresh(session, conv_id, f"members:{len(group.participants)}", e.timestamp)


def _names(members: list[ev.GroupMember], known: list[dict[str, Any]]) -> str:
    """Participants for a mrkdwn note: escaped, since names are the customers' own text."""
    return escape(", ".join(member_label(member_of(m), known) for m in members) or "someone")


def _errors(errs: list[ev.MetaError]) -> str:
    return "; ".join(f"Meta error {x.code}: {x.title or x.message or 'no title'}" for x in errs)


def _settings_lines(settings: dict[str, Any]) -> list[str]:
    words = {"group_subject": "subject", "group_description": "description", "profile_picture": "picture"}
    lines = []
    for key, value in settings.items():
        what = words.get(key, key)
        if value.get("update_successful") is False:
            lines.append(f"The group's {what} could not be changed"
                         + (f" ({escape(_errors(parse_errors(value.get('errors'))))})" if value.get("errors")
                            else ""))
        elif key == "group_subject" and value.get("text"):
            lines.append(f"The group's subject is now *{escape(shown_name(str(value['text'])) or 'blank')}*")
        else:
            lines.append(f"The group's {what} was changed")
    return lines


def group_note(e: ev.GroupEvent, known: list[dict[str, Any]]) -> str | None:
    """The thread note for a group event; None when the thread gets none (a failure goes to the alerts)."""
    if e.errors and e.type in ("group_create", "group_delete"):
        return None
    match e.type:
        case "group_create":
            link = f" Invite link: {escape(e.invite_link)}" if e.invite_link else ""
            return f":busts_in_silhouette: Group created: *{escape(shown_name(e.subject) or 'no subject')}*.{link}"
        case "group_delete":
            return ":wastebasket: The group was deleted: nothing more can be sent to it"
        case "group_participants_add" | "group_add_participants":
            how = " with the invite link" if e.reason == "invite_link" else ""
            return f":inbox_tray: {_names(e.added, known)} joined the group{how}"
        case "group_participants_remove" | "group_remove_participants":
            lines = []
            if e.removed:
                who = _names(e.removed, known)
                lines.append(f":outbox_tray: {who} left the group" if e.initiated_by == "participant"
                             else f":outbox_tray: Removed from the group: {who}")
            if e.failed or e.errors:
                lines.append(f":warning: Could not remove {_names(e.failed, known)}"
                             + (f" ({escape(_errors(e.errors))})" if e.errors else ""))
            return "\n".join(lines) or None
        case "group_join_request_created":
            who = escape(member_label(member_of(e.member), known)) if e.member else "Someone"
            return f":raising_hand: {who} asked to join the group"
        case "group_join_request_revoked":
            who = escape(member_label(member_of(e.member), known)) if e.member else "Someone"
            return f":raising_hand: {who} withdrew their request to join the group"
        case "group_settings_update":
            return "\n".join(f":gear: {line}" for line in _settings_lines(e.settings)) or None
        case "group_suspend":
            return (":no_entry: WhatsApp suspended this group: nothing can be sent or received in it until the "
                    "suspension is cleared")
        case "group_suspend_cleared":
            return ":white_check_mark: The group's suspension was cleared: it can be written to again"
    return f":busts_in_silhouette: Group update: {escape(e.type.replace('_', ' '))}"


def _apply(group: WhatsAppGroup, e: ev.GroupEvent) -> None:
    """What the event changes about the group: participants, subject, state."""
    participants = list(group.participants or [])
    for m in e.added:
        participants = with_member(participants, member_of(m))
    for m in e.removed:
        participants = without_member(participants, member_of(m))
    group.participants = participants
    if e.type == "group_create" and not e.errors:
        group.subject, group.description = e.subject or group.subject, e.description or group.description
        group.invite_link = e.invite_link or group.invite_link
    subject = e.settings.get("group_subject") or {}
    if subject.get("text") and subject.get("update_successful") is not False:
        group.subject = str(subject["text"])
    if e.type == "group_delete" and not e.errors:
        group.state = "deleted"
    elif e.type == "group_suspend":
        group.state = "suspended"
    elif e.type == "group_suspend_cleared":
        group.state = "active"
    group.updated_at = utcnow()


async def on_group_event(session: AsyncSession, ctx: Any, e: ev.GroupEvent, find_channel: FindChannel) -> None:
    """A lifecycle, membership, settings or status change: a note in the group's thread, an alert when the
    group was suspended (or cleared) or when creating or deleting it failed."""
    contact, group = await ensure_group(session, e.group_id, subject=e.subject if not e.errors else None)
    known = list(group.participants or [])
    _apply(group, e)
    if group.subject and contact.profile_name != group.subject:
        contact.profile_name = group.subject
    name = shown_name(group.subject) or "A WhatsApp group"
    number = e.envelope.display_phone_number or e.envelope.waba_id
    dedupe = f"group:{e.group_id}:{e.type}:{e.request_id or e.join_request_id or ''}:{e.timestamp}"
    if e.type == "group_suspend":
        await raise_alert_once(session, "group", e.group_id, "suspended",
                               f"Group {name} on {number} was suspended by WhatsApp: nothing can be sent or received "
                               "in it. WhatsApp suspends groups whose subject, picture or description break its "
                               "policies, or whose admin breaks its terms", dedupe=dedupe, icon=account_texts.SIREN)
    elif e.type == "group_suspend_cleared":
        await raise_alert_once(session, "group", e.group_id, "active",
                               f"Group {name} on {number} is no longer suspended", dedupe=dedupe,
                               icon=account_texts.OK)
    elif e.errors and e.type in ("group_create", "group_delete"):
        what = "Creating" if e.type == "group_create" else "Deleting"
        await raise_alert_once(session, "group", e.group_id, f"{e.type}:failed",
                               f"{what} group {shown_name(e.subject) or name} on {number} failed: {_errors(e.errors)}",
                               dedupe=dedupe, icon=account_texts.WARN)
    text = group_note(e, known)
    if text is None:
        return
    conv = await _conversation(session, ctx, e, contact, find_channel)
    if conv is None:
        return
    await enqueue(session, Note(conv.id, text, mrkdwn=True), dedupe_key=dedupe, order_ts=e.timestamp or utcnow())
    if e.added or e.removed or e.settings:
        await repo.owe_parent_refresh(session, conv.id, f"group:{dedupe}", e.timestamp)


async def members_of(session: AsyncSession, contact_id: int) -> list[dict[str, Any]] | None:
    """A group contact's participants (None when the contact is not a group)."""
    row = await session.scalar(select(WhatsAppGroup).where(WhatsAppGroup.contact_id == contact_id))
    return None if row is None else list(row.participants or [])
