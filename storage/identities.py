"""One contact per person, found by any id Meta sends for them, merged when a message links two.

Meta names a customer by phone number (`wa_id`), business-scoped user id (`user_id`, BSUID), parent
BSUID and username; a username-era customer may arrive first by BSUID alone and later with a phone.
Every id is a row in `contact_identities`; a message carrying ids of two contacts merges them.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.erasure import opt_out_if_erased
from storage.models import Contact, ContactIdentity, Conversation, Message, SlackOutbox, utcnow
from storage.outbox_kinds import conversation_thread
from storage.upsert import insert_ignore

KINDS = ("phone", "user_id", "parent_user_id", "username")


@dataclass(frozen=True)
class Identity:
    """The ids one event gives for a customer (any may be missing)."""

    phone: str | None = None
    user_id: str | None = None
    parent_user_id: str | None = None
    username: str | None = None

    @classmethod
    def of(cls, wa_id: str) -> Identity:
        """A bare id as handlers received it: a phone number unless it looks like a BSUID."""
        return cls(user_id=wa_id) if looks_like_user_id(wa_id) else cls(phone=wa_id)

    def keys(self) -> list[tuple[str, str]]:
        pairs = zip(KINDS, (self.phone, self.user_id, self.parent_user_id, self.username), strict=True)
        return [(kind, value) for kind, value in pairs if value]

    @property
    def primary(self) -> str | None:
        """What `contacts.wa_id` holds: the phone when known, else the most stable id Meta gave."""
        return self.phone or self.user_id or self.parent_user_id or self.username


def looks_like_user_id(value: str) -> bool:
    """Phone numbers hold no letters; BSUIDs always do (`user.…`, `US.…`)."""
    return any(ch.isalpha() for ch in value)


async def _contacts_with(session: AsyncSession, ident: Identity) -> list[Contact]:
    keys = ident.keys()
    values = [v for _, v in keys]
    ids = set((await session.scalars(select(ContactIdentity.contact_id).where(
        tuple_(ContactIdentity.kind, ContactIdentity.value).in_(keys)))).all()) if keys else set()
    # Contacts written before identities existed (or by code that knows only wa_id) are found by wa_id.
    rows = (await session.scalars(select(Contact).where(
        or_(Contact.id.in_(ids), Contact.wa_id.in_(values))).order_by(Contact.id))).all()
    return list(rows)


def _survivor(contacts: list[Contact], ident: Identity) -> Contact:
    """The contact that stays: the one already holding the phone number, else the oldest."""
    for c in contacts:
        if ident.phone and c.wa_id == ident.phone:
            return c
    return contacts[0]


async def merge_into(session: AsyncSession, keep: Contact, gone: Contact) -> None:
    """Fold `gone` into `keep`: its ids, conversations and messages move; nothing is deleted but the row."""
    await session.execute(update(ContactIdentity).where(ContactIdentity.contact_id == gone.id)
                          .values(contact_id=keep.id))
    convs = (await session.scalars(select(Conversation).where(Conversation.contact_id == gone.id))).all()
    for conv in convs:
        twin = await session.scalar(select(Conversation).where(
            Conversation.contact_id == keep.id, Conversation.channel_id == conv.channel_id))
        if twin is None:
            conv.contact_id = keep.id
            continue
        # Same number on both sides: one thread continues, holding both histories.
        await session.execute(update(Message).where(Message.conversation_id == conv.id)
                              .values(conversation_id=twin.id))
        await session.execute(update(SlackOutbox).where(SlackOutbox.conversation_id == conv.id)
                              .values(conversation_id=twin.id, thread_key=conversation_thread(twin.id)))
        if conv.last_customer_message_at and (twin.last_customer_message_at is None
                                              or twin.last_customer_message_at < conv.last_customer_message_at):
            twin.last_customer_message_at = conv.last_customer_message_at
        if twin.slack_thread_ts is None and conv.slack_thread_ts is not None:
            twin.slack_thread_ts, twin.slack_channel = conv.slack_thread_ts, conv.slack_channel
        await session.delete(conv)
    await session.flush()
    keep.opted_out = keep.opted_out or gone.opted_out
    keep.profile_name = keep.profile_name or gone.profile_name
    keep.address_book_name = keep.address_book_name or gone.address_book_name
    keep.username = keep.username or gone.username
    gone_wa_id = gone.wa_id
    await session.delete(gone)
    await session.flush()
    if looks_like_user_id(keep.wa_id) and not looks_like_user_id(gone_wa_id):
        keep.wa_id = gone_wa_id


async def resolve_contact(session: AsyncSession, ident: Identity, profile_name: str | None = None, *,
                          salt: bytes | None = None) -> Contact:
    """The one contact these ids belong to: created on first sight, merged when they span two.

    With salt (privacy.salt), a contact created for ids an erasure kept out of campaigns starts opted out."""
    primary = ident.primary
    if primary is None:
        raise ValueError("an identity needs at least one id")
    found = await _contacts_with(session, ident)
    if not found:
        new_id = await insert_ignore(session, Contact, {"wa_id": primary, "profile_name": profile_name,
                                                        "opted_out": False, "created_at": utcnow(),
                                                        "updated_at": utcnow()}, ["wa_id"])
        if new_id is not None and salt is not None:
            await opt_out_if_erased(session, [(int(new_id), primary)], salt)
        found = await _contacts_with(session, ident)
    contact = _survivor(found, ident)
    for other in found:
        if other.id != contact.id:
            await merge_into(session, contact, other)
    if ident.phone and contact.wa_id != ident.phone and looks_like_user_id(contact.wa_id):
        contact.wa_id = ident.phone  # the number became known: show it, reply to it
    for kind, value in ident.keys():
        await insert_ignore(session, ContactIdentity, {"contact_id": contact.id, "kind": kind, "value": value,
                                                       "created_at": utcnow()}, ["kind", "value"])
    if ident.username and contact.username != ident.username:
        contact.username = ident.username
    if profile_name and contact.profile_name != profile_name:
        contact.profile_name = profile_name
    await session.flush()
    return contact


async def add_id(session: AsyncSession, contact: Contact, kind: str, value: str) -> Contact:
    """Give `contact` one more id (e.g. the BSUID that replaced its old one); a contact already holding it merges
    in, so the person keeps one contact and one thread."""
    other = await _contacts_with(session, Identity(**{kind: value}))  # the kinds are Identity's fields
    for row in other:
        if row.id != contact.id:
            await merge_into(session, contact, row)
    await insert_ignore(session, ContactIdentity, {"contact_id": contact.id, "kind": kind, "value": value,
                                                   "created_at": utcnow()}, ["kind", "value"])
    await session.flush()
    return contact


async def change_number(session: AsyncSession, contact: Contact, new_phone: str) -> Contact:
    """The customer moved to a new number: the contact (and its threads) follow. The old number stays one of
    the contact's ids, so a late message from it (deliveries are not ordered) joins the same thread."""
    other = (await _contacts_with(session, Identity(phone=new_phone)))
    for row in other:
        if row.id != contact.id:
            await merge_into(session, contact, row)
    contact.wa_id = new_phone
    await insert_ignore(session, ContactIdentity, {"contact_id": contact.id, "kind": "phone", "value": new_phone,
                                                   "created_at": utcnow()}, ["kind", "value"])
    await session.flush()
    return contact
