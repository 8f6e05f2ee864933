"""An open-loop HTTP/1.1 loader light enough not to be what a benchmark measures.

Each request is rendered to bytes before the run and is due at a fixed time; it goes out on the first idle
keep-alive connection (or waits, in order, for one) and its latency counts from its due time, so a slow server
shows as latency rather than as a loader that quietly sends less. One request per connection at a time, no
pipelining, as Meta and aiohttp's client do. aiohttp's client costs about 150 µs of CPU per request, so at 4,000
requests/s the loader took two thirds of a core on a two-core machine and its own stalls set the tail (the same
idea as wrk2's constant-throughput mode, which Debian does not package).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

_HEAD_END = b"\r\n\r\n"


def render(url: str, body: bytes, headers: Mapping[str, str]) -> bytes:
    """A POST of body to url with headers, as the bytes sent on the wire."""
    parts = urlsplit(url)
    lines = [f"POST {parts.path or '/'} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class Outcome:
    """One request: seconds from its due time to the end of its response, and the status (0: no response)."""

    latency: float
    status: int


class _Connection(asyncio.Protocol):
    def __init__(self, loader: OpenLoop) -> None:
        self._loader = loader
        self._buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.due: float | None = None  # of the request in flight

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, request: bytes, due: float) -> None:
        assert self.transport is not None
        self.due = due
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        status = self._complete_response()
        if status is not None and self.due is not None:
            due, self.due = self.due, None
            self._loader.finished(self, due, status)

    def _complete_response(self) -> int | None:
        """The status of the response in the buffer once it is whole (and drops it from the buffer)."""
        end = self._buffer.find(_HEAD_END)
        if end < 0:
            return None
        head = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if len(self._buffer) < end + 4 + length:
            return None
        del self._buffer[:end + 4 + length]
        return int(head[0].split(" ", 2)[1])

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.due is not None:
            due, self.due = self.due, None
            self._loader.finished(self, due, 0)
        self._loader.lost(self)


class OpenLoop:
    """Sends rendered requests at a fixed rate over up to `connections` keep-alive connections."""

    def __init__(self, url: str, connections: int = 64) -> None:
        parts = urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._limit = connections
        self._idle: list[_Connection] = []
        self._conns: set[_Connection] = set()
        self._open = 0  # connections open or opening
        self._queue: deque[tuple[bytes, float]] = deque()  # due and not yet sent: no idle connection
        self._outcomes: list[Outcome] = []
        self._expected = 0
        self._all_done = asyncio.Event()

    async def run(self, requests: Sequence[bytes], rate: float, grace: float = 5.0) -> list[Outcome]:
        """Send each request at start + i / rate; every outcome once answered, or with status 0 once `grace`
        seconds past the last due time."""
        self._outcomes, self._expected = [], len(requests)
        self._all_done.clear()
        loop = asyncio.get_running_loop()
        start = time.monotonic() + 0.01
        for i, request in enumerate(requests):
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._queue.append((request, due))
            self._dispatch(loop)
        try:
            async with asyncio.timeout(max(0.0, start + len(requests) / rate + grace - time.monotonic())):
                await self._all_done.wait()
        except TimeoutError:
            now = time.monotonic()
            waiting = [due for _, due in self._queue] + [c.due for c in self._conns if c.due is not None]
            self._outcomes += [Outcome(now - due, 0) for due in waiting]
            self._queue.clear()
            for conn in self._conns:
                conn.due = None
            self.close()
        return self._outcomes

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        while self._queue and self._idle:
            request, due = self._queue.popleft()
            self._idle.pop().send(request, due)
        if self._queue and self._open < self._limit:
            self._open += 1
            loop.create_task(self._connect())

    async def _connect(self) -> None:
        try:
            _, conn = await asyncio.get_running_loop().create_connection(
                lambda: _Connection(self), self._host, self._port)
        except OSError:
            self._open -= 1
            if self._queue:
                _, due = self._queue.popleft()
                self._record(due, 0)
            return
        self._conns.add(conn)
        self._idle.append(conn)
        self._dispatch(asyncio.get_running_loop())

    def finished(self, conn: _Connection, due: float, status: int) -> None:
        self._record(due, status)
        if conn.transport is not None:
            self._idle.append(conn)
            self._dispatch(asyncio.get_running_loop())

    def lost(self, conn: _Connection) -> None:
        self._open -= 1
        self._conns.discard(conn)
        if conn in self._idle:
            self._idle.remove(conn)
        if self._queue:
            self._dispatch(asyncio.get_running_loop())

    def _record(self, due: float, status: int) -> None:
        self._outcomes.append(Outcome(time.monotonic() - due, status))
        if len(self._outcomes) >= self._expected:
            self._all_done.set()

    def close(self) -> None:
        """Close every connection."""
        for conn in list(self._conns):
            if conn.transport is not None:
                conn.transport.close()
        self._idle.clear()
