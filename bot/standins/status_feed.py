"""The status webhooks Meta sends after each accepted message: `sent`, `delivered`, then `read`.

Each status is its own signed delivery, POSTed to the app's callback URL some time after the send, as Meta
does; a delivery that gets no 200 is retried with a growing delay, as Meta retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from bot.standins.signing import sign_meta

DEFAULT_DELAYS: tuple[tuple[str, float], ...] = (("sent", 0.3), ("delivered", 0.8), ("read", 2.0))
RETRY_FIRST, RETRY_CAP = 0.5, 30.0


def status_payload(*, waba_id: str, phone_number_id: str, display_phone_number: str, wamid: str, state: str,
                   recipient: str, timestamp: int, template: bool,
                   callback_data: str | None = None, group: bool = False) -> dict[str, Any]:
    """One status webhook as Meta formats it (pricing on sent and delivered; a conversation on sent; the
    send's `biz_opaque_callback_data`, when it had one, on every status). A group send's statuses name the
    group (`recipient_type: group`) and carry no conversation or pricing, as in Meta's group message samples."""
    status: dict[str, Any] = {"id": wamid, "status": state, "timestamp": str(timestamp),
                              "recipient_id": recipient}
    if group:
        status["recipient_type"] = "group"
    if callback_data:
        status["biz_opaque_callback_data"] = callback_data
    category = "marketing" if template else "service"
    if state == "sent" and not group:
        status["conversation"] = {"id": f"CONV{abs(hash(recipient)) % 10**12}",
                                  "expiration_timestamp": str(timestamp + 86400),
                                  "origin": {"type": category}}
    if state in ("sent", "delivered") and not group:
        status["pricing"] = {"billable": template, "pricing_model": "PMP", "category": category,
                             "type": "regular"}
    return {"object": "whatsapp_business_account", "entry": [{"id": waba_id, "changes": [{
        "field": "messages",
        "value": {"messaging_product": "whatsapp",
                  "metadata": {"display_phone_number": display_phone_number, "phone_number_id": phone_number_id},
                  "statuses": [status]}}]}]}


@dataclass
class FeedStats:
    """What the feed did: deliveries acknowledged, retries, and when the last one was acknowledged."""

    delivered: int = 0
    retries: int = 0
    last_delivered_at: float = 0.0  # CLOCK_MONOTONIC


class StatusFeed:
    """Posts status webhooks for accepted sends to one callback URL, signed with the app secret."""

    def __init__(self, url: str | Callable[[], str | None], app_secret: str, *,
                 delays: Sequence[tuple[str, float]] = DEFAULT_DELAYS, concurrency: int = 64) -> None:
        self.url = url
        self.app_secret = app_secret
        self.delays = tuple(delays)
        self.stats = FeedStats()
        self._limit = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    @property
    def pending(self) -> int:
        """Statuses scheduled or being delivered."""
        return len(self._tasks)

    def schedule(self, *, waba_id: str, phone_number_id: str, display_phone_number: str, wamid: str,
                 recipient: str, template: bool, callback_data: str | None = None, group: bool = False) -> None:
        """Owe the callback the statuses of one accepted send."""
        for state, delay in self.delays:
            payload = status_payload(waba_id=waba_id, phone_number_id=phone_number_id,
                                     display_phone_number=display_phone_number, wamid=wamid, state=state,
                                     recipient=recipient, timestamp=int(time.time() + delay), template=template,
                                     callback_data=callback_data, group=group)
            task = asyncio.create_task(self._deliver(json.dumps(payload).encode(), delay))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, body: bytes, delay: float) -> None:
        await asyncio.sleep(delay)
        headers = {"Content-Type": "application/json", "User-Agent": "facebookexternalua",
                   "X-Hub-Signature-256": sign_meta(self.app_secret, body)}
        wait = RETRY_FIRST
        while True:
            url = self.url() if callable(self.url) else self.url
            async with self._limit:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    if url is None:  # nobody listening at the moment (an app restarting behind its balancer)
                        raise TimeoutError
                    async with self._http().post(url, data=body, headers=headers) as resp:
                        await resp.read()
                        if resp.status == 200:
                            self.stats.delivered += 1
                            self.stats.last_delivered_at = time.monotonic()
                            return
            self.stats.retries += 1
            await asyncio.sleep(wait)
            wait = min(RETRY_CAP, wait * 2)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20))
        return self._session

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
