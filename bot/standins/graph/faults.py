"""What a test makes Meta do wrong: error answers per number or recipient, the per-number send cap, and
connections reset after a send or closed while idle."""

from __future__ import annotations

import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from bot.standins.graph.wire import digits


@dataclass
class Fault:
    """An error the next matching sends get (`remaining` None: every one until cleared)."""

    code: int
    http_status: int
    phone_number_id: str | None = None
    to: str | None = None
    remaining: int | None = 1  # None = permanent
    details: str | None = None

    def matches(self, pnid: str, to: str) -> bool:
        """True when a send from `pnid` to `to` is one this fault is for."""
        return (self.phone_number_id is None or self.phone_number_id == pnid) and (
            self.to is None or digits(self.to) == digits(to)
        )


@dataclass
class Throttle:
    """One number's messages-per-second cap and the sends in the last second."""

    mps: float
    window: deque[float] = field(default_factory=deque)


class GraphFaults:
    """The injected failures and send caps; `mps` caps every number unless set_mps says otherwise."""

    def __init__(self, *, mps: float | None) -> None:
        self.default_mps = mps
        self._throttles: dict[str, Throttle] = {}
        self._faults: list[Fault] = []
        self._drops: dict[str, int] = {}  # connection-level faults: mode -> sends left to affect
        self._used_connections: weakref.WeakSet[Any] = weakref.WeakSet()

    def set_mps(self, phone_number_id: str, mps: float | None) -> None:
        """Cap one number's sends per sliding second (None removes the cap)."""
        if mps is None:
            self._throttles.pop(phone_number_id, None)
        else:
            self._throttles[phone_number_id] = Throttle(mps)

    def fail_next(
        self,
        phone_number_id: str | None = None,
        to: str | None = None,
        code: int = 131000,
        times: int = 1,
        http_status: int = 400,
        details: str | None = None,
    ) -> None:
        """Make the next `times` matching sends fail with Meta error `code`."""
        self._faults.append(Fault(code, http_status, phone_number_id, to, times, details))

    def fail_recipient(self, to: str, code: int, http_status: int = 400, details: str | None = None) -> None:
        """Make every send to `to` fail with `code` until clear_failures()."""
        self._faults.append(Fault(code, http_status, None, to, None, details))

    def clear_failures(self) -> None:
        """Drop all injected failures."""
        self._faults.clear()
        self._drops.clear()

    def drop_answer_next(self, times: int = 1) -> None:
        """Accept the next `times` sends, then reset the connection (TCP RST) before answering: the send
        happened, the sender never hears of it."""
        self._drops["after_send"] = self._drops.get("after_send", 0) + times

    def close_idle_next(self, times: int = 1) -> None:
        """The next `times` sends that arrive on a reused keep-alive connection find it closed: the server
        shuts it without reading the request, as when an idle timeout fires just as the client writes."""
        self._drops["stale"] = self._drops.get("stale", 0) + times

    def take_drop(self, mode: str) -> bool:
        """True (and counted) when the next send is to suffer connection fault `mode`."""
        if self._drops.get(mode, 0) <= 0:
            return False
        self._drops[mode] -= 1
        return True

    def seen_connection(self, connection: Any) -> bool:
        """Whether a send already came on this connection (it is remembered from now on)."""
        reused = connection in self._used_connections
        self._used_connections.add(connection)
        return reused

    def throttled(self, pnid: str, now: float) -> bool:
        """True when a send from `pnid` now would go over its cap."""
        throttle = self._throttles.get(pnid)
        if throttle is None and self.default_mps is not None:
            throttle = self._throttles.setdefault(pnid, Throttle(self.default_mps))
        if throttle is None:
            return False
        window = throttle.window
        while window and window[0] <= now - 1.0:
            window.popleft()
        return len(window) >= throttle.mps

    def count_send(self, pnid: str, now: float) -> None:
        """Count an accepted send against its number's cap."""
        throttle = self._throttles.get(pnid)
        if throttle is not None:
            throttle.window.append(now)

    def take_fault(self, pnid: str, to: str) -> Fault | None:
        """The injected error this send gets, if any (a counted one is used up)."""
        for fault in self._faults:
            if fault.matches(pnid, to):
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                return fault
        return None

    def forget_sends(self) -> None:
        """Empty every cap's window (the records were reset)."""
        for throttle in self._throttles.values():
            throttle.window.clear()
