"""A template's text: the placeholders it needs, its body filled in, and the Cloud API components for it."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


def template_placeholders(components: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """The variables a template needs, as (component type lower-cased, placeholder name) in order."""
    found: list[tuple[str, str]] = []
    for comp in components:
        ctype = str(comp.get("type", "")).lower()
        if ctype not in ("header", "body") or comp.get("format", "TEXT").upper() != "TEXT":
            continue
        seen: list[str] = []
        for name in _PLACEHOLDER.findall(str(comp.get("text") or "")):
            if name not in seen:
                seen.append(name)
        found.extend((ctype, n) for n in seen)
    return found


def template_body(components: Sequence[Mapping[str, Any]]) -> str:
    """The template's body text (with placeholders)."""
    return next((str(c.get("text") or "") for c in components if str(c.get("type", "")).lower() == "body"), "")


def fill_template(text: str, values: Mapping[str, str]) -> str:
    """Template text with its placeholders replaced by values (missing ones left as they are)."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def template_components(values: Sequence[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """Cloud API `components` for (component, placeholder, value) triples, positional or named."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for ctype, name, value in values:
        param: dict[str, Any] = {"type": "text", "text": value}
        if not name.isdigit():
            param["parameter_name"] = name
        by_type.setdefault(ctype, []).append(param)
    return [{"type": ctype, "parameters": params} for ctype, params in by_type.items()]
