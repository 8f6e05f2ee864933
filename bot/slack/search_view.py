"""`/wabridge find`: reading what a person typed into a search, and the private answer listing what it found."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.slack import limits
from bot.slack.render import ContactView, escape, format_time
from storage.search import Hit, Query, words_of

USAGE = ("Usage: `/wabridge find <words | \"exact phrase\" | name | number>` with any of `owner:@someone`, "
         "`owner:me`, `owner:none`, `status:open`, `status:resolved`, `label:NAME`. "
         "Example: `/wabridge find fee refund status:open`.")
_MENTION = re.compile(r"^<@([UW][A-Z0-9]+)(?:\|[^>]*)?>$")
_PHRASE = re.compile(r'"([^"]*)"|“([^”]*)”')  # Slack's composer may curl the quotes
SNIPPET = 150


@dataclass(frozen=True)
class Parsed:
    """A search asked for, or why it cannot be run."""

    query: Query | None
    problem: str | None = None


def parse(text: str, user: str, labels: Sequence[str] = ()) -> Parsed:
    """`fee refund owner:<@U0ASHA|asha> status:open label:fees` → words and filters; `"fee refund"` in quotes is a
    phrase (those words, in that order, as written); unknown filters and labels (`labels`: those configured) are
    explained."""
    phrases = [p for m in _PHRASE.finditer(text) if (p := words_of(m.group(1) or m.group(2) or ""))]
    text = _PHRASE.sub(" ", text)
    words: list[str] = []
    owner: str | None = None
    unowned = False
    status: str | None = None
    label: str | None = None
    for token in text.split():
        key, sep, value = token.partition(":")
        key = key.lower()
        if sep and key == "owner":
            if value.lower() == "me":
                owner = user
            elif value.lower() in ("none", "nobody"):
                unowned = True
            elif (m := _MENTION.match(value)) is not None:
                owner = m.group(1)
            else:
                return Parsed(None, f"`owner:` takes a mention (type `@` and pick the person), `me` or `none`, not "
                                    f"`{escape(value)}`.")
        elif sep and key == "status":
            if value.lower() not in ("open", "resolved"):
                return Parsed(None, f"`status:` is `open` or `resolved`, not `{escape(value)}`.")
            status = value.lower()
        elif sep and key == "label":
            if not labels:
                return Parsed(None, "No labels are set up (`inbox.labels`): search by words, owner or status.")
            if value not in labels:
                return Parsed(None, f"No label `{escape(value)}` here; the labels are "
                                    + ", ".join(f"`{escape(x)}`" for x in labels) + ".")
            label = value
        else:
            words += words_of(token)
    query = Query(tuple(words), owner, unowned, status, label, tuple(phrases))
    if not (query.terms or query.owner or query.unowned or query.status or query.label):
        return Parsed(None, USAGE)
    return Parsed(query)


def describe(query: Query) -> str:
    """The search in words, for the answer's first line."""
    said = [*query.words, *(f'"{" ".join(p)}"' for p in query.phrases)]
    parts = [f"“{escape(' '.join(said))}”"] if said else []
    if query.owner:
        parts.append(f"owned by <@{query.owner}>")
    if query.unowned:
        parts.append("owned by nobody")
    if query.status:
        parts.append(query.status)
    if query.label:
        parts.append(f"labelled {escape(query.label)}")
    return ", ".join(parts)


def answer_blocks(query: Query, hits: Sequence[Hit], links: Mapping[int, str], tz: str,
                  unchecked: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Up to 20 conversations: customer (linked to the thread), number, owner, status, newest message."""
    found = f"{len(hits)} conversation{'s' if len(hits) != 1 else ''}" if hits else "No conversation"
    blocks: list[dict[str, Any]] = [limits.section(f":mag: {found} matching {describe(query)}")]
    for hit in hits:
        name = escape(ContactView(hit.wa_id, hit.name).label)
        link = links.get(hit.conversation_id)
        who = f"<{link}|{name}>" if link else name
        owner = f"<@{hit.owner}>" if hit.owner else "nobody"
        state = ":white_check_mark: resolved" if hit.status == "resolved" else ":inbox_tray: open"
        last = ""
        if hit.last_text or hit.last_at:
            when = format_time(hit.last_at, tz) if hit.last_at else ""
            said = escape(limits.clip(" ".join((hit.last_text or "").split()), SNIPPET))
            last = f"\n> {said or '(no text)'} · {when}"
        tags = f" · :label: {escape(', '.join(hit.labels))}" if hit.labels else ""
        blocks.append(limits.section(f"*{who}* · {escape(hit.channel)} · Owner: {owner} · {state}{tags}{last}"))
    if unchecked:
        blocks.append(limits.context("Slack did not say whether you are in " + ", ".join(
            escape(c) for c in unchecked) + ": those numbers were left out. Try again in a moment."))
    return blocks
