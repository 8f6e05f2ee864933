"""Making exported transcripts inert wherever they are opened (pure).

Customer text ends up in spreadsheets, Markdown viewers and browsers; none of them may run it:
- CSV: a cell starting with = + - @, a tab or a carriage return is a formula to Excel, LibreOffice and
  Google Sheets; OWASP's advice is to prefix such cells with a single quote so they stay text.
- Markdown: HTML tags and link syntax are escaped, so `<script>` or `[x](javascript:…)` show as typed.
- HTML: a Content-Security-Policy that allows no script, no network and only the page's own style.
"""

from __future__ import annotations

import base64
import hashlib
import re

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")  # with [ ] escaped, ( ) can never form a link


def csv_cell(value: str) -> str:
    """A cell a spreadsheet shows as text, never evaluates (OWASP CSV injection)."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def markdown_text(value: str) -> str:
    """Text that Markdown renders exactly as written: no HTML, no links, no formatting, one table cell."""
    escaped = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    escaped = _MD_SPECIAL.sub(r"\\\1", escaped)
    return escaped.replace("\r", "").replace("\n", "<br>")


def style_hash(css: str) -> str:
    """The CSP source that allows exactly this inline stylesheet."""
    digest = hashlib.sha256(css.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def export_csp(css: str) -> str:
    """The policy an exported page carries: its own stylesheet and nothing else."""
    return (f"default-src 'none'; style-src {style_hash(css)}; img-src 'none'; base-uri 'none'; "
            "form-action 'none'")
