"""Numbers already in E.164 skip the full parser, with exactly the parser's answer."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from scheduler.campaigns import audience


def _parser(text: str, region: str) -> tuple[str, str] | None:
    try:
        return audience._parse(text, region)
    except ValueError:
        return None


@settings(max_examples=400, deadline=None)
@given(digits=st.from_regex(r"[1-9][0-9]{6,14}", fullmatch=True), region=st.sampled_from(["IN", "US", "GB"]))
@example(digits="919800000001", region="IN")
@example(digits="390612345678", region="IN")  # Italian landline: national number keeps its leading zero
@example(digits="14155550100", region="IN")
def test_fast_path_agrees_with_the_parser(digits: str, region: str) -> None:
    text = "+" + digits
    fast = audience._fast_e164(text)
    if fast is not None:
        assert fast == _parser(text, region)


@pytest.mark.parametrize(("text", "expected"), [
    ("+919800000001", ("919800000001", "IN")),
    ("+447400123456", ("447400123456", "GB")),
    ("+12025550143", ("12025550143", "US")),
])
def test_common_valid_numbers_take_the_fast_path(text: str, expected: tuple[str, str]) -> None:
    assert audience._fast_e164(text) == expected


@pytest.mark.parametrize("text", ["+91 98000 00001", "09800000001", "+390612345678", "+9100000", "+91980000000199"])
def test_other_forms_and_invalid_numbers_go_to_the_parser(text: str) -> None:
    assert audience._fast_e164(text) is None


def test_an_invalid_e164_number_is_reported_by_the_parser() -> None:
    with pytest.raises(ValueError, match="not a valid phone number"):
        audience.normalise_phone("+9100000000", "IN")


_REGIONS = ["IN", "US", "GB", "DE", "RU", "AR", "BR", "IT", "MX", "FR", "NG", "ID"]


@settings(max_examples=600, deadline=None)
@given(digits=st.from_regex(r"[0-9]{4,15}", fullmatch=True), region=st.sampled_from(_REGIONS),
       plus=st.booleans(), cuts=st.lists(st.tuples(st.integers(0, 15), st.sampled_from([" ", "-", ".", "(", ")"])),
                                         max_size=3))
@example(digits="9812345678", region="IN", plus=False, cuts=[(5, " ")])
@example(digits="919812345678", region="IN", plus=False, cuts=[])
@example(digits="09812345678", region="IN", plus=False, cuts=[])
@example(digits="2025550143", region="US", plus=False, cuts=[(3, "-"), (0, "(")])
@example(digits="6135550123", region="US", plus=False, cuts=[])  # Canada shares +1
def test_fast_spellings_agree_with_the_parser(digits: str, region: str, plus: bool,
                                              cuts: list[tuple[int, str]]) -> None:
    text = ("+" if plus else "") + digits
    for at, sep in sorted(cuts, reverse=True):
        at = min(at + int(plus), len(text))
        text = text[:at] + sep + text[at:]
    fast = audience._fast(text, region)
    if fast is not None:
        assert fast == _parser(text, region), text


@pytest.mark.parametrize(("text", "region", "expected"), [
    ("+91 98123 45678", "IN", ("919812345678", "IN")),
    ("98123-45678", "IN", ("919812345678", "IN")),
    ("(202) 555-0143", "US", ("12025550143", "US")),
])
def test_national_spellings_of_the_default_region_take_the_fast_path(text: str, region: str,
                                                                     expected: tuple[str, str]) -> None:
    assert audience._fast(text, region) == expected


def _spellings(region: str) -> list[str]:
    """Example numbers of every type for region, mutated digit by digit, written the ways people write
    them: national, with the trunk prefix, with the country code but no '+', and in E.164."""
    import phonenumbers

    meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
    assert meta is not None
    code, prefix = str(meta.country_code), meta.national_prefix or ""
    out: list[str] = []
    for kind in phonenumbers.PhoneNumberType.values():
        example = phonenumbers.example_number_for_type(region, kind)
        if example is None:
            continue
        national = phonenumbers.national_significant_number(example)
        variants = {national, national[:-1], national + "7"}
        for i in range(len(national)):
            for d in "0159":
                variants.add(national[:i] + d + national[i + 1:])
        for v in sorted(variants):
            out += [v, prefix + v, code + v, code + prefix + v, "+" + code + v]
    return out


@pytest.mark.parametrize("region", [*_REGIONS, "AU", "ZA", "AE", "SA", "PK", "BD", "KE", "EG"])
def test_every_spelling_of_mutated_example_numbers_agrees_with_the_parser(region: str) -> None:
    fast_taken = 0
    for text in _spellings(region):
        fast = audience._fast(text, region)
        if fast is not None:
            fast_taken += 1
            assert fast == _parser(text, region), text
    assert fast_taken > 0  # the sweep reaches the fast path, not only the parser


def test_validity_agrees_with_the_library_for_every_region() -> None:
    import phonenumbers

    from scheduler.campaigns.phone_validity import valid_region

    checked = 0
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in phonenumbers.PhoneNumberType.values():
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None or example.italian_leading_zero:
                continue
            national = str(example.national_number)
            variants = {national, national[:-1], national + "3"}
            variants |= {national[:i] + d + national[i + 1:] for i in range(len(national)) for d in "0123456789"}
            for v in sorted(v for v in variants if v and v[0] != "0"):  # the importer never asks with a zero
                number = phonenumbers.PhoneNumber(country_code=example.country_code, national_number=int(v))
                want = (phonenumbers.region_code_for_number(number) if phonenumbers.is_valid_number(number)
                        else None)
                assert valid_region(example.country_code, v) == want, (region, v)
                checked += 1
    assert checked > 20_000
