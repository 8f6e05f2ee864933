"""The webhook's event type comes from a lean walk of the delivery: it must name what the full walk names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.meta.parser import _change_kinds, _slots, event_type_of

FIXTURES = Path(__file__).parent / "fixtures" / "meta"


def by_full_walk(payload: object) -> str:
    """The event type as the parser's full walk (envelopes and all) classifies the delivery."""
    kinds: list[str] = []
    for slot in _slots(payload):
        if slot.problem is not None or slot.unknown is not None:
            kinds.append("unknown")
        else:
            kinds += _change_kinds(slot.field, slot.value)
    if not kinds:
        return "unknown"
    return kinds[0] if len(set(kinds)) == 1 else "mixed"


@pytest.mark.parametrize("name", sorted(p.stem for p in FIXTURES.glob("*.json")))
def test_every_sample_delivery_gets_the_full_walks_type(name: str) -> None:
    payload = json.loads((FIXTURES / f"{name}.json").read_text())
    assert event_type_of(payload) == by_full_walk(payload)


FIELDS = st.sampled_from(["messages", "smb_message_echoes", "message_template_status_update", "history",
                          "account_update", "phone_number_quality_update", "smb_app_state_sync", "bogus"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5))
ITEMS = st.lists(st.fixed_dictionaries({"id": st.text(max_size=3)}), max_size=2)
VALUES = st.one_of(
    SCALARS,
    st.fixed_dictionaries({}, optional={"messages": st.one_of(ITEMS, SCALARS), "statuses": st.one_of(ITEMS, SCALARS),
                                        "message_echoes": ITEMS, "field": FIELDS,
                                        "metadata": st.one_of(SCALARS, st.fixed_dictionaries(
                                            {"phone_number_id": st.one_of(st.text(max_size=4), st.integers())}))}),
)
CHANGES = st.one_of(SCALARS, st.fixed_dictionaries({}, optional={"field": st.one_of(FIELDS, SCALARS),
                                                                 "value": VALUES}))
ENTRIES = st.one_of(SCALARS, st.fixed_dictionaries(
    {}, optional={"id": st.one_of(st.text(max_size=4), st.integers(), st.floats()),
                  "time": st.one_of(st.integers(), st.text(max_size=4), st.floats(allow_nan=True)),
                  "field": FIELDS, "changes": st.one_of(SCALARS, st.lists(CHANGES, max_size=3))}))
PAYLOADS = st.one_of(SCALARS, st.lists(SCALARS, max_size=2), st.fixed_dictionaries(
    {}, optional={"object": st.sampled_from(["whatsapp_business_account", "page", 3]),
                  "entry": st.one_of(SCALARS, st.lists(ENTRIES, max_size=3))}))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(PAYLOADS)
def test_any_shape_gets_the_full_walks_type(payload: object) -> None:
    assert event_type_of(payload) == by_full_walk(payload)
