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
