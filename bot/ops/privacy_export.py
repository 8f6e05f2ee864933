"""One person's data export as files: JSON (everything, as stored) and a readable, inert HTML page."""

from __future__ import annotations

import html
import json
import re
from typing import Any

from bot.ops.export_safety import export_csp

_STYLE = ("body{font-family:system-ui,sans-serif;margin:1rem;max-width:70rem}table{border-collapse:collapse;"
          "width:100%;margin-bottom:1.5rem}td,th{border:1px solid #999;padding:.25rem .4rem;text-align:left;"
          "vertical-align:top;overflow-wrap:anywhere;white-space:pre-wrap}th{background:#eee}")
SECTIONS = (("contacts", "Contact"), ("identities", "Identities"), ("conversations", "Conversations"),
            ("messages", "Messages"), ("media", "Media references"), ("statuses", "Delivery statuses"),
            ("opt_outs", "Opt-outs"), ("campaign_sends", "Campaign sends"), ("audiences", "Campaign audiences"),
            ("groups", "WhatsApp groups"), ("inbox_changes", "Inbox changes"),
            ("automatic_messages", "Away messages and satisfaction surveys"), ("audit", "Erasure records"))


def render_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=False, default=str) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False, default=str)
    return html.escape("" if value is None else str(value))


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>None.</p>"
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(row.get(c))}</td>" for c in columns) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(doc: dict[str, Any]) -> str:
    """Every section of the export as a table; no script, no outside resource (a CSP says so)."""
    e = html.escape
    title = "Data held about one customer"
    parts = [f"<h2>{e(label)}</h2>{_table(list(doc.get(key) or []))}" for key, label in SECTIONS]
    facts = f"Exported {doc.get('exported_at', '')}" + (f" by {doc['exported_by']}" if doc.get("exported_by") else "")
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{e(export_csp(_STYLE))}\">"
            "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            "<meta name=\"referrer\" content=\"no-referrer\">"
            f"<title>{title}</title><style>{_STYLE}</style></head><body>\n<h1>{title}</h1>\n<p>{e(facts)}</p>\n"
            + "\n".join(parts) + "\n</body></html>\n")


def filename(doc: dict[str, Any], ext: str) -> str:
    """customer-<number or id>.<ext>, safe as a file name."""
    contacts = doc.get("contacts") or [{}]
    who = re.sub(r"[^A-Za-z0-9_.-]", "_", str(contacts[0].get("wa_id") or "unknown"))[:80]
    return f"customer-{who}.{ext}"
