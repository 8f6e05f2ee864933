"""The audit export is complete and inert: every message kind in full, failed sends and notes marked,
Slack names and provenance shown, and nothing a customer typed can run in a spreadsheet, a Markdown viewer
or a browser."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import UTC, datetime

from bot.ops.export import Transcript, TranscriptLine, render_csv, render_html, render_markdown, with_slack_names
from bot.ops.export_content import full_text
from bot.ops.export_safety import csv_cell, export_csp, style_hash

AT = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)


def line(text: str, **kw: object) -> TranscriptLine:
    base: dict[str, object] = {"at": AT, "direction": "inbound", "source": "customer", "author": "Ravi",
                               "kind": "text", "text": text, "status": "", "status_history": "", "error": "",
                               "wamid": "w"}
    base.update(kw)
    return TranscriptLine(**base)  # type: ignore[arg-type]


def transcript(*lines: TranscriptLine) -> Transcript:
    return Transcript("lucknow", "+91 522 400 0000", "919812345678", "Ravi", "Asia/Kolkata", lines,
                      exported_at=AT, exported_by="UMEERA")


def test_csv_cells_that_spreadsheets_would_evaluate_stay_text() -> None:
    nasty = ["=HYPERLINK(\"http://x\",\"y\")", "+1+1", "-2+3", "@SUM(A1)", "\tTAB", "\rCR", "ok = fine"]
    out = render_csv(transcript(*[line(t, author=t) for t in nasty]))
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["text"] for r in rows] == ["'" + t for t in nasty[:-1]] + ["ok = fine"]
    assert [r["author"] for r in rows][:2] == ["'=HYPERLINK(\"http://x\",\"y\")", "'+1+1"]
    assert csv_cell("") == ""


def test_markdown_shows_html_and_links_as_typed() -> None:
    md = render_markdown(transcript(line("[click](javascript:alert(1)) <img src=x onerror=alert(1)> **b** | c")))
    row = md.splitlines()[-1]
    assert "<img" not in md and "&lt;img src=x onerror=alert(1)&gt;" in row
    assert "\\[click\\](javascript:alert(1))" in row and "\\*\\*b\\*\\*" in row and "\\| c" in row
    assert row.count(" | ") == 3  # still four cells


def test_html_export_is_inert_and_fits_a_phone() -> None:
    page = render_html(transcript(line("<script>alert(1)</script> https://example.com/" + "a" * 400)))
    assert '<html lang="en">' in page
    assert 'name="viewport" content="width=device-width,initial-scale=1"' in page
    found = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert found is not None
    csp = html.unescape(found.group(1))
    assert "default-src 'none'" in csp and "script-src" not in csp
    style = re.search(r"<style>(.*?)</style>", page, re.S)
    assert style is not None and style_hash(style.group(1)) in csp and export_csp(style.group(1)) == csp
    assert "<script>" not in page and "overflow-wrap:anywhere" in page


def test_failed_sends_and_notes_are_marked_with_a_plain_explanation() -> None:
    failed = line("Template fee_reminder", direction="outbound", source="campaign", status="failed",
                  error="131026 Message undeliverable", failure="The number is not on WhatsApp")
    note = line("called her <@UASHA>", direction="outbound", source="Slack note", author="UASHA", note=True,
                slack_user="UASHA")
    t = with_slack_names(transcript(failed, note), {"UASHA": "Asha Verma", "UMEERA": "Meera"})
    page = render_html(t)
    assert '<div class="msg outbound failed">' in page and '<div class="msg note">' in page
    assert "Not delivered: The number is not on WhatsApp" in page
    assert "Internal note written in Slack: never sent to the customer." in page
    assert "called her @Asha Verma" in page and "Asha Verma (UASHA)" in page
    assert "Exported 2026-01-01 15:30:00 Asia/Kolkata by Meera" in page
    rows = list(csv.DictReader(io.StringIO(render_csv(t))))
    assert rows[0]["remark"] == "Not delivered: The number is not on WhatsApp"
    assert rows[1]["remark"].startswith("Internal note")
    assert {(r["exported at"], r["exported by"]) for r in rows} == {("2026-01-01 15:30:00 Asia/Kolkata", "Meera")}
    md = render_markdown(t)
    assert "Exported 2026-01-01 15:30:00 Asia/Kolkata by Meera" in md and "Not delivered" in md


def test_every_kind_is_exported_in_full() -> None:
    cards = [{"name": {"formatted_name": "Asha"}, "org": {"company": "ACME"},
              "phones": [{"phone": f"+91 98100 {i:05d}", "type": "CELL"} for i in range(20)],
              "emails": [{"email": "a@example.com"}], "urls": [{"url": "https://example.com"}]}]
    text = full_text("contacts", None, {"contacts": cards})
    assert all(f"+91 98100 {i:05d}" in text for i in range(20)) and "ACME" in text and "a@example.com" in text
    loc = full_text("location", None, {"location": {"latitude": 26.8, "longitude": 80.9, "name": "Office",
                                                    "address": "Hazratganj"}})
    assert "Office" in loc and "Hazratganj" in loc and "26.8, 80.9" in loc
    picked = full_text("interactive", "Morning batch", {"interactive": {
        "type": "list_reply", "id": "b1", "title": "Morning batch", "description": "7-9am"}})
    assert picked == "Picked from a list: Morning batch (7-9am) [id b1]"
    assert full_text("reaction", None, {"reaction": {"emoji": "👍", "message_id": "wamid.X"}}) == \
        "Reacted 👍 to message wamid.X"
    assert full_text("document", None, {"media": {"filename": "fees.pdf", "mime_type": "application/pdf",
                                                  "caption": "the bill"}}) == \
        "Document fees.pdf (application/pdf): the bill"
