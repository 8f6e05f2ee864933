"""Search (`/wabridge find`): words (every one, by prefix or by English stem) and quoted phrases (as written) in
messages through PostgreSQL's tsvector or SQLite's FTS5 (or LIKE without it), the customer's name or number, owner
and status; only the request's workspace and the numbers the person may see; a redacted message is no longer
found; migration 0018 indexes what was stored (0026's stems: tests/test_migration_0026.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.slack.search_view import describe, parse
from storage.db import make_engine, make_sessionmaker, migrate
from storage.models import Channel, Contact, Conversation, Message
from storage.search import Query, _matching, _newest, find, words_of
from tests.harness import STAFF, Bridge, BridgeFactory, bridges, eventually, now_ts, thread_with
from tests.helpers import SLACK_CHANNEL, inbound_text

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
ASHA = "U0ASHA"
OUTSIDER = "U0OUTSIDER"


async def _conversation(s: AsyncSession, channel: Channel, wa_id: str, name: str, team: str,
                        messages: list[tuple[int, str]], **extra: Any) -> int:
    contact = Contact(wa_id=wa_id, profile_name=name)
    s.add(contact)
    await s.flush()
    conv = Conversation(channel_id=channel.id, contact_id=contact.id, slack_team=team, **extra)
    s.add(conv)
    await s.flush()
    for i, (hours, body) in enumerate(messages):
        s.add(Message(conversation_id=conv.id, direction="inbound", source="customer", type="text", text=body,
                      wamid=f"wamid.{wa_id}.{i}", wa_timestamp=T0 + timedelta(hours=hours)))
    await s.flush()
    return conv.id


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[tuple[async_sessionmaker[AsyncSession], dict[str, int]]]:
    """Four conversations: three in the default workspace (two numbers), one in another workspace."""
    await migrate(db_url)
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    async with sessions() as s, s.begin():
        lucknow = Channel(name="lucknow", phone_number_id="1001", waba_id="2001", mode="coexistence", mps=5)
        kanpur = Channel(name="kanpur", phone_number_id="1002", waba_id="2002", mode="coexistence", mps=5)
        beta = Channel(name="beta", phone_number_id="1003", waba_id="2003", mode="coexistence", mps=5)
        s.add_all([lucknow, kanpur, beta])
        await s.flush()
        ids = {"lucknow": lucknow.id, "kanpur": kanpur.id, "beta": beta.id}
        ids["ravi"] = await _conversation(s, lucknow, "919812345678", "Ravi Kumar", "default",
                                          [(1, "I want a fee refund, please"), (2, "thanks!")], owner=ASHA)
        ids["sita"] = await _conversation(s, lucknow, "919800000002", "Sita", "default",
                                          [(3, "The admission form for class 5")], inbox_status="resolved")
        ids["gopal"] = await _conversation(s, kanpur, "919800000003", "Gopal", "default",
                                           [(4, "Refund of the FEE for my son")])
        ids["zubin"] = await _conversation(s, beta, "919800000004", "Zubin", "T0BETA", [(5, "fee refund")])
    yield sessions, ids
    await engine.dispose()


async def _found(sessions: async_sessionmaker[AsyncSession], ids: dict[str, int], query: Query,
                 channels: tuple[str, ...] = ("lucknow", "kanpur"), workspace: str = "default") -> list[str]:
    names = {v: k for k, v in ids.items() if k not in ("lucknow", "kanpur", "beta")}
    async with sessions() as s:
        hits = await find(s, query, workspace=workspace, channel_ids=[ids[c] for c in channels])
    return [names[h.conversation_id] for h in hits]


async def test_words_names_numbers_owner_and_status(store: tuple[Any, dict[str, int]]) -> None:
    sessions, ids = store
    assert await _found(sessions, ids, Query(("fee", "refund"))) == ["gopal", "ravi"]  # newest match first
    assert await _found(sessions, ids, Query(("refu",))) == ["gopal", "ravi"]  # a prefix is enough
    assert await _found(sessions, ids, Query(("fee", "admission"))) == []  # every word must be there
    assert await _found(sessions, ids, Query(words_of("class 5"))) == ["sita"]
    assert await _found(sessions, ids, Query(words_of("+91 98123 45678"))) == ["ravi"]  # the number
    assert await _found(sessions, ids, Query(("98123",))) == ["ravi"]
    assert await _found(sessions, ids, Query(("sita",))) == ["sita"]  # the name
    assert await _found(sessions, ids, Query(("ravi", "kumar"))) == ["ravi"]
    assert await _found(sessions, ids, Query(owner=ASHA)) == ["ravi"]
    assert await _found(sessions, ids, Query(("fee",), unowned=True)) == ["gopal"]
    assert await _found(sessions, ids, Query(status="resolved")) == ["sita"]
    assert await _found(sessions, ids, Query(("fee",), status="open")) == ["gopal", "ravi"]
    # Words that are operators to a search engine are only words here.
    assert await _found(sessions, ids, Query(words_of('fee" OR * NEAR(refund) -:&|!'))) == []
    async with sessions() as s:
        [hit] = await find(s, Query(("refund",)), workspace="default", channel_ids=[ids["lucknow"]])
    assert (hit.name, hit.wa_id, hit.owner, hit.status, hit.last_text) == (
        "Ravi Kumar", "919812345678", ASHA, "open", "thanks!")
    assert hit.last_at == T0 + timedelta(hours=2)


async def test_only_the_workspace_and_the_numbers_given(store: tuple[Any, dict[str, int]]) -> None:
    sessions, ids = store
    assert await _found(sessions, ids, Query(("refund",)), channels=("lucknow",)) == ["ravi"]
    assert await _found(sessions, ids, Query(("refund",)), channels=()) == []
    # Another workspace's number named in this workspace's search finds nothing of it, and the reverse.
    assert await _found(sessions, ids, Query(("refund",)), channels=("lucknow", "beta")) == ["ravi"]
    assert await _found(sessions, ids, Query(("refund",)), channels=("beta", "lucknow"), workspace="T0BETA") \
        == ["zubin"]


async def test_a_redacted_or_deleted_message_is_not_found(store: tuple[Any, dict[str, int]]) -> None:
    sessions, ids = store
    async with sessions() as s, s.begin():
        await s.execute(update(Message).where(Message.conversation_id == ids["ravi"], Message.text.like("%refund%"))
                        .values(text="[erased]"))
        await s.execute(Message.__table__.delete().where(Message.conversation_id == ids["gopal"]))
    assert await _found(sessions, ids, Query(("refund",))) == []
    assert await _found(sessions, ids, Query(("erased",))) == ["ravi"]


async def test_a_chatty_conversation_does_not_hide_the_others(store: tuple[Any, dict[str, int]]) -> None:
    sessions, ids = store
    async with sessions() as s, s.begin():  # 250 newer matches in Ravi's conversation fill the first page
        s.add_all([Message(conversation_id=ids["ravi"], direction="inbound", source="customer", type="text",
                           text=f"fee question {i}", wamid=f"wamid.chatty.{i}",
                           wa_timestamp=T0 + timedelta(hours=10, seconds=i)) for i in range(250)])
    assert await _found(sessions, ids, Query(("fee",))) == ["ravi", "gopal"]
    async with sessions() as s:  # pages too small for both: every match is grouped instead
        found = await _newest(s, [Conversation.slack_team == "default", await _matching(s, ("fee",))], 2,
                              pages=(5, 5))
    assert sorted(found) == sorted([ids["ravi"], ids["gopal"]])


async def test_sqlite_without_fts5_searches_with_like(db_url: str, store: tuple[Any, dict[str, int]]) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("SQLite's fallback")
    sessions, ids = store
    async with sessions() as s, s.begin():  # as migrations 0018 and 0026 leave a SQLite built without FTS5
        for table in ("messages_fts", "messages_fts_stem"):
            for trigger in ("insert", "delete", "update"):
                await s.execute(text(f"DROP TRIGGER {table}_{trigger}"))
            await s.execute(text(f"DROP TABLE {table}"))
    assert await _found(sessions, ids, Query(("fee", "refund"))) == ["gopal", "ravi"]
    assert await _found(sessions, ids, Query(("refu",))) == ["gopal", "ravi"]
    assert await _found(sessions, ids, Query(("100%",))) == []
    assert await _found(sessions, ids, Query(phrases=(("fee", "refund"),))) == ["ravi"]  # "Refund of the FEE": no


@pytest.fixture
async def languages(db_url: str) -> AsyncIterator[tuple[async_sessionmaker[AsyncSession], dict[str, int]]]:
    """One number, one conversation per message: English in several forms, Hinglish, Hindi."""
    await migrate(db_url)
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    said = {"asha": "Your room is booked for Friday", "bilal": "The bus fee was paid yesterday",
            "chandni": "fees refunded last week", "deepak": "fee refund please", "esha": "kamra me paise do",
            "farhan": "मेरा रिफंड कब मिलेगा", "gita": "Refund of the fee for my son"}
    async with sessions() as s, s.begin():
        lucknow = Channel(name="lucknow", phone_number_id="1001", waba_id="2001", mode="coexistence", mps=5)
        s.add(lucknow)
        await s.flush()
        ids = {"lucknow": lucknow.id}
        for i, (name, body) in enumerate(said.items()):  # the later in the list, the newer
            ids[name] = await _conversation(s, lucknow, f"9198000000{i + 10}", name.title(), "default", [(i, body)])
    yield sessions, ids
    await engine.dispose()


async def test_words_are_found_by_their_english_stem_and_as_typed(languages: tuple[Any, dict[str, int]]) -> None:
    sessions, ids = languages
    at = ("lucknow",)
    assert await _found(sessions, ids, Query(("refunds",)), at) == ["gita", "deepak", "chandni"]
    assert await _found(sessions, ids, Query(("booking",)), at) == ["asha"]
    assert await _found(sessions, ids, Query(("fees", "refunding")), at) == ["gita", "deepak", "chandni"]
    assert await _found(sessions, ids, Query(("refund",)), at) == ["gita", "deepak", "chandni"]  # "refunded" too
    assert await _found(sessions, ids, Query(("book",)), at) == ["asha"]
    # Hinglish and Hindi, which the English stemmer does not know, are found as typed and by prefix;
    # "me" is an English stop word, but a Hinglish word all the same.
    assert await _found(sessions, ids, Query(("paise",)), at) == ["esha"]
    assert await _found(sessions, ids, Query(("kamra", "me")), at) == ["esha"]
    assert await _found(sessions, ids, Query(("pais",)), at) == ["esha"]  # not "paid" (stem of a prefix)
    assert await _found(sessions, ids, Query(("रिफंड",)), at) == ["farhan"]
    assert await _found(sessions, ids, Query(words_of("मेरा रिफंड")), at) == ["farhan"]
    assert await _found(sessions, ids, Query(words_of("+91 98000 00014")), at) == ["esha"]  # a number, exactly
    assert await _found(sessions, ids, Query(("9800000001",)), at) == []  # ten of twelve digits: no one number


async def test_a_quoted_phrase_is_found_as_written(languages: tuple[Any, dict[str, int]]) -> None:
    sessions, ids = languages
    at = ("lucknow",)
    assert await _found(sessions, ids, Query(phrases=(("fee", "refund"),)), at) == ["deepak"]
    assert await _found(sessions, ids, Query(phrases=(("refund", "fee"),)), at) == []  # in that order only
    assert await _found(sessions, ids, Query(phrases=(("refunded",),)), at) == ["chandni"]  # whole, no stem
    assert await _found(sessions, ids, Query(phrases=(("refunds",),)), at) == []
    assert await _found(sessions, ids, Query(phrases=(("refu",),)), at) == []  # no prefix either
    assert await _found(sessions, ids, Query(("son",), phrases=(("refund", "of", "the"),)), at) == ["gita"]
    assert await _found(sessions, ids, Query(phrases=(("kamra", "me", "paise"),)), at) == ["esha"]
    assert await _found(sessions, ids, Query(phrases=(("रिफंड", "कब"),)), at) == ["farhan"]


def test_quotes_in_the_command_make_a_phrase() -> None:
    query = parse('refunds "fee refund" status:open “kamra me”  "" "unclosed', "U0ASHA").query
    assert query is not None
    assert (query.words, query.phrases, query.status) == (("refunds", "unclosed"), (("fee", "refund"),
                                                                                   ("kamra", "me")), "open")
    assert describe(query) == "“refunds unclosed \"fee refund\" \"kamra me\"”, open"
    only = parse('"Fee Refund"', "U0ASHA").query
    assert only is not None and (only.words, only.phrases) == ((), (("fee", "refund"),))
    assert parse('""', "U0ASHA").query is None  # nothing to look for


async def test_postgresql_reads_the_text_index_for_words_and_phrases(pg_url: str) -> None:
    """A word (its prefix OR its stem), several words and a phrase are each one condition the GIN index on
    `search_tsv` answers whole: with reading every message ruled out, the plan reads the index with the entire
    condition (a condition the index could not answer would still be a sequential scan, or a filter after it)."""
    await migrate(pg_url)
    engine = make_engine(pg_url)
    try:
        async with make_sessionmaker(engine)() as s, s.begin():
            lucknow = Channel(name="lucknow", phone_number_id="1001", waba_id="2001", mode="coexistence", mps=5)
            s.add(lucknow)
            await s.flush()
            conv = await _conversation(s, lucknow, "919800000001", "Ravi", "default", [(0, "fee refund please")])
            await s.execute(text(
                "INSERT INTO messages (wamid, conversation_id, direction, source, type, text, status_history, "
                "is_history, is_note, wa_timestamp, created_at) SELECT 'wamid.' || g, :conv, 'inbound', "
                "'customer', 'text', 'hello word' || g || ' kamra ' || (g % 97), '[]', false, false, "
                "CAST(:t AS timestamptz) - (g || ' seconds')::interval, :t FROM generate_series(1, 20000) AS g"),
                {"conv": conv, "t": T0})
            await s.execute(text("ANALYZE messages"))
        async with make_sessionmaker(engine)() as s, s.begin():
            await s.execute(text("SET LOCAL enable_seqscan = off"))
            for words, phrases in ((("refunds",), ()), (("booking", "fees"), ()), ((), (("fee", "refund"),))):
                where = await _matching(s, words, phrases)
                query = select(Message.id).where(where).compile(s.bind, compile_kwargs={"literal_binds": True})
                explained = await (await s.connection()).exec_driver_sql(f"EXPLAIN {query}")  # ':A' is no parameter
                plan = [line.strip() for line in explained.scalars()]
                assert plan[0].startswith("Bitmap Heap Scan on messages"), plan
                assert plan[2].startswith("->  Bitmap Index Scan on ix_messages_search_tsv"), plan
                assert plan[3].startswith("Index Cond: (search_tsv @@ ") and "Filter" not in " ".join(plan), plan
            assert len(await find(s, Query(("refunds",)), workspace="default", channel_ids=[lucknow.id])) == 1
    finally:
        await engine.dispose()


async def test_upgrade_from_0017_indexes_the_messages_already_stored(db_url: str) -> None:
    await migrate(db_url, "0017")
    engine = make_engine(db_url)
    try:
        async with engine.begin() as conn:  # rows written with 0017's own columns
            await conn.execute(text(
                "INSERT INTO channels (name, phone_number_id, waba_id, display_phone_number, mode, mps, slack_channel, "
                "slack_team, created_at) VALUES ('lucknow', '1001', '2001', '+91 522 400 0000', 'coexistence', 5, "
                "'C0LUCKNOW', 'default', :t)"), {"t": T0})
            await conn.execute(text("INSERT INTO contacts (wa_id, profile_name, opted_out, created_at, updated_at) "
                                    "VALUES ('919812345678', 'Ravi', false, :t, :t)"), {"t": T0})
            await conn.execute(text(
                "INSERT INTO conversations (channel_id, contact_id, slack_team, created_at, inbox_status) "
                "SELECT ch.id, co.id, 'default', :t, 'open' FROM channels ch, contacts co"), {"t": T0})
            await conn.execute(text(
                "INSERT INTO messages (wamid, conversation_id, direction, source, type, text, status_history, "
                "is_history, is_note, wa_timestamp, created_at) SELECT 'wamid.OLD', id, 'inbound', 'customer', "
                "'text', 'my hostel fee receipt', '[]', false, false, :t, :t FROM conversations"), {"t": T0})
        await migrate(db_url)
        sessions = make_sessionmaker(engine)
        async with sessions() as s:
            channel_id = (await s.execute(text("SELECT id FROM channels"))).scalar_one()
            hits = await find(s, Query(("hostel", "receipt")), workspace="default", channel_ids=[channel_id])
            assert [h.last_text for h in hits] == ["my hostel fee receipt"]
        async with sessions() as s, s.begin():  # and what is stored after the upgrade
            conv_id = (await s.execute(text("SELECT id FROM conversations"))).scalar_one()
            s.add(Message(conversation_id=conv_id, direction="inbound", source="customer", type="text",
                          text="bus pass renewal", wamid="wamid.NEW", wa_timestamp=T0 + timedelta(hours=1)))
        async with sessions() as s:
            assert len(await find(s, Query(("renewal",)), workspace="default", channel_ids=[channel_id])) == 1
    finally:
        await engine.dispose()


# ---- through Slack -------------------------------------------------------------------------------------------


@pytest.fixture
async def make(aiohttp_client: Any, db_url: str) -> AsyncIterator[BridgeFactory]:
    async with bridges(aiohttp_client, db_url) as build:
        yield build


async def _command(b: Bridge, text_: str, user: str) -> tuple[int, str]:
    form = {"token": "t", "team_id": b.slack.team_id, "channel_id": SLACK_CHANNEL, "user_id": user,
            "command": "/wabridge", "text": text_, "api_app_id": b.slack.app_id,
            "response_url": f"{b.slack.base_url}/response-url/x", "trigger_id": b.slack.issue_trigger_id()}
    return await b.slack_request(urlencode(form).encode(), "application/x-www-form-urlencoded")


def _answers(b: Bridge) -> list[str]:
    return [json.dumps(c.args.get("blocks"), ensure_ascii=False) for c in b.slack.calls_to("response_url")]


async def test_find_from_slack_answers_privately_with_links_to_threads(make: BridgeFactory) -> None:
    b = await make()
    b.slack.add_user(OUTSIDER, "outsider")  # in the workspace, not in the number's channel
    await b.webhook(inbound_text("wamid.S1", "about my fee refund", ts=now_ts(-60)))
    parent, _ = await thread_with(b, 1)

    assert (await _command(b, "find refund", STAFF))[0] == 200
    [answer] = await eventually(lambda: _answers(b))
    assert "1 conversation matching “refund”" in answer
    assert f"archives/{SLACK_CHANNEL}/p{str(parent['ts']).replace('.', '')}" in answer  # the thread's permalink
    assert "Owner: nobody" in answer and "about my fee refund" in answer
    assert b.slack.calls_to("response_url")[0].args["response_type"] == "ephemeral"

    assert (await _command(b, "find refund", OUTSIDER))[0] == 200  # not in the channel: sees nothing of it
    await eventually(lambda: len(_answers(b)) == 2)
    assert "No conversation matching “refund”" in _answers(b)[1]

    status, body = await _command(b, "find status:maybe", STAFF)
    assert status == 200 and "`status:` is `open` or `resolved`" in body
    status, body = await _command(b, "find", STAFF)
    assert status == 200 and "/wabridge find" in body
    assert len(_answers(b)) == 2

    # A word by its stem, a phrase in the quotes Slack's composer curls
    assert (await _command(b, "find refunds “my fee refund”", STAFF))[0] == 200
    await eventually(lambda: len(_answers(b)) == 3)
    assert '1 conversation matching “refunds \\"my fee refund\\"”' in _answers(b)[2]
    assert (await _command(b, 'find "fee refunds"', STAFF))[0] == 200
    await eventually(lambda: len(_answers(b)) == 4)
    assert 'No conversation matching “\\"fee refunds\\"”' in _answers(b)[3]
