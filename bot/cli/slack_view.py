"""What a person sees in Slack, drawn from the messages the bridge posted (pure): for the demo's terminal
output and for its HTML page (the README's picture of a thread).

Slack shows mrkdwn, not its source: `*bold*` is bold, `:eyes:` is 👀, `&lt;` is `<`, `<@U1>` is the
person's name and `<url|label>` is a link. Both renderings follow Block Kit as the stand-in stores it
(section, context and actions blocks; reactions; files).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.slack.render import NOT_SENT_REACTION, NOTE_REACTION, STATUS_REACTIONS
from bot.slack.shortcodes import to_unicode

# What each reaction the bridge adds means, for the legend under a channel.
REACTION_MEANINGS: tuple[tuple[str, str], ...] = (
    (STATUS_REACTIONS["sent"], "sent"),
    (STATUS_REACTIONS["delivered"], "delivered"),
    (STATUS_REACTIONS["read"], "read"),
    (STATUS_REACTIONS["failed"], "failed"),
    (NOT_SENT_REACTION, "not sent (the 24-hour window had closed)"),
    (NOTE_REACTION, "internal note, kept in Slack"),
)

_ANGLE = re.compile(r"<([^<>]+)>")
_EMOJI = re.compile(r":([a-z0-9_+'-]+):(?::skin-tone-([2-6]):)?")
# Slack's emphasis: a marker at a word boundary, text without the marker or a line break, the marker again.
_STYLE = re.compile(r"(?<![\w*_~`])([*_~])(?=\S)([^\n]*?\S)\1(?![\w*_~`])")
_CODE = re.compile(r"`([^`\n]+)`")


@dataclass(frozen=True)
class Style:
    """How emphasis is drawn: ANSI escapes for a terminal, tags for HTML, nothing for plain text."""

    bold: tuple[str, str]
    italic: tuple[str, str]
    strike: tuple[str, str]
    code: tuple[str, str]
    quote: str
    escape: Callable[[str], str]
    link: Callable[[str, str], str]


PLAIN = Style(("", ""), ("", ""), ("", ""), ("", ""), "│ ", lambda t: t,
              lambda url, label: label if label == url else f"{label} ({url})")
ANSI = Style(("\x1b[1m", "\x1b[22m"), ("\x1b[3m", "\x1b[23m"), ("\x1b[9m", "\x1b[29m"), ("\x1b[2m", "\x1b[22m"),
             "│ ", lambda t: t, lambda url, label: label if label == url else f"\x1b[4m{label}\x1b[24m ({url})")
HTML = Style(("<b>", "</b>"), ("<i>", "</i>"), ("<s>", "</s>"), ("<code>", "</code>"), "",
             lambda t: html.escape(t, quote=False),
             lambda url, label: f'<a href="{html.escape(url)}">{label}</a>')


@dataclass(frozen=True)
class Names:
    """Slack ids to names, as Slack shows mentions."""

    users: Mapping[str, str]
    channels: Mapping[str, str]


def emojize(text: str) -> str:
    """`:eyes:` as 👀; a name Slack alone knows (a custom emoji) stays as written."""
    def one(m: re.Match[str]) -> str:
        found = to_unicode(m.group(1), int(m.group(2)) if m.group(2) else None)
        return found if found is not None else m.group(0)
    return _EMOJI.sub(one, text)


def _mention(inner: str, names: Names, style: Style) -> str:
    target, _, label = inner.partition("|")
    label = html.unescape(label)
    if target.startswith("@"):
        return style.escape("@" + (names.users.get(target[1:]) or label.lstrip("@") or target[1:]))
    if target.startswith("#"):
        return style.escape("#" + (names.channels.get(target[1:]) or label.lstrip("#") or target[1:]))
    if target.startswith("!"):
        word = target[1:].split("^")[0]
        return style.escape(label or ("@" + word if word in ("channel", "here", "everyone") else word))
    url = html.unescape(target)
    return style.link(url, style.escape(label or url))


def _styled(text: str, style: Style) -> str:
    """Emphasis and code spans of one line that is already escaped for the output."""
    marks = {"*": style.bold, "_": style.italic, "~": style.strike}
    text = _CODE.sub(lambda m: f"{style.code[0]}{m.group(1)}{style.code[1]}", text)
    for _ in range(3):  # nested emphasis (`*_both_*`) is undone one level per pass
        text = _STYLE.sub(lambda m: f"{marks[m.group(1)][0]}{m.group(2)}{marks[m.group(1)][1]}", text)
    return text


def mrkdwn(text: str, names: Names, style: Style) -> str:
    """Slack mrkdwn as Slack displays it, drawn in `style` (every line; quotes keep a bar)."""
    lines = []
    for line in text.split("\n"):
        quoted = line.startswith(">")  # a real ">" starts a quote; escaped text (`&gt;`) never does
        if quoted:
            line = line[1:].removeprefix(" ")
        pieces: list[str] = []
        pos = 0
        for m in _ANGLE.finditer(line):  # Slack's escapes are undone outside the <…> tokens, once
            pieces.append(style.escape(html.unescape(line[pos:m.start()])))
            pieces.append(_mention(m.group(1), names, style))
            pos = m.end()
        pieces.append(style.escape(html.unescape(line[pos:])))
        drawn = _styled(emojize("".join(pieces)), style)
        lines.append((style.quote + drawn) if quoted and style.quote else
                     (f"<blockquote>{drawn}</blockquote>" if quoted else drawn))
    return "\n".join(lines)


def message_mrkdwn(message: Mapping[str, Any]) -> list[str]:
    """The mrkdwn texts a message shows, block by block (its `text` when it has no blocks)."""
    parts: list[str] = []
    for block in message.get("blocks") or []:
        if block.get("type") == "section":
            if block.get("text"):
                parts.append(str(block["text"].get("text", "")))
            parts.extend(str(f.get("text", "")) for f in block.get("fields") or [])
        elif block.get("type") == "context":
            parts.extend(str(e.get("text", "")) for e in block.get("elements", []) if e.get("text"))
        elif block.get("type") == "header":
            parts.append("*" + str(block.get("text", {}).get("text", "")) + "*")
    if not parts:
        parts.append(str(message.get("text", "")))
    return [p for p in parts if p]


def buttons(message: Mapping[str, Any]) -> list[str]:
    return [str(e.get("text", {}).get("text", "")) for b in message.get("blocks") or []
            if b.get("type") == "actions" for e in b.get("elements", []) if e.get("type") == "button"]


def reactions(message: Mapping[str, Any]) -> list[str]:
    """The message's reactions as the emoji Slack shows."""
    return [emojize(f":{r['name']}:") for r in message.get("reactions", [])]


def legend(used: Iterable[str]) -> str:
    """What the reactions the bridge added mean, for those among `used` (reaction names)."""
    seen = set(used)
    return " · ".join(f"{emojize(':' + name + ':')} {meaning}" for name, meaning in REACTION_MEANINGS
                      if name in seen)
