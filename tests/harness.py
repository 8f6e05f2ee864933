"""The harness most end-to-end tests share: the real app between the Slack and Graph stand-ins.

`bridges` builds apps on one database (fresh stand-ins each, unless given ones to share); `eventually`
polls for what the app does in the background. The `make_bridge` and `bridge` fixtures (conftest.py) wrap
them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from bot.app.factory import create_app
from bot.app.slack_component import make_slack_component
from bot.handlers import appkeys
from bot.standins import GraphStandin, SlackStandin, sign_slack
from storage.models import Conversation
from tests.helpers import BOT_TOKEN, SIGNING_SECRET, SLACK_CHANNEL, make_settings, signed

WA_ID = "919812345678"
STAFF = "U0STAFF"
FAST_OUTBOX = {"poll_interval": 0.1, "backoff_base": 0.2, "backoff_cap": 1.0}


def now_ts(offset: int = 0) -> int:
    return int(time.time()) + offset


@dataclass
class Bridge:
    """The app under test and the two stand-ins it talks to."""

    client: TestClient
    slack: SlackStandin
    graph: GraphStandin

    @property
    def app(self) -> Any:
        return self.client.app

    async def webhook(self, payload: dict[str, Any]) -> None:
        body, headers = signed(payload)
        resp = await self.client.post("/webhooks/meta", data=body, headers=headers)
        assert resp.status == 200

    async def slack_request(self, body: bytes, content_type: str, extra: dict[str, str] | None = None
                            ) -> tuple[int, str]:
        headers = {"Content-Type": content_type, **sign_slack(SIGNING_SECRET, body), **(extra or {})}
        resp = await self.client.post("/slack/events", data=body, headers=headers)
        return resp.status, await resp.text()

    async def event(self, event: dict[str, Any], *, event_id: str = "Ev0001", retry_num: int | None = None
                    ) -> int:
        envelope_ = {"token": "t", "team_id": self.slack.team_id, "api_app_id": self.slack.app_id,
                     "event": event, "type": "event_callback", "event_id": event_id,
                     "event_time": now_ts(),
                     "authorizations": [{"team_id": self.slack.team_id, "user_id": self.slack.bot_user_id,
                                         "is_bot": True}]}
        extra = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"} if retry_num else None
        status_, _ = await self.slack_request(json.dumps(envelope_).encode(), "application/json", extra)
        return status_

    async def interaction(self, payload: dict[str, Any]) -> tuple[int, str]:
        data = {"team": {"id": self.slack.team_id}, "api_app_id": self.slack.app_id, **payload}
        data.setdefault("trigger_id", self.slack.issue_trigger_id())
        body = urlencode({"payload": json.dumps(data)}).encode()
        return await self.slack_request(body, "application/x-www-form-urlencoded")

    def parents(self) -> list[dict[str, Any]]:
        return self.slack.messages(SLACK_CHANNEL, top_level_only=True)

    def replies(self, parent_ts: str) -> list[dict[str, Any]]:
        return [m for m in self.slack.thread(SLACK_CHANNEL, parent_ts) if m["ts"] != parent_ts]

    async def count(self, model: Any, *where: Any) -> int:
        async with self.app[appkeys.SESSIONS]() as s:
            return int(await s.scalar(select(func.count()).select_from(model).where(*where)) or 0)

    async def one(self, model: Any, *where: Any) -> Any:
        async with self.app[appkeys.SESSIONS]() as s:
            return (await s.scalars(select(model).where(*where))).one()


async def eventually(check: Callable[[], Any | Awaitable[Any]], timeout: float = 30.0) -> Any:  # noqa: ASYNC109
    """Poll until check() is truthy (the app works in the background); fail with the last value.

    The timeout only bounds how long a test that fails takes to say so: on a busy machine the app's background
    work can take many seconds, so it is generous and never a claim about speed."""
    deadline = time.monotonic() + timeout
    value: Any = None
    while time.monotonic() < deadline:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")


BridgeFactory = Callable[..., Awaitable[Bridge]]


async def workspace_standin() -> SlackStandin:
    """A started Slack stand-in with the bridged channel, the alerts channel and a staff member in the first."""
    slack = SlackStandin(bot_token=BOT_TOKEN)
    await slack.start()
    slack.add_channel(SLACK_CHANNEL, "lucknow-whatsapp")
    slack.add_channel("C0ALERTS", "alerts")
    slack.add_user(STAFF, "asha", real_name="Asha")
    slack.join(SLACK_CHANNEL, STAFF)
    return slack


@contextlib.asynccontextmanager
async def bridges(aiohttp_client: Any, db_url: str) -> AsyncIterator[BridgeFactory]:
    """A factory of bridges on one database: each gets fresh stand-ins unless given ones to share."""
    started: list[Any] = []
    clients: list[Any] = []  # closed first: the app's workers stop before their database and stand-ins go

    async def build(*, slack: SlackStandin | None = None, graph: GraphStandin | None = None,
                    channel_extra: dict[str, Any] | None = None, outbox: dict[str, Any] | None = None,
                    with_slack: bool = True, run_migrations: bool = True,
                    channels: list[dict[str, Any]] | None = None,
                    settings_extra: dict[str, Any] | None = None) -> Bridge:
        if slack is None:
            slack = await workspace_standin()
            started.append(slack)
        if graph is None:
            graph = GraphStandin()
            await graph.start()
            started.append(graph)
        # /metrics public: bridge tests read the figures there (it is off by default).
        settings = make_settings(db_url, graph_url=graph.base_url, slack_url=slack.api_url,
                                 server={"metrics_public": True}, **(settings_extra or {}))
        if channel_extra or channels is not None:
            raw = settings.model_dump()
            if channels is not None:  # whole entries, in place of the one channel
                raw["channels"] = channels
            if channel_extra:
                raw["channels"][0].update(channel_extra)
            settings = type(settings).model_validate(raw)
        options = {**FAST_OUTBOX, **(outbox or {})}
        components = [make_slack_component(**options)] if with_slack else []
        client = await aiohttp_client(create_app(settings, run_migrations=run_migrations, components=components))
        clients.append(client)
        return Bridge(client, slack, graph)

    try:
        yield build
    finally:
        for client in clients:
            await client.close()
        for server in started:
            await server.stop()


async def post_webhook(client: Any, payload: dict[str, Any]) -> None:
    """Post one signed Meta delivery to an app under test; it must be acknowledged."""
    body, headers = signed(payload)
    resp = await client.post("/webhooks/meta", data=body, headers=headers)
    assert resp.status == 200


async def drain_webhooks(app: Any) -> None:
    """Apply every stored delivery now, with a worker of the app's own (for apps built with workers=False)."""
    from bot.bridge.meta_events import EventContext
    from bot.bridge.webhook_worker import WebhookWorker

    worker = WebhookWorker(app[appkeys.SESSIONS],
                           lambda: EventContext(app[appkeys.SETTINGS], app[appkeys.CHANNEL_IDS]),
                           app[appkeys.METRICS])
    while await worker.process_available():
        pass


def carries_message(parent: dict[str, Any]) -> bool:
    """Whether a thread parent also carries the conversation's first message (one post, not two)."""
    return "part" in ((parent.get("metadata") or {}).get("event_payload") or {})


def thread_posts(b: Bridge, parent: dict[str, Any]) -> list[dict[str, Any]]:
    """The thread's posts of messages: the parent when it carries the first one, then the replies."""
    return ([parent] if carries_message(parent) else []) + b.replies(parent["ts"])


async def thread_with(b: Bridge, n_posts: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The first thread's parent and its message posts (the parent first when it carries one), once n exist."""
    parents = await eventually(lambda: b.parents())

    def posts() -> list[dict[str, Any]]:
        parent = next(p for p in b.slack.messages(SLACK_CHANNEL, top_level_only=True)
                      if p["ts"] == parents[0]["ts"])
        return thread_posts(b, parent)

    found = await eventually(lambda: (r := posts()) and len(r) >= n_posts and r)

    async def recorded() -> bool:  # replies typed in the thread find its conversation from now on
        return await b.count(Conversation, Conversation.slack_thread_ts == parents[0]["ts"]) > 0

    await eventually(recorded)
    return found[0] if carries_message(found[0]) else parents[0], found


def all_text(message: dict[str, Any]) -> str:
    return json.dumps({"text": message.get("text"), "blocks": message.get("blocks")}, ensure_ascii=False)
