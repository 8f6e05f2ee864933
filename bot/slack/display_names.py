"""WhatsApp-given names (profile names, usernames) made safe to show among other text in Slack (pure).

A name is the customer's own text: bidi overrides, embeddings and isolates could reorder the number or
the words next to it, and zero-width or invisible characters could make two names look alike or hide text.
`clean_name` drops them (and control characters and line breaks, which would break the layout), and
`isolate` wraps what is left in FIRST STRONG ISOLATE … POP DIRECTIONAL ISOLATE, so a right-to-left name
keeps its own direction without moving anything around it (Unicode UAX #9, "explicit directional isolates").

Two joiners are kept where they carry meaning and cannot hide anything: ZERO WIDTH JOINER between two
pictographs (it forms one emoji such as 👨‍👩‍👧, Unicode UTS #51), and ZWJ / ZWNJ right after a virama (they
choose the conjunct form in Indic scripts, the contexts Unicode UAX #31 §2.3 allows them in identifiers).
Tag characters are kept only inside a flag's tag sequence (🏴 + tags + CANCEL TAG, UTS #51).
"""

from __future__ import annotations

import unicodedata

FSI, PDI = "\u2068", "\u2069"
ZWNJ, ZWJ = "\u200c", "\u200d"
BLACK_FLAG, CANCEL_TAG = "\U0001f3f4", "\U000e007f"
_VIRAMA = 9  # canonical combining class of a virama
# Characters outside the Cf category that show as a blank (Hangul fillers, the blank braille pattern often
# used as an "empty" WhatsApp name) count as spaces; these show as nothing at all and are dropped.
_BLANKS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
_INVISIBLE = frozenset("\u034f\u17b4\u17b5")
_PICTOGRAPHIC = frozenset(("So", "Sk"))  # emoji and skin-tone modifiers


def _is_tag(ch: str) -> bool:
    return 0xE0020 <= ord(ch) <= 0xE007F


def _dropped(ch: str) -> bool:
    """Format characters, surrogates, and code points reserved as invisible (default ignorable) ones."""
    code = ord(ch)
    return (unicodedata.category(ch) in ("Cf", "Cs") or ch in _INVISIBLE or code == 0x2065
            or 0xFFF0 <= code <= 0xFFF8 or (0xE0000 <= code <= 0xE0FFF and not 0xE0100 <= code <= 0xE01EF))


def _is_variation_selector(ch: str) -> bool:
    code = ord(ch)
    return 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF


def _pictographic(ch: str) -> bool:
    return _is_variation_selector(ch) or unicodedata.category(ch) in _PICTOGRAPHIC


def _tag_run_end(text: str, start: int) -> int | None:
    """Where a flag's tag run starting at start ends (after its CANCEL TAG), or None if it is no such run."""
    end = start
    while end < len(text) and _is_tag(text[end]):
        end += 1
        if text[end - 1] == CANCEL_TAG:
            return end
    return None


def _keep_joiner(text: str, i: int, kept: list[str]) -> bool:
    prev = kept[-1] if kept else ""
    if prev and unicodedata.combining(prev) == _VIRAMA:
        return True
    following = text[i + 1] if i + 1 < len(text) else ""
    return text[i] == ZWJ and bool(prev and following) and _pictographic(prev) and _pictographic(following)


def clean_name(name: str | None) -> str | None:
    """name without bidi controls, zero-width tricks, controls or line breaks, spaces collapsed; None if empty."""
    if not name:
        return None
    kept: list[str] = []
    i = 0
    while i < len(name):
        ch = name[i]
        if _is_tag(ch):
            end = _tag_run_end(name, i) if kept and kept[-1] == BLACK_FLAG else None
            if end is not None:
                kept.extend(name[i:end])
                i = end
                continue
        elif ch in (ZWJ, ZWNJ):
            if _keep_joiner(name, i, kept):
                kept.append(ch)
        elif ch in _BLANKS or unicodedata.category(ch) in ("Zs", "Zl", "Zp", "Cc"):
            kept.append(" ")  # tabs, newlines and odd spaces become one plain space
        elif _is_variation_selector(ch):
            if kept and kept[-1] != " " and not _is_variation_selector(kept[-1]):
                kept.append(ch)  # one per visible character (emoji style); a run could carry hidden data
        elif not _dropped(ch):
            kept.append(ch)
        i += 1
    cleaned = " ".join("".join(kept).split())
    return cleaned or None


def isolate(text: str) -> str:
    """text between FSI and PDI: its direction is its own and does not reorder what surrounds it."""
    return f"{FSI}{text}{PDI}"


def unisolated(text: str) -> str:
    """`text` without the isolates `isolate` added: for output that is not Slack (reports, CSV, a terminal)."""
    return text.replace(FSI, "").replace(PDI, "")


def shown_name(name: str | None) -> str | None:
    """The cleaned, isolated name to show in Slack; None when nothing visible is left."""
    cleaned = clean_name(name)
    return isolate(cleaned) if cleaned else None
