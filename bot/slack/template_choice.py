"""Choosing a template in Slack when there are hundreds (pure: no I/O).

Selects list templates through `external_select`: Slack asks for options as the user types, and the
answer holds at most 100 of them. These helpers decide which 100: the ones matching every typed word,
shared fairly between WhatsApp Business Accounts, and say "100 of 300" when more match than fit.
The option value is the template's database id, so it is short whatever the template's name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.slack import limits


@dataclass(frozen=True)
class Choosable:
    """A template as a select offers it."""

    id: int
    waba_id: str
    name: str
    language: str
    category: str | None = None


def label(name: str, language: str) -> str:
    """`name (language)` in at most 75 characters; a long name loses its middle, never the language.

    Names often differ only at their end (`…_v2`), so the end is kept too."""
    tail = f" ({language})"
    room = limits.OPTION_TEXT - len(tail)
    if len(name) > room:
        keep_end = room // 3
        name = name[:room - keep_end - len(limits.ELLIPSIS)] + limits.ELLIPSIS + name[-keep_end:]
    return limits.clip(name + tail, limits.OPTION_TEXT)


def matches(query: str, t: Choosable) -> bool:
    """True when every word typed appears in the template's name, language or category."""
    haystack = f"{t.name} {t.name.replace('_', ' ')} {t.language} {t.category or ''}".lower()
    return all(word in haystack for word in query.lower().split())


def option(t: Choosable) -> dict[str, Any]:
    """One option: label as above, the category as its description, the id as its value."""
    return limits.option(label(t.name, t.language), str(t.id),
                         (t.category or "").lower() or None)


def _fair_share(groups: Sequence[Sequence[Choosable]], budget: int) -> list[int]:
    """How many of each group to show so that a big group cannot crowd the others out."""
    counts = [0] * len(groups)
    left = budget
    while left > 0:
        progressed = False
        for i, group in enumerate(groups):
            if left > 0 and counts[i] < len(group):
                counts[i] += 1
                left -= 1
                progressed = True
        if not progressed:
            break
    return counts


def suggestions(templates: Sequence[Choosable], query: str,
                group_label: Callable[[str], str] | None = None,
                budget: int = limits.OPTIONS_PER_SELECT) -> dict[str, Any]:
    """The answer to a `block_suggestion`: `options`, or `option_groups` (one per WABA, or to say how many
    matched when not all fit). Sorted by name then language."""
    found = sorted((t for t in templates if matches(query, t)), key=lambda t: (t.name, t.language, t.id))
    by_waba: dict[str, list[Choosable]] = {}
    for t in found:
        by_waba.setdefault(t.waba_id, []).append(t)
    wabas = list(by_waba)
    counts = _fair_share([by_waba[w] for w in wabas], budget)
    if group_label is None and len(wabas) <= 1:
        items = by_waba[wabas[0]][:counts[0]] if wabas else []
        options = [option(t) for t in items]
        if len(found) <= len(items):
            return {"options": options}
        heading = f"{len(items)} of {len(found):,}: type to narrow"
        return {"option_groups": [{"label": limits.plain(heading, limits.OPTION_GROUP_LABEL),
                                   "options": options}]}
    groups = []
    for waba, count in zip(wabas, counts, strict=True):
        items = by_waba[waba]
        name = group_label(waba) if group_label else waba
        more = f" ({count} of {len(items):,}: type to narrow)" if count < len(items) else ""
        if count:
            groups.append({"label": limits.plain(limits.clip(name, limits.OPTION_GROUP_LABEL - len(more)) + more,
                                                 limits.OPTION_GROUP_LABEL),
                           "options": [option(t) for t in items[:count]]})
    return {"option_groups": groups} if groups else {"options": []}


def typed(payload: Mapping[str, Any]) -> str:
    """What the user typed in a `block_suggestion` payload."""
    return str(payload.get("value") or "")
