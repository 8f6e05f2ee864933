"""`phonenumbers.is_valid_number` for audience imports, at a fraction of its cost.

A number is valid when its national significant number matches its region's general pattern and one of
the number-type patterns (fixed line, mobile, toll free, …), each only at that type's possible lengths.
The library tries the types one by one, compiling through its own cache each time; here the types of one
region and length are joined into one pattern, compiled once. Only country codes served by a single region
take this path: for shared codes (+1, +7, +44, …) the region itself must be found, and the library decides.
"""

from __future__ import annotations

import functools
import re

import phonenumbers
from phonenumbers import PhoneMetadata

_TYPES = ("premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan", "voicemail",
          "fixed_line", "mobile")


def _fits(desc: object, length: int) -> str | None:
    """desc's pattern when a number of this length may match it; else None."""
    pattern = getattr(desc, "national_number_pattern", None)
    if desc is None or not pattern:
        return None
    lengths = getattr(desc, "possible_length", None) or ()
    return pattern if not lengths or length in lengths else None


@functools.lru_cache(maxsize=4096)
def _patterns(code: int, length: int) -> tuple[str, re.Pattern[str], re.Pattern[str]] | None:
    """(region, general pattern, any-type pattern) for numbers of `length` digits under `code`; None when
    the library must decide (a shared or unknown code) or nothing of that length can be valid."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code, ())
    if len(regions) != 1:
        return None
    region = regions[0]
    meta = PhoneMetadata.metadata_for_region_or_calling_code(code, region)
    if meta is None or meta.country_code != code:
        return None
    general = _fits(meta.general_desc, length)
    # With one pattern for both, the library never tries mobile once fixed line has failed (even where the
    # two allow different lengths): neither does this.
    kinds = _TYPES[:-1] if meta.same_mobile_and_fixed_line_pattern else _TYPES
    types = [p for t in kinds if (p := _fits(getattr(meta, t, None), length))]
    if general is None or not types:
        return None
    return region, re.compile(general), re.compile("|".join(f"(?:{p})" for p in types))


def valid_region(code: int, national: str) -> str | None:
    """The region of +code national when it is a valid number, else None (as the library would answer)."""
    found = _patterns(code, len(national))
    if found is None:
        if len(phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code, ())) == 1:
            return None  # one region, and no pattern of this length: the library says invalid too
        number = phonenumbers.PhoneNumber(country_code=code, national_number=int(national))
        if not phonenumbers.is_valid_number(number):
            return None
        return phonenumbers.region_code_for_number(number)
    region, general, types = found
    if general.fullmatch(national) is None or types.fullmatch(national) is None:
        return None
    return region
