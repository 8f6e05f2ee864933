"""Slack emoji shortcodes (`:+1:`, `:+1::skin-tone-3:`) as the Unicode emoji Slack shows for them (pure).

Names are looked up in the `emoji` package (its GitHub/Slack aliases, then its CLDR names). Slack names
emoji after iamcal/emoji-data, which spells some names with hyphens (`man-shrugging`), writes flags as
`flag-xx`, and keeps a few names of its own; those are handled here, everything else is the library's.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import emoji

# Slack names the `emoji` package does not know (Slack's emoji picker, iamcal/emoji-data short names).
_SLACK_ONLY: Mapping[str, str] = {
    "simple_smile": "\U0001F642",
    "smiling_face_with_3_hearts": "\U0001F970",
    "the_horns": "\U0001F918",
    "spock-hand": "\U0001F596",
    "knife_fork_plate": "\U0001F37D\ufe0f",
    "female-doctor": "\U0001F469\u200d\u2695\ufe0f",
    "male-doctor": "\U0001F468\u200d\u2695\ufe0f",
    "female-technologist": "\U0001F469\u200d\U0001F4BB",
    "male-technologist": "\U0001F468\u200d\U0001F4BB",
    "man-woman-girl": "\U0001F468\u200d\U0001F469\u200d\U0001F467",
    "man-woman-boy": "\U0001F468\u200d\U0001F469\u200d\U0001F466",
    "hand_with_index_and_middle_fingers_crossed": "\U0001F91E",
    "serious_face_with_symbols_covering_mouth": "\U0001F92C",
    "grinning_face_with_star_eyes": "\U0001F929",
    "crazy_face": "\U0001F92A",
    "face_palm": "\U0001F926",
    "shipit": "\U0001F43F\ufe0f",  # Slack's built-in squirrel
    "large_green_circle": "\U0001F7E2",  # Slack's name for green_circle
    "shopping_trolley": "\U0001F6D2",
}

# Slack's skin-tone-2 … skin-tone-6 are the five Fitzpatrick modifiers; skin-tone-1 is the default yellow.
SKIN_TONES: Mapping[int, str] = {1: "", 2: "\U0001F3FB", 3: "\U0001F3FC", 4: "\U0001F3FD", 5: "\U0001F3FE",
                                 6: "\U0001F3FF"}

_VS16 = "\ufe0f"
_REGIONAL_A = 0x1F1E6


def _flag(code: str) -> str | None:
    if len(code) != 2 or not code.isascii() or not code.isalpha():
        return None
    flag = "".join(chr(_REGIONAL_A + ord(c) - ord("a")) for c in code.lower())
    return flag if emoji.is_emoji(flag) else None


def _index() -> Mapping[str, str]:
    """Every name the `emoji` package knows, as `emojize(..., language="alias")` reads them: an alias
    (GitHub's and Slack's names, `:cat:` 🐱) wins over a CLDR name (`:cat:` 🐈)."""
    names: dict[str, str] = {}
    for char, data in emoji.EMOJI_DATA.items():
        for alias in data.get("alias", ()):
            names.setdefault(alias.strip(":"), char)
    for char, data in emoji.EMOJI_DATA.items():
        names.setdefault(str(data["en"]).strip(":"), char)
    return MappingProxyType(names)


# Read-only, built once: a dictionary look-up per shortcode instead of a pass of emojize over the name.
_BY_NAME = _index()


def _lookup(name: str) -> str | None:
    if name in _SLACK_ONLY:
        return _SLACK_ONLY[name]
    if name.startswith("flag-"):
        return _flag(name[5:])
    return _BY_NAME.get(name) or _BY_NAME.get(name.replace("-", "_"))


def with_skin_tone(base: str, tone: int) -> str:
    """The emoji with a skin tone, or unchanged when it takes none (Unicode allows tones on some only)."""
    modifier = SKIN_TONES.get(tone, "")
    if not modifier or not base:
        return base
    first, rest = base[0], base[1:]
    # The modifier follows the first code point and replaces its presentation selector (🤷‍♂️ → 🤷🏼‍♂️).
    toned = first + modifier + rest.removeprefix(_VS16)
    return toned if emoji.is_emoji(toned) else base


def to_unicode(name: str, tone: int | None = None) -> str | None:
    """The Unicode emoji for a Slack shortcode name (without colons); None for names Slack alone knows
    (a workspace's custom emoji)."""
    base = _lookup(name.lower())
    if base is None:
        return None
    return with_skin_tone(base, tone) if tone else base
