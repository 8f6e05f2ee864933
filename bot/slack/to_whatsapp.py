"""Slack message markup as the text a WhatsApp customer should read (pure: no I/O).

Slack's event `text` is markup, not what staff saw while typing: emoji arrive as shortcodes, mentions as
ids, links as `<url|label>`, and `& < >` as entities. This turns it into WhatsApp text: Unicode emoji,
names instead of ids, links spelled out, and Slack's formatting as WhatsApp's own (`*bold*`, `_italic_`,
`~strike~`, `` `code` ``, ```` ``` ```` blocks, `> ` quotes, `- ` list items). Ids are named from a `Names`
the caller looked up beforehand (see `bot.slack.names`), so the conversion itself never waits on Slack.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.slack.shortcodes import to_unicode


@dataclass(frozen=True)
class Names:
    """Display names for the ids a message mentions: users and channels by id, user groups by handle."""

    users: Mapping[str, str] = field(default_factory=dict)
    groups: Mapping[str, str] = field(default_factory=dict)
    channels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class References:
    """The ids in a message that need a name from Slack before it can be converted."""

    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.users or self.groups or self.channels)


@dataclass(frozen=True)
class Converted:
    """The WhatsApp text, and whether the customer sees something other than Slack shows staff
    (a link spelled out, a custom emoji left as `:name:`, an `@here` dropped, an id without a name)."""

    text: str
    differs: bool = False


NO_NAMES = Names()

_FENCE = re.compile(r"```.*?```", re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]+`")
_ANGLE = re.compile(r"<([^<>\n]+)>")
_SHORTCODE = r":(?P<emoji>[a-z0-9_+'\-]+):(?::skin-tone-(?P<tone>[1-6]):)?"
_TOKEN = re.compile(r"<(?P<angle>[^<>\n]+)>|" + _SHORTCODE)
_EMOJI = re.compile(_SHORTCODE)
# @here / @channel / @everyone address staff in Slack, not the customer: dropped with their punctuation.
_BROADCAST = re.compile(r"(?:(?<=\s)|^)<!(?:here|channel|everyone)(?:\|[^<>\n]*)?>[,:]?[ \t]*", re.MULTILINE)
_BLOCK_QUOTE = re.compile(r"(?:^|(?<=\n))&gt;&gt;&gt;[ \t]?(.*)\Z", re.DOTALL)
_BULLET = re.compile(r"^([ \t]*)[•◦▪▫‣][\ufe0e\ufe0f]?[ \t]+", re.MULTILINE)
_SCHEME = re.compile(r"^[a-z][a-z0-9+.\-]*://", re.IGNORECASE)
_USER_REF = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^<>]*)?>")
_GROUP_REF = re.compile(r"<!subteam\^([A-Z0-9]+)(?:\|[^<>]*)?>")
_CHANNEL_REF = re.compile(r"<#([CG][A-Z0-9]+)\|?>")


def unescape(text: str) -> str:
    """Slack's three entities back to characters (`&amp;` last, so `&amp;lt;` stays `&lt;`)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def references(text: str) -> References:
    """User, user-group and unlabelled channel ids the message mentions."""
    return References(users=frozenset(_USER_REF.findall(text)), groups=frozenset(_GROUP_REF.findall(text)),
                      channels=frozenset(_CHANNEL_REF.findall(text)))


@dataclass
class _Run:
    names: Names
    differs: bool = False


def to_whatsapp(text: str, names: Names = NO_NAMES) -> Converted:
    """Convert one Slack message's text for WhatsApp."""
    run = _Run(names)
    out: list[str] = []
    pos = 0
    for fence in _FENCE.finditer(text):
        out.append(_prose(text[pos:fence.start()], run))
        out.append(_code(fence.group(0), run))
        pos = fence.end()
    out.append(_prose(text[pos:], run))
    converted = "".join(out).strip()
    return Converted(converted, run.differs)


def _code(code: str, run: _Run) -> str:
    # Code is shown as typed: no emoji, no list or quote markers; links lose only their brackets.
    return unescape(_ANGLE.sub(lambda m: _angle(m.group(1), run), code))


def _prose(text: str, run: _Run) -> str:
    if not text:
        return text
    dropped = _BROADCAST.sub("", text)
    if dropped != text:
        run.differs = True
    text = _BLOCK_QUOTE.sub(lambda m: "\n".join("&gt; " + line for line in m.group(1).split("\n")), dropped)
    text = _BULLET.sub(r"\1- ", text)
    out: list[str] = []
    pos = 0
    for code in _INLINE_CODE.finditer(text):
        out.append(_inline(text[pos:code.start()], run))
        out.append(_code(code.group(0), run))
        pos = code.end()
    out.append(_inline(text[pos:], run))
    return "".join(out)


def _inline(text: str, run: _Run) -> str:
    out: list[str] = []
    pos = 0
    for m in _TOKEN.finditer(text):
        out.append(unescape(text[pos:m.start()]))
        if m.group("angle") is not None:
            out.append(_angle(m.group("angle"), run))
        else:
            out.append(_emoji(m.group("emoji"), m.group("tone"), m.group(0), run))
        pos = m.end()
    out.append(unescape(text[pos:]))
    return "".join(out)


def _emoji(name: str, tone: str | None, raw: str, run: _Run) -> str:
    found = to_unicode(name, int(tone) if tone else None)
    if found is not None:
        return found
    if any(c.isalpha() for c in name):
        run.differs = True  # a workspace's custom emoji: staff see a picture, the customer its name
    return raw


def _angle(inner: str, run: _Run) -> str:
    target, _, label = inner.partition("|")
    label = unescape(label)
    if target.startswith("@"):
        return "@" + _name(run, run.names.users, target[1:], label.lstrip("@"))
    if target.startswith("#"):
        return "#" + _name(run, run.names.channels, target[1:], label.lstrip("#"))
    if target.startswith("!"):
        return _special(target[1:], label, run)
    return _link(unescape(target), label, run)


def _name(run: _Run, known: Mapping[str, str], ident: str, label: str) -> str:
    name = known.get(ident) or label
    if not name:
        run.differs = True  # no name to be had: the customer sees the id
        return ident
    return name


def _special(command: str, label: str, run: _Run) -> str:
    kind, _, rest = command.partition("^")
    if kind == "subteam":
        return "@" + _name(run, run.names.groups, rest, label.lstrip("@"))
    if kind in ("here", "channel", "everyone"):
        run.differs = True
        return ""
    if kind == "date":
        return label or _date(rest)
    return label


def _date(rest: str) -> str:
    stamp = rest.partition("^")[0]
    try:
        return datetime.fromtimestamp(int(stamp), UTC).strftime("%d %b %Y %H:%M UTC")
    except (ValueError, OverflowError, OSError):
        return stamp


def _link(url: str, label: str, run: _Run) -> str:
    for prefix in ("mailto:", "tel:"):
        if url.lower().startswith(prefix):
            address = url[len(prefix):]
            if not label or label == address:
                return address
            run.differs = True
            return f"{label} ({address})"
    if not label or _same_place(url, label):
        return url
    run.differs = True
    label = _EMOJI.sub(lambda m: _emoji(m.group("emoji"), m.group("tone"), m.group(0), run), label)
    return f"{label} ({url})"


def _same_place(url: str, label: str) -> bool:
    """Slack labels auto-linked text with what was typed: `example.com` for `http://example.com`."""
    bare = _SCHEME.sub("", url).rstrip("/")
    return label.rstrip("/") in (url.rstrip("/"), bare)
