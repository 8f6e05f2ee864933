"""One outbox item's attempt as its handler sees it: Slack calls paced, mapped onto Retry, and never doubled.

Every post carries message metadata naming its outbox item; when a previous attempt's outcome is unknown
(timeout, 5xx, expired lease) the thread or channel is searched for that metadata before posting again. File
uploads record their file id before completing, and are checked the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import httpx
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.deps import Deps
from bot.slack.errors import retry_after as retry_after_of
from bot.slack.errors import slack_error_code
from bot.slack.outbox_errors import GiveUp, Retry, SlackCallFailed, Thread
from bot.slack.outbox_policy import Action, Backoff, decide, priority_of
from bot.slack.outbox_queue import OutboxItem
from bot.slack.pacer import Pacer
from bot.slack.render import Post
from storage.deferred import Write

log = logging.getLogger(__name__)

OUTBOX_EVENT = "wabridge_outbox"
THREAD_EVENT = "wabridge_thread"


class Delivering(Protocol):
    """What an attempt needs of the worker running it (bot.slack.outbox.OutboxWorker)."""

    deps: Deps
    slack: AsyncWebClient
    pacer: Pacer
    backoff_policy: Backoff
    upload_timeout: float

    async def paced(self, method: str, channel: str | None, priority: int, workspace: str = "") -> None: ...

    async def save_progress(self, item_id: int, result: Mapping[str, Any], item: OutboxItem | None = None
                            ) -> None: ...

    async def make_thread(self, ctx: ItemContext, conversation_id: int) -> Thread: ...


def _ts_key(ts: str) -> tuple[int, ...]:
    return tuple(int(p) for p in ts.split(".") if p.isdigit())


def _error_of(exc: SlackApiError) -> str:
    """Slack's error code (bot.slack.errors reads it); a JSON answer without one, or an answer that was not JSON."""
    code = slack_error_code(exc)
    if code is not None:
        return code
    return "unknown_error" if isinstance(getattr(exc.response, "data", None), dict) else "unexpected_response"


class ItemContext:
    """What a handler uses to talk to Slack for one item, with idempotency and error mapping built in."""

    def __init__(self, worker: Delivering, item: OutboxItem) -> None:
        self.worker = worker
        self.deps = worker.deps
        self.slack = worker.slack
        self.item = item
        self.result: dict[str, Any] = dict(item.result)
        self.parts: dict[str, str] = dict(self.result.get("parts") or {})
        self.result["parts"] = self.parts
        self._found: dict[tuple[str, str | None], dict[str, str]] = {}
        self.cache: dict[str, Any] = item.cache
        """Rows and answers handlers keep for the rest of this attempt (so they are read once)."""
        self.writes: list[Write] = []
        self._turns: set[str] = set()  # methods whose slot `turn` took before the call

    def defer(self, write: Write) -> None:
        """Run write in the transaction that records this attempt's outcome (done or retry); a template's writes
        from a batch of outcomes run as one executemany (storage.deferred)."""
        self.writes.append(write)

    # ---- calls -------------------------------------------------------------------------------------

    async def turn(self, method: str) -> None:
        """Take the slot of the next `method` call now, before reading what it will say: an item far from its
        turn then goes back to the table having read nothing. Only for methods paced per workspace, not per
        channel (bot.slack.pacing)."""
        await self.worker.paced(method, None, priority_of(self.item.kind), self.item.slack_team)
        self._turns.add(method)

    async def call(self, method: str, channel: str | None, fn: Callable[[], Awaitable[Any]]) -> Any:
        """Run one Slack call in its paced slot, mapping failures onto Retry / SlackCallFailed."""
        if method in self._turns:
            self._turns.discard(method)  # its slot was taken by `turn`
        else:
            await self.worker.paced(method, channel, priority_of(self.item.kind), self.item.slack_team)
        if self.item.guard is not None and not self.item.guard():
            # This process went unheard long enough for another to have taken the item over: posting now
            # could double what the other posts. Its settle will be fenced off; the new claimant decides.
            raise Retry(f"{method}: this process may have lost its claim", uncertain=True)
        try:
            return await fn()
        except SlackApiError as exc:
            status = getattr(exc.response, "status_code", 200)
            error = _error_of(exc)
            retry_after = retry_after_of(exc) if status == 429 else None
            outcome = decide(error, self.item.attempts, status=status, retry_after=retry_after,
                             backoff=self.worker.backoff_policy)
            if outcome.action is Action.RETRY and (status == 429 or error == "ratelimited"):
                await self.worker.pacer.pause(method, channel, outcome.delay, self.item.slack_team)
                raise Retry(f"{method}: rate limited for {outcome.delay:g}s", delay=outcome.delay) from exc
            if outcome.action is Action.RETRY and outcome.uncertain:
                raise Retry(f"{method}: HTTP {status} {error}", uncertain=True) from exc
            raise SlackCallFailed(error, method) from exc
        except (TimeoutError, aiohttp.ClientError, httpx.TransportError, OSError) as exc:
            raise Retry(f"{method}: {type(exc).__name__}: {exc}", uncertain=True) from exc

    def _metadata(self, part: str) -> dict[str, Any]:
        return {"event_type": OUTBOX_EVENT, "event_payload": {"outbox_id": self.item.id, "part": part}}

    async def _messages(self, channel: str, thread_ts: str | None) -> list[dict[str, Any]]:
        """Recent messages with their metadata: a thread's replies, or the channel's history."""
        out: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(20 if thread_ts else 5):
            resp = await self.call("conversations.replies" if thread_ts else "conversations.history", channel,
                                   self._page_fetcher(channel, thread_ts, cursor))
            out.extend(resp.get("messages") or [])
            cursor = (resp.get("response_metadata") or {}).get("next_cursor") or None
            if not resp.get("has_more") or not cursor:
                break
        return out

    def _page_fetcher(self, channel: str, thread_ts: str | None, cursor: str | None
                      ) -> Callable[[], Awaitable[Any]]:
        def fetch() -> Awaitable[Any]:
            if thread_ts:
                return self.slack.conversations_replies(channel=channel, ts=thread_ts, include_all_metadata=True,
                                                        limit=200, cursor=cursor)
            return self.slack.conversations_history(channel=channel, include_all_metadata=True, limit=200,
                                                    cursor=cursor)

        return fetch

    async def find_posted(self, channel: str, thread_ts: str | None) -> dict[str, str]:
        """Parts of this item already in Slack (part -> ts), found by their metadata."""
        key = (channel, thread_ts)
        if key not in self._found:
            found: dict[str, str] = {}
            for m in await self._messages(channel, thread_ts):
                meta = m.get("metadata") or {}
                payload = meta.get("event_payload") or {}
                # A thread parent may carry an item's message too (see bot.slack.parent).
                if (meta.get("event_type") in (OUTBOX_EVENT, THREAD_EVENT)
                        and payload.get("outbox_id") == self.item.id and "part" in payload):
                    part, ts = str(payload.get("part")), str(m["ts"])
                    if part not in found or _ts_key(ts) < _ts_key(found[part]):
                        found[part] = ts
            self._found[key] = found
        return self._found[key]

    async def post(self, channel: str, post: Post, *, thread_ts: str | None = None, part: str = "0",
                   reply_broadcast: bool = False) -> str:
        """Post one message (once per item and part, across attempts and processes); returns its ts."""
        if part in self.parts:
            return self.parts[part]
        if self.item.uncertain:
            found = (await self.find_posted(channel, thread_ts)).get(part)
            if found:
                self.parts[part] = found
                return found
        args: dict[str, Any] = {"channel": channel, "text": post.text, "metadata": self._metadata(part),
                                "unfurl_links": False, "unfurl_media": False}
        if post.blocks:
            args["blocks"] = post.blocks
        if thread_ts:
            args["thread_ts"] = thread_ts
            if reply_broadcast:
                args["reply_broadcast"] = True
        resp = await self._post_or_plain(channel, args, post)
        ts = str(resp["ts"])
        self.parts[part] = ts
        return ts

    async def update_message(self, channel: str, ts: str, post: Post) -> None:
        """Replace a message's text and blocks (idempotent by nature)."""
        args: dict[str, Any] = {"channel": channel, "ts": ts, "text": post.text, "blocks": post.blocks or []}
        await self.call("chat.update", channel, lambda: self.slack.chat_update(**args))

    async def react(self, channel: str, ts: str, name: str) -> None:
        """Add a reaction (once per item, across attempts); one already there counts as done."""
        part = f"reaction:{channel}:{ts}:{name}"
        if part in self.parts:
            return
        try:
            await self.call("reactions.add", channel,
                            lambda: self.slack.reactions_add(channel=channel, timestamp=ts, name=name))
        except SlackCallFailed as exc:
            if exc.error != "already_reacted":
                raise
        self.parts[part] = name

    async def unreact(self, channel: str, ts: str, name: str) -> None:
        """Remove the bot's reaction; one that is not there counts as done."""
        try:
            await self.call("reactions.remove", channel,
                            lambda: self.slack.reactions_remove(channel=channel, timestamp=ts, name=name))
        except SlackCallFailed as exc:
            if exc.error != "no_reaction":
                raise
        self.parts.pop(f"reaction:{channel}:{ts}:{name}", None)

    async def upload(self, channel: str, thread_ts: str | None, data: bytes, filename: str, *,
                     title: str | None = None, part: str = "file") -> str:
        """Upload a file into a channel or thread once per item and part; returns the file id."""
        if part in self.parts:
            return self.parts[part]
        pending: dict[str, str] = self.result.setdefault("pending_files", {})
        if part in pending:
            file_id = pending[part]
            try:
                info = await self.call("files.info", channel, lambda: self.slack.files_info(file=file_id))
                shares = (info.get("file") or {}).get("shares") or {}
                if any(channel in group for group in shares.values()):
                    self.parts[part] = file_id
                    pending.pop(part, None)
                    return file_id
            except SlackCallFailed:
                pass  # gone or never completed: upload afresh
            pending.pop(part, None)
        got = await self.call("files.getUploadURLExternal", None, lambda: self.slack.files_getUploadURLExternal(
            filename=filename, length=len(data)))
        file_id, upload_url = str(got["file_id"]), str(got["upload_url"])
        try:
            async with httpx.AsyncClient(timeout=self.worker.upload_timeout) as http:
                resp = await http.post(upload_url, content=data,
                                       headers={"Content-Type": "application/octet-stream"})
        except httpx.HTTPError as exc:
            raise Retry(f"file upload: {type(exc).__name__}: {exc}") from exc
        if resp.status_code >= 400:
            raise Retry(f"file upload: HTTP {resp.status_code}")
        # Known before completing: if completion's answer is lost, the next attempt asks Slack about it.
        pending[part] = file_id
        await self.worker.save_progress(self.item.id, self.result, self.item)
        files: list[dict[str, str | None]] = [{"id": file_id, "title": title or filename}]
        try:
            await self.call("files.completeUploadExternal", channel, lambda: self.slack.files_completeUploadExternal(
                files=files, channel_id=channel, thread_ts=thread_ts))
        except Retry:
            raise
        except SlackCallFailed:
            pending.pop(part, None)
            raise
        pending.pop(part, None)
        self.parts[part] = file_id
        return file_id

    # ---- threads -----------------------------------------------------------------------------------

    async def thread_for(self, conversation_id: int) -> Thread:
        """The conversation's Slack thread, posting its parent message first when there is none yet."""
        return await self.worker.make_thread(self, conversation_id)

    async def find_thread_parent(self, channel: str, conversation_id: int) -> FoundParent | None:
        """A parent posted by an attempt whose answer was lost, found by its metadata."""
        found: list[FoundParent] = []
        for m in await self._messages(channel, None):
            meta = m.get("metadata") or {}
            payload = meta.get("event_payload") or {}
            if meta.get("event_type") == THREAD_EVENT and payload.get("conversation_id") == conversation_id:
                found.append(FoundParent(str(m["ts"]), payload.get("outbox_id"), payload.get("part")))
        # Should there ever be two, the first one posted is the thread people have seen longest.
        return min(found, key=lambda f: _ts_key(f.ts)) if found else None

    async def post_parent(self, channel: str, post: Post, conversation_id: int, *, part: str | None = None
                          ) -> str:
        """Post a thread parent tagged with its conversation (so a lost answer can be found again).

        With `part`, the parent carries that part of this item (its first message) and says so in its metadata.
        """
        payload: dict[str, Any] = {"conversation_id": conversation_id}
        if part is not None:
            payload.update(outbox_id=self.item.id, part=part)
        args: dict[str, Any] = {
            "channel": channel, "text": post.text, "blocks": post.blocks, "unfurl_links": False,
            "unfurl_media": False, "metadata": {"event_type": THREAD_EVENT, "event_payload": payload},
        }
        resp = await self._post_or_plain(channel, args, post)
        return str(resp["ts"])

    async def _post_or_plain(self, channel: str, args: dict[str, Any], post: Post) -> Any:
        """chat.postMessage; if Slack refuses the layout, once more as plain text, then give up."""
        if post.username:  # shown under the customer's name (chat:write.customize)
            args["username"] = post.username
        if post.icon_emoji:
            args["icon_emoji"] = post.icon_emoji
        try:
            return await self.call("chat.postMessage", channel, lambda: self.slack.chat_postMessage(**args))
        except SlackCallFailed as exc:
            if decide(exc.error, self.item.attempts).action is not Action.PLAIN_TEXT:
                raise
            # Slack refused the layout: the words matter more than the blocks, so send them plainly.
            log.warning("outbox %s: Slack refused the post (%s); sending plain text", self.item.id, exc.error)
            args.pop("blocks", None)
            args["text"] = str(args.get("text") or "")[:39_000]
            try:
                return await self.call("chat.postMessage", channel, lambda: self.slack.chat_postMessage(**args))
            except SlackCallFailed as again:
                if decide(again.error, self.item.attempts, plain_text_tried=True).action is Action.GIVE_UP:
                    raise GiveUp(f"Slack refused the message: {again.error}") from again
                raise


@dataclass(frozen=True)
class FoundParent:
    """A thread parent found in Slack, and which outbox item's part it carries (if any)."""

    ts: str
    outbox_id: Any = None
    part: Any = None

    def carries(self, item_id: int, part: str) -> bool:
        return self.outbox_id == item_id and self.part == part



__all__ = ["OUTBOX_EVENT", "THREAD_EVENT", "Delivering", "FoundParent", "ItemContext"]
