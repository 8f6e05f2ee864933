"""Outbox handlers registered by kind class: `kinds(handle(Note, mirror_note), ...)` is what a worker delivers.

A registered handler receives its item decoded into the kind's class (storage.outbox_kinds), so no handler
reads a payload by key; a row whose payload does not fit its class can never be delivered and is given up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from bot.slack.outbox_context import ItemContext
from bot.slack.outbox_errors import GiveUp
from storage.outbox_kinds import BadPayload, OutboxKind

K = TypeVar("K", bound=OutboxKind)

Handler = Callable[[ItemContext], Awaitable[None]]
"""Delivers one item; raises Retry to be tried later, returns normally when the item is done."""
Kinds = Mapping[str, Handler]
"""What a worker delivers: a handler per stored kind name."""


@dataclass(frozen=True)
class Registered(Generic[K]):
    """A handler for one kind class, callable as the worker's Handler."""

    kind: type[K]
    handler: Callable[[ItemContext, K], Awaitable[None]]

    async def __call__(self, ctx: ItemContext) -> None:
        try:
            item = self.kind.from_row(ctx.item.payload, ctx.item.conversation_id)
        except BadPayload as exc:
            raise GiveUp(str(exc)) from exc
        await self.handler(ctx, item)


def handle(kind: type[K], handler: Callable[[ItemContext, K], Awaitable[None]]) -> Registered[K]:
    """Register `handler` for the items of `kind`."""
    return Registered(kind, handler)


def kinds(*registered: Registered[Any]) -> dict[str, Handler]:
    """The worker's mapping for these registrations (one per kind class)."""
    out: dict[str, Handler] = {}
    for r in registered:
        if r.kind.KIND in out:
            raise ValueError(f"outbox kind {r.kind.KIND!r} registered twice")
        out[r.kind.KIND] = r
    return out


__all__ = ["Handler", "Kinds", "Registered", "handle", "kinds"]
