"""Did a Graph request that got no answer reach Meta? Decided from where the transport failed (pure).

- Nothing written (connect failed, pool or connect timeout, write failed): not sent, safe to send again.
- Written on a reused keep-alive connection that the server had already closed (it answers with EOF
  before any response byte, which httpx reports as RemoteProtocolError): Meta never read the request,
  so it is sent again at once on a new connection.
- Written and then the read failed or timed out (ReadError, ReadTimeout, a disconnect on a new connection):
  Meta may have accepted it. Sending again could message the customer twice, so the outcome is unknown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import httpx


class Delivery(StrEnum):
    NOT_SENT = "not_sent"
    STALE_CONNECTION = "stale_connection"
    UNKNOWN = "unknown"


@dataclass
class RequestTrace:
    """httpcore's trace extension for one request: was a new connection made, was the request written."""

    new_connection: bool = False
    written: bool = False
    response_started: bool = False
    events: list[str] = field(default_factory=list)

    async def __call__(self, name: str, info: dict[str, Any]) -> None:
        self.events.append(name)
        if name == "connection.connect_tcp.started":
            self.new_connection = True
        elif name.endswith(".send_request_headers.started"):
            self.written = True
        elif name.endswith(".receive_response_headers.complete"):
            self.response_started = True


def delivery_of(exc: httpx.TransportError, trace: RequestTrace) -> Delivery:
    """What a transport failure means for the request traced."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout | httpx.WriteError
                  | httpx.WriteTimeout | httpx.UnsupportedProtocol | httpx.ProxyError | httpx.LocalProtocolError):
        return Delivery.NOT_SENT
    if not trace.written:
        return Delivery.NOT_SENT
    if isinstance(exc, httpx.RemoteProtocolError) and not trace.new_connection and not trace.response_started:
        return Delivery.STALE_CONNECTION
    return Delivery.UNKNOWN
