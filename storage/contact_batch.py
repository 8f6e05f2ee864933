"""Find or create a batch's contacts and conversations up front, in bulk and in key order.

Two workers applying batches at once would otherwise create rows for overlapping customers in the order
their deliveries arrived, and PostgreSQL would end one of them with a deadlock. Taking the inserts in one
global order (wa_id, then channel and contact) first makes concurrent batches queue instead; the handlers
that run afterwards find the rows already there.

The rows that exist are read first, in one statement, and only the missing ones are inserted: a batch of
known customers costs one round trip, a batch of new ones three. On PostgreSQL the keys travel as arrays
(`unnest`), so each statement has one text whatever the batch's size (one prepared statement, no per-row
parameter work in SQLAlchemy).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, String, Table, and_, bindparam, false, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.workspace import DEFAULT_WORKSPACE
from storage.erasure import opt_out_if_erased
from storage.model_base import UTCDateTime
from storage.models import Contact, ContactIdentity, Conversation, utcnow
from storage.upsert import insert_ignore_many


@dataclass(frozen=True)
class ConversationKeys:
    """A (channel, customer) pair's rows, and the contact's stored profile name."""

    contact_id: int
    conversation_id: int
    profile_name: str | None


Key = tuple[int, str]  # (channel_id, wa_id)

_PG_LOOKUP_SQL = (
    "SELECT c.wa_id, c.id, c.profile_name, v.channel_id, v.id, false FROM contacts AS c "
    "LEFT JOIN conversations AS v ON v.contact_id = c.id AND v.channel_id = ANY(:channel_ids) "
    "WHERE c.wa_id = ANY(:wa_ids)")
_LOOKUP_PARAMS = (bindparam("wa_ids", type_=ARRAY(String)), bindparam("channel_ids", type_=ARRAY(Integer)))
_PG_LOOKUP = text(_PG_LOOKUP_SQL).bindparams(*_LOOKUP_PARAMS)
# The same, and in the same round trip the numbers among wa_ids that a contact held before moving to another.
_PG_LOOKUP_MOVED = text(
    _PG_LOOKUP_SQL + " UNION ALL SELECT i.value, NULL, NULL, NULL, NULL, true FROM contact_identities AS i "
    "JOIN contacts AS o ON o.id = i.contact_id WHERE i.kind = 'phone' AND i.value = ANY(:wa_ids) "
    "AND o.wa_id <> i.value"
).bindparams(*_LOOKUP_PARAMS)
_PG_CONTACTS = text(
    "INSERT INTO contacts (wa_id, profile_name, opted_out, created_at, updated_at) "
    "SELECT r.wa_id, r.name, false, :now, :now FROM unnest(:wa_ids, :names) AS r(wa_id, name) ORDER BY r.wa_id "
    "ON CONFLICT (wa_id) DO NOTHING RETURNING id, wa_id"
).bindparams(bindparam("wa_ids", type_=ARRAY(String)), bindparam("names", type_=ARRAY(String)),
             bindparam("now", type_=UTCDateTime()))
_PG_CONVERSATIONS = text(
    "INSERT INTO conversations (channel_id, contact_id, slack_channel, slack_team, created_at, inbox_status) "
    "SELECT r.channel_id, r.contact_id, r.slack_channel, r.slack_team, :now, 'open' "
    "FROM unnest(:channel_ids, :contact_ids, :slack_channels, :teams) "
    "AS r(channel_id, contact_id, slack_channel, slack_team) ORDER BY r.channel_id, r.contact_id "
    "ON CONFLICT (channel_id, contact_id) DO NOTHING RETURNING id, channel_id, contact_id"
).bindparams(bindparam("channel_ids", type_=ARRAY(Integer)), bindparam("contact_ids", type_=ARRAY(Integer)),
             bindparam("slack_channels", type_=ARRAY(String)), bindparam("teams", type_=ARRAY(String)),
             bindparam("now", type_=UTCDateTime()))


async def ensure_conversations(session: AsyncSession, wanted: Iterable[tuple[int, str, str]],
                               names: dict[str, str] | None = None, teams: Mapping[int, str] | None = None,
                               salt: bytes | None = None, *, moved: set[str] | None = None
                               ) -> dict[Key, ConversationKeys]:
    """Find or create the contacts (new ones named from names) and conversations for (channel_id, wa_id,
    slack_channel), in their channel's workspace (`teams`: channel id -> workspace; absent ones: 'default');
    returns their rows by (channel_id, wa_id).

    With salt (privacy.salt), a new contact whose id an erasure kept out of campaigns starts opted out.
    With `moved` (a set to fill), the numbers a contact held before moving to another number are left out and
    added to it (found by the same first read on PostgreSQL): their messages are for the handlers, which find
    the contact by any of its ids."""
    triples = sorted(set(wanted))
    if not triples:
        return {}
    postgres = session.bind.dialect.name == "postgresql"
    wa_ids = sorted({wa_id for _, wa_id, _ in triples})
    channel_ids = sorted({channel_id for channel_id, _, _ in triples})
    contacts: dict[str, tuple[int, str | None]] = {}
    found: dict[Key, int] = {}
    await _read(session, postgres, wa_ids, channel_ids, contacts, found, moved)
    if moved:
        triples = [t for t in triples if t[1] not in moved]
        wa_ids = [w for w in wa_ids if w not in moved]
        if not triples:
            return {}
    missing = [w for w in wa_ids if w not in contacts]
    if missing:
        now = utcnow()
        if postgres:
            created = (await session.execute(_PG_CONTACTS, {
                "wa_ids": missing, "names": [(names or {}).get(w) for w in missing], "now": now})).all()
        else:
            table: Table = Contact.__table__  # type: ignore[assignment]
            created = await insert_ignore_many(session, table, [
                {"wa_id": w, "profile_name": (names or {}).get(w), "opted_out": False, "created_at": now,
                 "updated_at": now} for w in missing], ["wa_id"], returning=("id", "wa_id"))
        for contact_id, wa_id in created:
            contacts[wa_id] = (contact_id, (names or {}).get(wa_id))
        if created and salt is not None:
            await opt_out_if_erased(session, [(int(r[0]), str(r[1])) for r in created], salt)
        if len(created) < len(missing):  # another transaction created some of them meanwhile
            await _read(session, postgres, [w for w in missing if w not in contacts], channel_ids, contacts, found)
    lacking = sorted({(channel_id, contacts[wa_id][0], slack) for channel_id, wa_id, slack in triples
                      if (channel_id, wa_id) not in found})
    if lacking:
        await _create_conversations(session, postgres, lacking, teams or {}, contacts, found)
        if any((channel_id, wa_id) not in found for channel_id, wa_id, _ in triples):
            await _read(session, postgres, wa_ids, channel_ids, contacts, found)  # created meanwhile elsewhere
    return {(channel_id, wa_id): ConversationKeys(contacts[wa_id][0], found[(channel_id, wa_id)], contacts[wa_id][1])
            for channel_id, wa_id, _ in triples}


async def _read(session: AsyncSession, postgres: bool, wa_ids: list[str], channel_ids: list[int],
                contacts: dict[str, tuple[int, str | None]], found: dict[Key, int],
                moved: set[str] | None = None) -> None:
    """Add the stored contacts of wa_ids, and their conversations on channel_ids, to contacts and found (and
    to moved, when given, the numbers among wa_ids that a contact held before its current one)."""
    rows: Iterable[Any]
    params = {"wa_ids": wa_ids, "channel_ids": channel_ids}
    if postgres:
        rows = (await session.execute(_PG_LOOKUP if moved is None else _PG_LOOKUP_MOVED, params)).tuples()
    else:
        rows = (await session.execute(
            select(Contact.wa_id, Contact.id, Contact.profile_name, Conversation.channel_id, Conversation.id,
                   false())
            .outerjoin(Conversation, and_(Conversation.contact_id == Contact.id,
                                          Conversation.channel_id.in_(channel_ids)))
            .where(Contact.wa_id.in_(wa_ids)))).tuples().all()
        if moved is not None:
            moved.update((await session.scalars(
                select(ContactIdentity.value).join(Contact, Contact.id == ContactIdentity.contact_id)
                .where(ContactIdentity.kind == "phone", ContactIdentity.value.in_(wa_ids),
                       Contact.wa_id != ContactIdentity.value))).all())
    for wa_id, contact_id, name, channel_id, conversation_id, former in rows:
        if former:
            if moved is not None:
                moved.add(wa_id)
            continue
        contacts[wa_id] = (contact_id, name)
        if conversation_id is not None:
            found[(channel_id, wa_id)] = conversation_id


async def _create_conversations(session: AsyncSession, postgres: bool, rows: list[tuple[int, int, str]],
                                teams: Mapping[int, str], contacts: dict[str, tuple[int, str | None]],
                                found: dict[Key, int]) -> None:
    """Insert conversations (channel_id, contact_id, slack_channel) unless they exist; note the new ones."""
    now = utcnow()
    if postgres:
        created = (await session.execute(_PG_CONVERSATIONS, {
            "channel_ids": [r[0] for r in rows], "contact_ids": [r[1] for r in rows],
            "slack_channels": [r[2] for r in rows], "teams": [teams.get(r[0], DEFAULT_WORKSPACE) for r in rows],
            "now": now})).all()
    else:
        table: Table = Conversation.__table__  # type: ignore[assignment]
        created = await insert_ignore_many(session, table, [
            {"channel_id": channel_id, "contact_id": contact_id, "slack_channel": slack, "created_at": now,
             "slack_team": teams.get(channel_id, DEFAULT_WORKSPACE)}
            for channel_id, contact_id, slack in rows
        ], ["channel_id", "contact_id"], returning=("id", "channel_id", "contact_id"))
    wa_of = {contact_id: wa_id for wa_id, (contact_id, _) in contacts.items()}
    for conversation_id, channel_id, contact_id in created:
        found[(channel_id, wa_of[contact_id])] = conversation_id
