"""A staff reply as the WhatsApp messages that carry it (pure).

A text body takes at most 4,096 characters and a media caption 1,024 (Cloud API reference, messages).
Longer text is cut at a paragraph break, else a line break, else a sentence end, else a space; never inside
an emoji sequence, and a ``` block cut in two is closed and opened again so both parts stay monospace.
"""

from __future__ import annotations

import unicodedata

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
CAPTIONED_KINDS = frozenset({"image", "video", "document"})  # audio and stickers take no caption

_FENCE = "```"
_ZWJ = "\u200d"
_SENTENCE_ENDS = (". ", "! ", "? ")
_BREAKS = (("\n\n",), ("\n",), _SENTENCE_ENDS, (" ",))


MIN_LIMIT = 16  # room for a closed and reopened ``` block around some text


def split_message(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """The text as parts of at most `limit` characters; blank parts are left out."""
    if limit < MIN_LIMIT:
        raise ValueError(f"limit must be at least {MIN_LIMIT}")
    parts: list[str] = []
    rest = text.strip()
    while rest:
        part, rest = _first_part(rest, limit)
        if part.strip():
            parts.append(part)
    return parts


def caption_and_rest(text: str, limit: int = CAPTION_LIMIT) -> tuple[str, str]:
    """A caption of at most `limit` characters and what follows it as text ('' when it all fits)."""
    if limit < MIN_LIMIT:
        raise ValueError(f"limit must be at least {MIN_LIMIT}")
    return _first_part(text.strip(), limit)


def _first_part(text: str, limit: int) -> tuple[str, str]:
    if len(text) <= limit:
        return text, ""
    room = limit - len(_FENCE) if _FENCE in text else limit
    cut = _boundary(text, room)
    head, tail = text[:cut].rstrip(), text[cut:].lstrip()
    if head.count(_FENCE) % 2:
        head, tail = head + _FENCE, _FENCE + tail
    return head, tail


def _boundary(text: str, room: int) -> int:
    """Where to cut: the last paragraph, line, sentence or word break in the second half of the room, else
    a safe place in the middle of a word."""
    for seps in _BREAKS:
        at = max(text.rfind(sep, room // 2, room) for sep in seps)
        if at > 0:
            return at + 1 if seps is _SENTENCE_ENDS else at  # the full stop stays with its sentence
    cut = room
    while cut > room // 2 and _joined(text, cut):
        cut -= 1
    return cut


def _joined(text: str, at: int) -> bool:
    """True when text[at] belongs to the character before it (combining mark, emoji modifier, joiner,
    the rest of a ``` marker)."""
    before, here = text[at - 1], text[at]
    if before == _ZWJ or here == _ZWJ or unicodedata.combining(here) or before == here == "`":
        return True
    code = ord(here)
    if 0xFE00 <= code <= 0xFE0F or 0x1F3FB <= code <= 0x1F3FF or 0xE0020 <= code <= 0xE007F or code == 0x20E3:
        return True
    return _regional(before) and _regional(here) and _regional_run(text, at) % 2 == 1


def _regional(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


def _regional_run(text: str, at: int) -> int:
    """How many regional indicators (flag halves) come straight before `at`."""
    n = 0
    while at - n - 1 >= 0 and _regional(text[at - n - 1]):
        n += 1
    return n
