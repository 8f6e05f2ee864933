"""Template variables of a campaign: {{1}}… mapped to a CSV column or fixed text, and the send payload (pure).

A mapping is stored on the campaign as ``{"1": {"column": "name"}, "2": {"text": "Monday"}}``. Numbered
keys become positional body parameters in number order; other keys are sent as named parameters
(``parameter_name``), which is how Meta takes templates created with named placeholders.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
_KEY = re.compile(r"^[A-Za-z0-9_]+$")


class MappingError(ValueError):
    """A variable mapping that cannot be used."""


def parse_var(spec: str) -> tuple[str, dict[str, str]]:
    """One `N=column`, `N=column:NAME` or `N=text:FIXED TEXT` into (key, source)."""
    key, sep, value = spec.partition("=")
    key = key.strip().strip("{}").strip()
    if not sep or not key:
        raise MappingError(f"{spec!r}: write N=column or N=text:fixed text")
    if not _KEY.match(key):
        raise MappingError(f"{spec!r}: the variable must be a number such as 1 or a name such as first_name")
    value = value.strip()
    if value.lower().startswith("text:"):
        text = value[5:].strip()
        if not text:
            raise MappingError(f"{spec!r}: fixed text is empty")
        return key, {"text": text}
    if value.lower().startswith("column:"):
        value = value[7:].strip()
    if not value:
        raise MappingError(f"{spec!r}: name a CSV column")
    return key, {"column": value}


def parse_mapping(specs: Iterable[str]) -> dict[str, dict[str, str]]:
    """Several specs (CLI --var values, or lines typed in Slack) into a mapping; MappingError on the first bad one."""
    out: dict[str, dict[str, str]] = {}
    for spec in specs:
        if not spec.strip():
            continue
        key, source = parse_var(spec)
        if key in out:
            raise MappingError(f"variable {{{{{key}}}}} is mapped twice")
        out[key] = source
    return out


def body_placeholders(components: Iterable[Mapping[str, Any]]) -> list[str]:
    """The distinct placeholders of a template's BODY, in order of first use."""
    for component in components:
        if str(component.get("type", "")).upper() == "BODY":
            seen: list[str] = []
            for name in _PLACEHOLDER.findall(str(component.get("text") or "")):
                if name not in seen:
                    seen.append(name)
            return seen
    return []


def check_mapping(mapping: Mapping[str, Any], placeholders: list[str]) -> str | None:
    """Why a mapping does not fit a template's placeholders, or None when it does."""
    missing = [p for p in placeholders if p not in mapping]
    extra = [k for k in mapping if k not in placeholders]
    if missing:
        return "map " + ", ".join(f"{{{{{p}}}}}" for p in missing) + " to a column or fixed text"
    if extra:
        return "the template has no " + ", ".join(f"{{{{{k}}}}}" for k in extra)
    return None


def _order(key: str) -> tuple[int, int | str]:
    return (0, int(key)) if key.isdigit() else (1, key)


def body_parameters(mapping: Mapping[str, Any], fields: Mapping[str, Any]) -> list[dict[str, str]]:
    """The BODY parameters for one recipient: column values from fields, or the fixed text."""
    params: list[dict[str, str]] = []
    for key in sorted(mapping, key=_order):
        source = mapping[key]
        value = str(source["text"]) if "text" in source else str(fields.get(str(source.get("column")), ""))
        param = {"type": "text", "text": value}
        if not key.isdigit():
            param["parameter_name"] = key
        params.append(param)
    return params


def filled_body(components: Iterable[Mapping[str, Any]], mapping: Mapping[str, Any],
                fields: Mapping[str, Any]) -> str | None:
    """The template's BODY as one recipient read it ({{1}} replaced by their value); None without a BODY."""
    body = next((str(c.get("text") or "") for c in components if str(c.get("type", "")).upper() == "BODY"), None)
    if body is None:
        return None
    values = {str(p.get("parameter_name") or key): p["text"]
              for key, p in zip(sorted(mapping, key=_order), body_parameters(mapping, fields), strict=True)}
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), body)


def components_for(mapping: Mapping[str, Any], fields: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The `components` of a template send for one recipient (empty when the template has no variables)."""
    params = body_parameters(mapping, fields)
    return [{"type": "body", "parameters": params}] if params else []


def describe_mapping(mapping: Mapping[str, Any]) -> str:
    """Human text: {{1}} = column name, {{2}} = "Monday"."""
    parts = []
    for key in sorted(mapping, key=_order):
        src = mapping[key]
        parts.append(f"{{{{{key}}}}} = " + (f'"{src["text"]}"' if "text" in src else f"column {src['column']}"))
    return ", ".join(parts) or "no variables"
