"""Which status reactions a mirrored message still needs (pure).

Each status Meta reports has its own outbox item that adds its reaction, so the message's first post only
adds the reactions of statuses whose items ran before it (while the message had no Slack post yet).
`read` and `played` share a reaction: it is added once. No reactions.add that Slack would answer with
`already_reacted`.
"""

from __future__ import annotations

from collections.abc import Iterable

from bot.slack import render


def status_dedupe_key(wamid: str, status: str) -> str:
    """The outbox dedupe key of a status's item (one per message and status)."""
    return f"status:{wamid}:{status}"


def reactions_to_add(seen: Iterable[str], owed_later: Iterable[str] = (), already: Iterable[str] = ()
                     ) -> list[str]:
    """Reaction names for the statuses seen, in order, without those a later item adds or already shown."""
    later = set(owed_later)
    names: list[str] = []
    shown = set(already)
    for status in seen:
        name = render.status_reaction(status)
        if name and status not in later and name not in shown and name not in names:
            names.append(name)
    return names
