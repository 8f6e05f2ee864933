"""Migration 0005 and contact identities on a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import select, text

from storage.db import make_engine, make_sessionmaker, migrate
from storage.identities import Identity, looks_like_user_id, resolve_contact
from storage.models import Contact, ContactIdentity, Conversation

BSUID = "user.9373795779eb6441c8adb2eaee5b848e7dd174ddd302d7db62142f4722d574b6"


async def test_upgrade_from_0003_keeps_contacts_and_indexes_their_ids(db_url: str) -> None:
    await migrate(db_url, "0003")
    engine = make_engine(db_url)
    try:
        async with engine.begin() as conn:
            for i, wa_id in enumerate(("919812345678", "US.13491208655302741918"), 1):
                await conn.execute(text(
                    "INSERT INTO contacts (wa_id, profile_name, opted_out, created_at, updated_at) "
                    "VALUES (:wa, :name, false, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"),
                    {"wa": wa_id, "name": f"c{i}"})
            ids = dict((await conn.execute(text("SELECT wa_id, id FROM contacts"))).all())
        phone_id, bsuid_id = ids["919812345678"], ids["US.13491208655302741918"]
        await migrate(db_url)
        sessions = make_sessionmaker(engine)
        async with sessions() as s:
            rows = {(i.contact_id, i.kind, i.value) for i in (await s.scalars(select(ContactIdentity))).all()}
            assert rows == {(phone_id, "phone", "919812345678"), (bsuid_id, "user_id", "US.13491208655302741918")}
        async with sessions() as s, s.begin():
            long_id = "user." + "b2" * 128
            s.add(Contact(wa_id=long_id, opted_out=False))
        async with sessions() as s, s.begin():
            # The BSUID contact from before the upgrade is found by it and gains the phone Meta now sends.
            c = await resolve_contact(s, Identity(phone="14155550100", user_id="US.13491208655302741918"))
            assert (c.id, c.wa_id) == (bsuid_id, "14155550100")
        async with sessions() as s:
            assert await s.scalar(select(Contact.wa_id).where(Contact.wa_id == long_id)) == long_id
    finally:
        await engine.dispose()


async def test_resolve_merges_two_contacts_keeping_the_phone_one(db_url: str) -> None:
    await migrate(db_url)
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    try:
        async with sessions() as s, s.begin():
            by_id = await resolve_contact(s, Identity(user_id=BSUID, username="@pablo"), "Pablo")
            by_phone = await resolve_contact(s, Identity(phone="16505551234"))
            assert by_id.id != by_phone.id
            merged = await resolve_contact(s, Identity(phone="16505551234", user_id=BSUID))
            assert merged.id == by_phone.id and merged.profile_name == "Pablo" and merged.username == "@pablo"
        async with sessions() as s:
            assert len((await s.scalars(select(Contact))).all()) == 1
            assert len((await s.scalars(select(Conversation))).all()) == 0
            again = await resolve_contact(s, Identity(username="@pablo"))
            assert again.wa_id == "16505551234"
    finally:
        await engine.dispose()


def test_user_ids_are_told_from_phone_numbers() -> None:
    assert looks_like_user_id(BSUID) and looks_like_user_id("US.13491208655302741918")
    assert not looks_like_user_id("+919812345678") and not looks_like_user_id("919812345678")
    assert Identity.of("919812345678").keys() == [("phone", "919812345678")]
    assert Identity.of(BSUID).keys() == [("user_id", BSUID)]
