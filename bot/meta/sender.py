"""Campaign template sends on a keep-alive aiohttp session: the one Graph call made at the number's full
rate, so it skips the general client's per-request work (httpx costs about 2 ms of CPU per call here).

The JSON body is assembled from pieces serialised once per template; only the recipient and the
components (its variables) are serialised per send. Failures surface as ``GraphError`` exactly as from
``GraphClient``; ``may_have_been_sent`` tells a lost answer (the request reached Meta) from a request that
never left.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import aiohttp

from bot.meta.callback import opaque
from bot.meta.errors import GraphError, parse_error_body
from bot.meta.graph import SendResult

__all__ = ["TemplateBody", "TemplateSender", "may_have_been_sent"]

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class TemplateBody:
    """The request body of one template in one language, with the recipient and components left open."""

    def __init__(self, name: str, language: str) -> None:
        self._head = b'{"messaging_product":"whatsapp","recipient_type":"individual","to":'
        self._middle = b',"type":"template","template":{"name":' + _dumps(name).encode() + \
            b',"language":' + _dumps({"code": language}).encode()
        self._tail = b"}"

    def render(self, to: str, components: Sequence[Mapping[str, Any]], callback_data: str | None = None) -> bytes:
        """The body for one recipient; ``components`` as Graph expects them (may be empty); ``callback_data``
        goes out as ``biz_opaque_callback_data`` (at most 512 characters), echoed on the message's statuses."""
        parts = [self._head, _dumps(to).encode(), self._middle]
        if components:
            parts += [b',"components":', _dumps(list(components)).encode()]
        parts.append(b"}")
        if callback_data:
            parts += [b',"biz_opaque_callback_data":', _dumps(opaque(callback_data)).encode()]
        parts.append(self._tail)
        return b"".join(parts)


class TemplateSender:
    """Posts template messages to ``/{phone_number_id}/messages`` over a pooled, kept-alive session."""

    def __init__(self, base_url: str, api_version: str, *, timeout: float = 10.0, connections: int = 64) -> None:
        self._root = f"{base_url.rstrip('/')}/{api_version.strip('/')}/"
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 5.0))
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, str] = {}

    def _open(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running loop, as aiohttp requires.
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._connections, keepalive_timeout=30, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout,
                headers={"User-Agent": "wabridge", "Content-Type": "application/json"})
        return self._session

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()

    async def send(
        self, phone_number_id: str, token: str, to: str, body: TemplateBody,
        components: Sequence[Mapping[str, Any]] = (), *, callback_data: str | None = None,
    ) -> SendResult:
        """Send one template message; ``GraphError`` on any failure."""
        url = self._urls.get(phone_number_id)
        if url is None:
            url = self._urls[phone_number_id] = f"{self._root}{quote(phone_number_id, safe='')}/messages"
        session = self._open()
        try:
            async with session.post(url, data=body.render(to, components, callback_data),
                                    headers={"Authorization": f"Bearer {token}"}) as response:
                raw = await response.read()
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except TimeoutError as exc:
            raise GraphError(None, None, message=f"timeout: {exc!r}") from exc
        except aiohttp.ClientError as exc:
            raise GraphError(None, None, message=f"network error: {exc!r}") from exc
        try:
            data: Any = json.loads(raw)
        except ValueError:
            data = raw.decode("utf-8", "replace")
        if status >= 400:
            raise parse_error_body(status, data, retry_after)
        if not isinstance(data, dict):
            raise GraphError(status, None, message="response is not a JSON object")
        if isinstance(data.get("error"), dict):  # Graph sometimes reports errors with a 200
            raise parse_error_body(status, data)
        messages = data.get("messages") or []
        if not messages or not isinstance(messages[0], dict) or not messages[0].get("id"):
            raise GraphError(status, None, message="send response has no message id", raw=data)
        contacts = data.get("contacts") or []
        wa_id = contacts[0].get("wa_id") if contacts and isinstance(contacts[0], dict) else None
        return SendResult(str(messages[0]["id"]), wa_id, messages[0].get("message_status"))


def may_have_been_sent(err: GraphError) -> bool:
    """True when the request went out but no answer came back: Meta may have accepted it."""
    cause = err.__cause__
    if isinstance(cause, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return False  # never connected: nothing left
    return isinstance(cause, TimeoutError | aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError)
