"""Slack's side of Socket Mode, for the Slack stand-in: the WebSocket an app opens instead of a public URL.

As Slack documents it: `apps.connections.open` (with the app-level `xapp-` token) returns a one-time WebSocket
URL; on connecting, the app gets a `hello`; events, interactions and slash commands then arrive as envelopes
(`{"envelope_id", "type": "events_api" | "interactive" | "slash_commands", "payload",
"accepts_response_payload", "retry_attempt", "retry_reason"}`), each acknowledged by sending back
`{"envelope_id", "payload"?}`; Slack may ask the app to reconnect with `{"type": "disconnect", "reason"}`.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web


@dataclass
class Ack:
    """An app's acknowledgement of one envelope, with the response payload it carried (if any)."""

    envelope_id: str
    payload: dict[str, Any] | None


@dataclass
class SocketModeHub:
    """Hands out connection URLs, keeps the open sockets, sends envelopes and collects their acks."""

    app_id: str
    tickets: set[str] = field(default_factory=set)
    sockets: list[web.WebSocketResponse] = field(default_factory=list)
    acks: dict[str, Ack] = field(default_factory=dict)
    connections: int = 0  # sockets ever opened with a valid ticket
    _acked: asyncio.Condition | None = None
    _open: asyncio.Condition | None = None

    def issue_url(self, base_url: str) -> str:
        """A one-time URL, as apps.connections.open returns (ws:// on loopback where Slack gives wss://)."""
        ticket = secrets.token_urlsafe(16)
        self.tickets.add(ticket)
        return f"{base_url.replace('http://', 'ws://', 1)}/link/?ticket={ticket}"

    def _conditions(self) -> tuple[asyncio.Condition, asyncio.Condition]:
        if self._acked is None or self._open is None:
            self._acked, self._open = asyncio.Condition(), asyncio.Condition()
        return self._acked, self._open

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """GET /link/?ticket=…: the WebSocket itself."""
        ticket = request.query.get("ticket", "")
        if ticket not in self.tickets:
            return web.json_response({"ok": False, "error": "invalid_ticket"}, status=401)
        self.tickets.discard(ticket)
        acked, opened = self._conditions()
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json({"type": "hello", "num_connections": len(self.sockets) + 1,
                            "debug_info": {"host": "applink-standin", "build_number": 1,
                                           "approximate_connection_time": 18060},
                            "connection_info": {"app_id": self.app_id}})
        self.sockets.append(ws)
        self.connections += 1
        async with opened:
            opened.notify_all()
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    continue
                if isinstance(data, dict) and data.get("envelope_id"):
                    payload = data.get("payload")
                    self.acks[str(data["envelope_id"])] = Ack(str(data["envelope_id"]),
                                                              payload if isinstance(payload, dict) else None)
                    async with acked:
                        acked.notify_all()
        finally:
            if ws in self.sockets:
                self.sockets.remove(ws)
        return ws

    async def wait_connected(self, count: int = 1) -> None:
        """Until `count` sockets have connected (with hello sent)."""
        _, opened = self._conditions()
        async with opened:
            await opened.wait_for(lambda: self.connections >= count and bool(self.sockets))

    async def send(self, kind: str, payload: dict[str, Any], *, accepts_response_payload: bool = False,
                   retry_attempt: int = 0) -> str:
        """Deliver one envelope on the newest socket; returns its envelope_id."""
        envelope_id = secrets.token_hex(12)
        await self.sockets[-1].send_json({
            "envelope_id": envelope_id, "type": kind, "payload": payload,
            "accepts_response_payload": accepts_response_payload, "retry_attempt": retry_attempt,
            "retry_reason": "timeout" if retry_attempt else ""})
        return envelope_id

    async def ack_of(self, envelope_id: str) -> Ack:
        """The app's ack of an envelope, once it arrives."""
        acked, _ = self._conditions()
        async with acked:
            await acked.wait_for(lambda: envelope_id in self.acks)
        return self.acks[envelope_id]

    async def disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask the app to reconnect, as Slack does every few hours."""
        for ws in list(self.sockets):
            await ws.send_json({"type": "disconnect", "reason": reason,
                                "debug_info": {"host": "applink-standin"}})

    async def close(self) -> None:
        for ws in list(self.sockets):
            await ws.close()
