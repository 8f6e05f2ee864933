"""On SQLite a customer's webhook is stored and acknowledged while a large history import runs: the import
goes in slices, each its own transaction, and lets webhooks being stored write first between them."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import aiohttp

from storage.models import Message, SmbSync, WebhookLog
from tests.harness import bridges, eventually, now_ts
from tests.helpers import history_chunk, inbound_text, signed

CONVERSATIONS, PER_CONVERSATION = 1500, 2
TOTAL = CONVERSATIONS * PER_CONVERSATION


class WriteLockProbe:
    """Asks, without waiting, whether another connection holds SQLite's write lock right now."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, timeout=0, isolation_level=None)

    def locked(self) -> bool:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return True
        self.conn.execute("ROLLBACK")
        return False


async def test_a_customer_webhook_is_acknowledged_while_a_large_history_import_runs(
        aiohttp_client: Any, tmp_path: Path) -> None:
    path = tmp_path / "wabridge.db"
    async with bridges(aiohttp_client, f"sqlite+aiosqlite:///{path}") as build:
        b = await build()
        probe = WriteLockProbe(path)
        await b.webhook(history_chunk(CONVERSATIONS, PER_CONVERSATION))
        # The import is under way: it holds the write lock (all along, or all but a moment between slices).
        await eventually(lambda: b.count(Message, Message.is_history.is_(True)) if probe.locked() else False,
                         timeout=60)
        probe.conn.close()

        body, headers = signed(inbound_text("wamid.LIVE", "Is the Monday batch full?", ts=now_ts(-5)))
        resp = await b.client.post("/webhooks/meta", data=body, headers=headers,
                                   timeout=aiohttp.ClientTimeout(total=120))  # sanity only
        assert resp.status == 200
        # Acknowledged before the import was done, not after it.
        history = await b.one(WebhookLog, WebhookLog.event_type == "history")
        imported = await b.count(Message, Message.is_history.is_(True))
        assert history.processed_at is None and imported < TOTAL, imported

        async def done() -> bool:
            return await b.count(WebhookLog, WebhookLog.processed_at.is_(None)) == 0

        await eventually(done, timeout=300)
        assert await b.count(Message, Message.is_history.is_(True)) == TOTAL
        assert await b.count(Message, Message.wamid == "wamid.LIVE") == 1
        sync = await b.one(SmbSync)
        assert sync.items == TOTAL and sync.progress == 50
