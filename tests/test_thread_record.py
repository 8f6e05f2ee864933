"""A new thread recorded with its item's outcome, and a rename that came while its parent was being posted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.db import make_engine, make_sessionmaker, migrate
from storage.deferred import run_writes
from storage.models import Channel, Contact, Conversation, SlackOutbox
from storage.outbox_kinds import ParentRefresh
from storage.thread_record import record_thread, records_thread, refresh_if_renamed


async def _sessions(url: str) -> tuple[async_sessionmaker[AsyncSession], int, int]:
    """A conversation with Ravi, whose thread is not recorded yet: (sessions, conversation id, contact id)."""
    await migrate(url)
    sessions = make_sessionmaker(make_engine(url))
    async with sessions() as s, s.begin():
        channel = Channel(name="lucknow", phone_number_id="1", waba_id="2", mode="coexistence", mps=5)
        contact = Contact(wa_id="919810000001", profile_name="Ravi", opted_out=False)
        s.add_all([channel, contact])
        await s.flush()
        conv = Conversation(channel_id=channel.id, contact_id=contact.id, slack_channel="C0LUCKNOW")
        s.add(conv)
        await s.flush()
        return sessions, conv.id, contact.id


Made = tuple[async_sessionmaker[AsyncSession], int, int]


@pytest.fixture
async def made(db_url: str) -> AsyncIterator[Made]:
    sessions, conv, contact = await _sessions(db_url)
    yield sessions, conv, contact
    await sessions.kw["bind"].dispose()


async def _refreshes(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessions() as s:
        return list((await s.scalars(select(SlackOutbox.dedupe_key).where(
            SlackOutbox.kind == ParentRefresh.KIND))).all())


async def _write(sessions: async_sessionmaker[AsyncSession], conv: int, contact: int, ts: str,
                 book: str | None, profile: str | None) -> None:
    async with sessions() as s, s.begin():
        dialect = s.bind.dialect
        await run_writes(s, [record_thread(conv, "C0LUCKNOW", ts),
                             refresh_if_renamed(dialect, conv, contact, book, profile, ts)])


async def test_the_first_thread_recorded_stays_and_an_unchanged_name_owes_nothing(made: Made) -> None:
    sessions, conv, contact = made
    await _write(sessions, conv, contact, "1700.000100", None, "Ravi")
    await _write(sessions, conv, contact, "1700.000200", None, "Ravi")  # a second attempt's parent
    async with sessions() as s:
        assert await s.scalar(select(Conversation.slack_thread_ts).where(Conversation.id == conv)) == "1700.000100"
    assert await _refreshes(sessions) == []


async def test_a_name_changed_since_the_post_owes_the_parent_one_refresh(made: Made) -> None:
    sessions, conv, contact = made
    async with sessions() as s, s.begin():
        await s.execute(update(Contact).where(Contact.id == contact).values(address_book_name="Ravi (Site 4)"))
    await _write(sessions, conv, contact, "1700.000100", None, "Ravi")
    await _write(sessions, conv, contact, "1700.000100", None, "Ravi")  # the outcome written again: still one
    assert await _refreshes(sessions) == [f"parent:{conv}:renamed-while-posting:1700.000100"]


async def test_a_rename_committing_meanwhile_is_waited_for_and_seen(pg_url: str) -> None:
    sessions, conv, contact = await _sessions(pg_url)
    try:
        async with sessions() as rename, rename.begin():
            # The rename holds the contact's row (it has written it, and looks for threads next): the thread's
            # record must wait for it and compare against the name it commits.
            await rename.execute(update(Contact).where(Contact.id == contact).values(profile_name="Ravi Kumar"))
            recording = asyncio.create_task(_write(sessions, conv, contact, "1700.000100", None, "Ravi"))
            await asyncio.sleep(0.2)
            assert not recording.done()
        await asyncio.wait_for(recording, 30)
        assert await _refreshes(sessions) == [f"parent:{conv}:renamed-while-posting:1700.000100"]
    finally:
        await sessions.kw["bind"].dispose()



def test_a_thread_found_gone_takes_its_pending_record_with_it() -> None:
    # What bot.bridge.mirror.forget_thread drops from an attempt's writes: that conversation's record only.
    writes = [record_thread(7, "C0LUCKNOW", "1700.000100"), record_thread(8, "C0LUCKNOW", "1700.000200")]
    assert [records_thread(w, 7) for w in writes] == [True, False]
