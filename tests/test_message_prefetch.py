"""A claim's message posts read their messages in one query before they start, and then read nothing more."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from bot.app.slack_component import make_outbox_worker
from bot.bridge.message_load import load_message, prefetch_messages
from bot.handlers import appkeys
from bot.slack.outbox_context import ItemContext
from storage.models import SlackOutbox
from storage.outbox_kinds import MessagePost
from tests.harness import BridgeFactory, eventually, now_ts
from tests.helpers import inbound_text


async def test_the_messages_of_a_claim_are_read_in_one_query_and_not_again(make_bridge: BridgeFactory) -> None:
    b = await make_bridge(with_slack=False)  # no outbox worker of the app's: the test claims
    for n in range(3):
        await b.webhook(inbound_text(f"wamid.pre{n}", f"question {n}", wa_id=f"91981000000{n}", ts=now_ts(n)))
    await eventually(lambda: _count_is(b, 3))
    deps = b.app[appkeys.DEPS]
    worker = make_outbox_worker(deps)
    items = await worker.claim(10)
    assert len(items) == 3

    statements: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("SELECT"):  # SQLite's sessions begin with a statement of their own
            statements.append(statement)

    engine = b.app[appkeys.ENGINE].sync_engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        await prefetch_messages(deps, items)
        assert len(statements) == 1  # the three messages, one query
        loaded = [await load_message(ItemContext(worker, item), item.payload["message_id"]) for item in items]
        assert len(statements) == 1  # nothing read again
        # An item that reads its message again (a retry in the same attempt) goes to the database.
        again = await load_message(ItemContext(worker, items[0]), items[0].payload["message_id"])
        assert len(statements) == 2
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert sorted(str(x.msg.text) for x in loaded if x is not None) == ["question 0", "question 1", "question 2"]
    assert again is not None and again.msg.id == items[0].payload["message_id"]
    await worker.unclaim(items)


async def _count_is(b: Any, n: int) -> bool:
    return await b.count(SlackOutbox, SlackOutbox.kind == MessagePost.KIND) == n
