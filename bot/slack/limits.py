"""Slack's Block Kit limits, and the one place that fits a payload to them (pure: no I/O).

Every renderer builds its messages and views through these helpers, so no payload Slack would refuse
leaves the bridge. Text that does not fit is either split (message bodies: nothing may be lost) or
shortened with a visible "…" (labels, titles, option text: the full text is available elsewhere).
Values that identify something (option values, private_metadata) are never shortened: a cut value would
point at something else, so the renderer must choose short values (ids) and `fit_view` refuses long ones.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# Documented Block Kit and Web API limits (api.slack.com/reference/block-kit).
BLOCKS_PER_MESSAGE = 50
BLOCKS_PER_VIEW = 100
SECTION_TEXT = 3000
HEADER_TEXT = 150
CONTEXT_ELEMENTS = 10
CONTEXT_TEXT = 3000  # Slack documents no lower limit for a context text object; keep it section-sized
BUTTON_TEXT = 75
OPTION_TEXT = 75
OPTION_VALUE = 150
OPTION_DESCRIPTION = 75
OPTION_GROUP_LABEL = 75
OPTIONS_PER_SELECT = 100
PLACEHOLDER = 150
INPUT_LABEL = 2000
INPUT_HINT = 2000
INPUT_TEXT = 3000  # plain_text_input max_length and initial_value
VIEW_TITLE = 24
VIEW_BUTTON = 24  # submit and close
PRIVATE_METADATA = 3000
MESSAGE_TEXT = 40_000  # chat.postMessage truncates `text` beyond this
# Slack refuses a message whose blocks hold too much text in total (`msg_blocks_too_long`); it does not
# document the figure and refusals were seen near 13,000 characters, so messages stay well under it.
MESSAGE_BLOCK_TEXT = 12_000
# The fallback `text` shows in notifications and screen readers when blocks are present: a summary.
FALLBACK_SUMMARY = 300

ELLIPSIS = "…"
_ENTITY_TAIL = re.compile(r"&[a-z]{0,3}$")


class LimitError(ValueError):
    """A value that must not be shortened (an option value, private_metadata) is too long."""


def clip(text: str, limit: int) -> str:
    """Text shortened to at most `limit` characters, ending in "…" when it was cut.

    Never leaves half of an `&amp;`-style entity, so escaped mrkdwn stays well formed."""
    if len(text) <= limit:
        return text
    head = text[:max(limit - len(ELLIPSIS), 0)]
    tail = _ENTITY_TAIL.search(head)
    if tail is not None:
        head = head[:tail.start()]
    return head.rstrip() + ELLIPSIS


def summary(text: str, limit: int = FALLBACK_SUMMARY) -> str:
    """A short one-paragraph summary for a message's fallback `text` (notifications, screen readers)."""
    flat = " ".join(text.split())
    return clip(flat, limit) or " "


def plain(text: str, limit: int) -> dict[str, Any]:
    """A plain_text object of at most `limit` characters (Slack refuses an empty one)."""
    return {"type": "plain_text", "text": clip(text, limit) or " ", "emoji": True}


def option(label: str, value: str, description: str | None = None) -> dict[str, Any]:
    """A select option: label shortened visibly, value kept whole (or refused: it identifies the choice)."""
    if len(value) > OPTION_VALUE:
        raise LimitError(f"option value of {len(value)} characters (Slack takes {OPTION_VALUE})")
    out: dict[str, Any] = {"text": plain(label, OPTION_TEXT), "value": value}
    if description:
        out["description"] = plain(description, OPTION_DESCRIPTION)
    return out


def metadata(raw: str) -> str:
    """private_metadata, refused rather than cut when too long (a cut JSON document cannot be read)."""
    if len(raw) > PRIVATE_METADATA:
        raise LimitError(f"private_metadata of {len(raw)} characters (Slack takes {PRIVATE_METADATA})")
    return raw


def block_text_length(block: Mapping[str, Any]) -> int:
    """Characters of text a block carries (what `msg_blocks_too_long` counts)."""
    total = 0
    text = block.get("text")
    if isinstance(text, Mapping):
        total += len(str(text.get("text") or ""))
    for element in block.get("elements") or []:
        if isinstance(element, Mapping):
            total += len(str(element.get("text") or "")) if isinstance(element.get("text"), str) \
                else block_text_length(element)
    for field in block.get("fields") or []:
        if isinstance(field, Mapping):
            total += len(str(field.get("text") or ""))
    return total


def split_text(text: str, limit: int = SECTION_TEXT) -> list[str]:
    """Text in chunks of at most `limit` characters, cut at line or word breaks when possible.

    Never cuts an `&amp;`-style entity in two, so escaped text can be split after escaping."""
    chunks: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = rest.rfind("\n", limit // 2, limit)
        if cut <= 0:
            cut = rest.rfind(" ", limit // 2, limit)
        if cut <= 0:
            cut = limit
            tail = _ENTITY_TAIL.search(rest[:cut])
            if tail is not None:
                cut = tail.start()
        chunks.append(rest[:cut])
        rest = rest[cut:].lstrip("\n") if rest[cut:cut + 1] == "\n" else rest[cut:]
    if rest or not chunks:
        chunks.append(rest)
    return chunks


def section(text: str) -> dict[str, Any]:
    """One mrkdwn section; text over the limit is shortened visibly (use `sections` to keep it all)."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, SECTION_TEXT) or " "}}


def sections(text: str) -> list[dict[str, Any]]:
    """As many sections as the text needs, nothing dropped."""
    return [{"type": "section", "text": {"type": "mrkdwn", "text": chunk}}
            for chunk in split_text(text, SECTION_TEXT) if chunk.strip()]


def context(*texts: str) -> dict[str, Any]:
    """A context block of up to ten mrkdwn elements (the rest are joined into the last one)."""
    parts = [t for t in texts if t] or [" "]
    if len(parts) > CONTEXT_ELEMENTS:
        parts = [*parts[:CONTEXT_ELEMENTS - 1], "\n".join(parts[CONTEXT_ELEMENTS - 1:])]
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(t, CONTEXT_TEXT)} for t in parts]}


def pack_blocks(blocks: Sequence[dict[str, Any]], *, max_blocks: int = BLOCKS_PER_MESSAGE,
                max_text: int = MESSAGE_BLOCK_TEXT) -> list[list[dict[str, Any]]]:
    """Blocks grouped into as few messages as Slack takes, in order (a single block always fits alone)."""
    messages: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    used = 0
    for block in blocks:
        size = block_text_length(block)
        if current and (len(current) >= max_blocks or used + size > max_text):
            messages.append(current)
            current, used = [], 0
        current.append(block)
        used += size
    if current or not messages:
        messages.append(current)
    return messages


def fit_view(view: Mapping[str, Any]) -> dict[str, Any]:
    """A modal fitted to Slack's limits: titles, labels and texts shortened visibly, blocks capped.

    Raises LimitError for an option value or private_metadata that is too long."""
    out = copy.deepcopy(dict(view))
    if isinstance(out.get("title"), Mapping):
        out["title"] = plain(str(out["title"].get("text") or ""), VIEW_TITLE)
    for key in ("submit", "close"):
        if isinstance(out.get(key), Mapping):
            out[key] = plain(str(out[key].get("text") or ""), VIEW_BUTTON)
    if "private_metadata" in out:
        metadata(str(out["private_metadata"]))
    blocks = [_fit_block(b) for b in out.get("blocks") or []]
    if len(blocks) > BLOCKS_PER_VIEW:
        hidden = len(blocks) - (BLOCKS_PER_VIEW - 1)
        blocks = [*blocks[:BLOCKS_PER_VIEW - 1], context(f"… and {hidden:,} more not shown here.")]
    out["blocks"] = blocks
    return out


def _fit_text_object(obj: Mapping[str, Any], limit: int) -> dict[str, Any]:
    fitted = dict(obj)
    fitted["text"] = clip(str(obj.get("text") or ""), limit) or " "
    return fitted


def _fit_options(options: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for o in options:
        value = str(o.get("value") or "")
        if len(value) > OPTION_VALUE:
            raise LimitError(f"option value of {len(value)} characters (Slack takes {OPTION_VALUE})")
        fitted = dict(o)
        fitted["text"] = _fit_text_object(o.get("text") or {}, OPTION_TEXT)
        if isinstance(o.get("description"), Mapping):
            fitted["description"] = _fit_text_object(o["description"], OPTION_DESCRIPTION)
        out.append(fitted)
    return out


def _fit_element(element: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(element)
    if isinstance(out.get("placeholder"), Mapping):
        out["placeholder"] = _fit_text_object(out["placeholder"], PLACEHOLDER)
    if out.get("type") == "button" and isinstance(out.get("text"), Mapping):
        out["text"] = _fit_text_object(out["text"], BUTTON_TEXT)
    if "options" in out:
        out["options"] = _fit_options(out["options"] or [])[:OPTIONS_PER_SELECT]
    if "option_groups" in out:
        groups, budget = [], OPTIONS_PER_SELECT
        for g in out["option_groups"] or []:
            options = _fit_options(g.get("options") or [])[:budget]
            budget -= len(options)
            if options:
                groups.append({**g, "label": _fit_text_object(g.get("label") or {}, OPTION_GROUP_LABEL),
                               "options": options})
        out["option_groups"] = groups
    for key in ("initial_option",):
        if isinstance(out.get(key), Mapping):
            out[key] = _fit_options([out[key]])[0]
    if isinstance(out.get("initial_value"), str):
        out["initial_value"] = out["initial_value"][:INPUT_TEXT]
    return out


def _fit_block(block: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(block)
    kind = out.get("type")
    if kind == "section" and isinstance(out.get("text"), Mapping):
        out["text"] = _fit_text_object(out["text"], SECTION_TEXT)
    elif kind == "header" and isinstance(out.get("text"), Mapping):
        out["text"] = _fit_text_object(out["text"], HEADER_TEXT)
    elif kind == "context":
        elements = list(out.get("elements") or [])[:CONTEXT_ELEMENTS]
        out["elements"] = [_fit_text_object(e, CONTEXT_TEXT) if "text" in e else e for e in elements]
    elif kind == "input":
        out["label"] = _fit_text_object(out.get("label") or {}, INPUT_LABEL)
        if isinstance(out.get("hint"), Mapping):
            out["hint"] = _fit_text_object(out["hint"], INPUT_HINT)
    if isinstance(out.get("element"), Mapping):
        out["element"] = _fit_element(out["element"])
    if isinstance(out.get("accessory"), Mapping):
        out["accessory"] = _fit_element(out["accessory"])
    if kind == "actions":
        out["elements"] = [_fit_element(e) for e in out.get("elements") or []]
    return out


# ---- checking (what tests and the Slack stand-in hold payloads to) ----------------------------------


def _text_of(obj: Any) -> str:
    return str(obj.get("text") or "") if isinstance(obj, Mapping) else ""


def _element_problems(element: Mapping[str, Any], where: str) -> list[str]:
    problems: list[str] = []
    if len(_text_of(element.get("placeholder"))) > PLACEHOLDER:
        problems.append(f"{where}: placeholder over {PLACEHOLDER}")
    if element.get("type") == "button" and len(_text_of(element.get("text"))) > BUTTON_TEXT:
        problems.append(f"{where}: button text over {BUTTON_TEXT}")
    options = list(element.get("options") or [])
    for g in element.get("option_groups") or []:
        if len(_text_of(g.get("label"))) > OPTION_GROUP_LABEL:
            problems.append(f"{where}: option group label over {OPTION_GROUP_LABEL}")
        options.extend(g.get("options") or [])
    if len(options) > OPTIONS_PER_SELECT:
        problems.append(f"{where}: {len(options)} options (at most {OPTIONS_PER_SELECT})")
    initial = element.get("initial_option")
    for o in [*options, *([initial] if isinstance(initial, Mapping) else [])]:
        if not 1 <= len(_text_of(o.get("text"))) <= OPTION_TEXT:
            problems.append(f"{where}: option text of {len(_text_of(o.get('text')))} characters")
        if not 1 <= len(str(o.get("value") or "")) <= OPTION_VALUE:
            problems.append(f"{where}: option value of {len(str(o.get('value') or ''))} characters")
    max_length = element.get("max_length")
    if isinstance(max_length, int) and max_length > INPUT_TEXT:
        problems.append(f"{where}: max_length over {INPUT_TEXT}")
    return problems


def block_problems(blocks: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every documented limit the blocks break (empty when Slack would take them)."""
    problems: list[str] = []
    for i, block in enumerate(blocks):
        where = f"block {i} ({block.get('type')})"
        kind = block.get("type")
        text = _text_of(block.get("text"))
        if kind == "section" and not 1 <= len(text) <= SECTION_TEXT and not block.get("fields"):
            problems.append(f"{where}: text of {len(text)} characters")
        if kind == "header" and not 1 <= len(text) <= HEADER_TEXT:
            problems.append(f"{where}: header of {len(text)} characters")
        if kind == "context":
            elements = block.get("elements") or []
            if not 1 <= len(elements) <= CONTEXT_ELEMENTS:
                problems.append(f"{where}: {len(elements)} elements")
            for e in elements:
                if "text" in e and not 1 <= len(_text_of(e)) <= CONTEXT_TEXT:
                    problems.append(f"{where}: context text of {len(_text_of(e))} characters")
        if kind == "input":
            if not 1 <= len(_text_of(block.get("label"))) <= INPUT_LABEL:
                problems.append(f"{where}: label of {len(_text_of(block.get('label')))} characters")
            if len(_text_of(block.get("hint"))) > INPUT_HINT:
                problems.append(f"{where}: hint over {INPUT_HINT}")
        for key in ("element", "accessory"):
            if isinstance(block.get(key), Mapping):
                problems += _element_problems(block[key], where)
        if kind == "actions":
            for e in block.get("elements") or []:
                problems += _element_problems(e, where)
    return problems


def message_problems(text: str, blocks: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every limit a chat.postMessage / chat.update payload breaks."""
    problems = block_problems(blocks)
    if len(blocks) > BLOCKS_PER_MESSAGE:
        problems.append(f"{len(blocks)} blocks (at most {BLOCKS_PER_MESSAGE})")
    total = sum(block_text_length(b) for b in blocks)
    if total > MESSAGE_BLOCK_TEXT:
        problems.append(f"{total} characters of block text (msg_blocks_too_long)")
    if len(text) > MESSAGE_TEXT:
        problems.append(f"text of {len(text)} characters")
    if blocks and len(text) > FALLBACK_SUMMARY:
        problems.append(f"fallback text of {len(text)} characters repeats the body")
    return problems


def view_problems(view: Mapping[str, Any]) -> list[str]:
    """Every limit a views.open / views.update payload breaks."""
    blocks = list(view.get("blocks") or [])
    problems = block_problems(blocks)
    if len(blocks) > BLOCKS_PER_VIEW:
        problems.append(f"{len(blocks)} blocks (at most {BLOCKS_PER_VIEW})")
    if not 1 <= len(_text_of(view.get("title"))) <= VIEW_TITLE:
        problems.append(f"title of {len(_text_of(view.get('title')))} characters")
    for key in ("submit", "close"):
        if key in view and not 1 <= len(_text_of(view.get(key))) <= VIEW_BUTTON:
            problems.append(f"{key} of {len(_text_of(view.get(key)))} characters")
    if len(str(view.get("private_metadata") or "")) > PRIVATE_METADATA:
        problems.append("private_metadata over 3,000 characters")
    return problems
