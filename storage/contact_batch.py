"""Create a batch's contacts and conversations up front, in bulk and in key order.

Two workers applying batches at once would otherwise create rows for overlapping customers in the order
their deliveries arrived, and PostgreSQL would end one of them with a deadlock. Taking the inserts in one
global order (wa_id, then channel and contact) first makes concurrent batches queue instead; the handlers
that run afterwards find the rows already there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.workspace import DEFAULT_WORKSPACE
from storage.erasure import opt_out_if_erased
from storage.models import Contact, Conversation, utcnow
from storage.upsert import insert_ignore_many


async def ensure_conversations(session: AsyncSession, wanted: Iterable[tuple[int, str, str]],
                               names: dict[str, str] | None = None, teams: Mapping[int, str] | None = None,
                               salt: bytes | None = None) -> None:
    """Create missing contacts (named from names) and conversations for (channel_id, wa_id, slack_channel), in
    their channel's workspace (`teams`: channel id -> workspace; absent ones: 'default').

    With salt (privacy.salt), a new contact whose id an erasure kept out of campaigns starts opted out."""
    triples = sorted(set(wanted))
    if not triples:
        return
    now = utcnow()
    wa_ids = sorted({wa_id for _, wa_id, _ in triples})
    contacts: Table = Contact.__table__  # type: ignore[assignment]
    created = await insert_ignore_many(session, contacts, [
        {"wa_id": w, "profile_name": (names or {}).get(w), "opted_out": False, "created_at": now, "updated_at": now}
        for w in wa_ids
    ], ["wa_id"], returning=("id", "wa_id") if salt is not None else ())
    if created and salt is not None:
        await opt_out_if_erased(session, [(r.id, r.wa_id) for r in created], salt)
    ids = dict((await session.execute(select(Contact.wa_id, Contact.id).where(Contact.wa_id.in_(wa_ids))))
               .tuples().all())
    conversations: Table = Conversation.__table__  # type: ignore[assignment]
    rows = sorted({(channel_id, ids[wa_id], slack) for channel_id, wa_id, slack in triples})
    await insert_ignore_many(session, conversations, [
        {"channel_id": channel_id, "contact_id": contact_id, "slack_channel": slack, "created_at": now,
         "slack_team": (teams or {}).get(channel_id, DEFAULT_WORKSPACE)}
        for channel_id, contact_id, slack in rows
    ], ["channel_id", "contact_id"])
