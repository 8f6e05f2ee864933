# ruff: noqa: F811  (the harness fixtures are imported, then named as parameters)
"""The two pages people open, in a real browser (Debian's headless `chromium`): /onboard with Facebook's
SDK unreachable, and the HTML audit export at phone width.

Skipped when chromium is not installed, unless WABRIDGE_REQUIRE_SERVICES=1 (CI installs it)."""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.handlers.onboarding_page import SDK_FAILED
from bot.ops.export import Transcript, TranscriptLine, render_html
from tests.test_onboarding import new_link
from tests.test_onboarding_harness import MANAGER, Harness, harness, make_harness  # noqa: F401  (fixtures)

PHONE_WIDTH = 360


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("WABRIDGE_REQUIRE_SERVICES") == "1":
            pytest.fail("chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium is not installed")
    return found


async def dump_dom(url: str) -> str:
    """The page's DOM after its scripts ran, with every host but this machine unreachable."""
    with tempfile.TemporaryDirectory(prefix="wabridge-chromium-") as profile:
        proc = await asyncio.create_subprocess_exec(
            chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
            f"--user-data-dir={profile}", f"--window-size={PHONE_WIDTH},740",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            # Timers run on virtual time: the page's SDK timeout passes without the test waiting for it.
            "--virtual-time-budget=30000", "--dump-dom", url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), 180)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
    return out.decode("utf-8")


async def test_onboard_page_says_what_to_do_when_facebook_sdk_is_blocked(harness: Harness) -> None:
    chromium()
    harness.slack.add_user(MANAGER, "asha", real_name="Asha Verma")
    token = await new_link(harness)
    dom = await dump_dom(str(harness.client.make_url(f"/onboard?t={token}")))
    status = re.search(r'<p id="status"[^>]*>(.*?)</p>', dom, re.S)
    assert status is not None and html.unescape(status.group(1)) == SDK_FAILED
    assert re.search(r'<button id="connect" disabled="">', dom)
    assert "Wabridge" in dom and "Asha Verma invited you" in dom


# ---- the export at phone width --------------------------------------------------------------------

_MEASURE = """<!doctype html><html><body style="margin:0">
<iframe id="f" src="%s" style="width:%dpx;height:700px;border:0"></iframe><pre id="result">pending</pre>
<script>
document.getElementById('f').addEventListener('load', () => {
  const d = document.getElementById('f').contentDocument;
  const width = d.documentElement.clientWidth;
  const wide = [...d.body.querySelectorAll('*')]
    .filter((el) => el.getBoundingClientRect().right > width + 0.5 || el.scrollWidth > el.clientWidth + 1)
    .map((el) => el.tagName.toLowerCase() + '.' + el.className);
  document.getElementById('result').textContent =
    JSON.stringify({width: width, scroll: d.documentElement.scrollWidth, wide: wide});
});
</script></body></html>"""


def _export_page() -> str:
    at = datetime(2026, 1, 1, 10, tzinfo=UTC)
    url = "https://example.com/" + "very-long-path-segment-" * 20 + "?q=" + "x" * 200
    lines = (
        TranscriptLine(at, "inbound", "customer", "Ravi", "text", f"See {url}", "", "", "", "wamid.1"),
        TranscriptLine(at, "outbound", "campaign", "#7", "template", "Template " + "fee_reminder_" * 30, "failed",
                       "failed 10:00:05 (131026)", "131026 Message undeliverable", "wamid.2",
                       failure="The number is not on WhatsApp"),
        TranscriptLine(at, "outbound", "Slack note", "Asha Verma (UASHA)", "text", "n" * 300, "", "", "", "",
                       note=True, slack_user="UASHA"),
    )
    return render_html(Transcript("lucknow", "+91 522 400 0000", "919812345678", "Ravi " + "K" * 120,
                                  "Asia/Kolkata", lines, exported_at=at, exported_by="Meera"))


@pytest.fixture
async def pages() -> AsyncIterator[TestServer]:
    app = web.Application()
    wide = ("<!doctype html><html><head><meta name=\"viewport\" content=\"width=device-width\"></head>"
            "<body><div class=\"wide\" style=\"white-space:nowrap\">" + "overflowing " * 200 + "</div></body></html>")
    documents = {"export.html": _export_page(), "wide.html": wide}

    async def document(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name.startswith("measure-"):
            target = name.removeprefix("measure-")
            return web.Response(text=_MEASURE % (target, PHONE_WIDTH), content_type="text/html")
        if name not in documents:
            raise web.HTTPNotFound()
        return web.Response(text=documents[name], content_type="text/html")

    app.router.add_get("/{name}", document)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


async def measure(server: TestServer, name: str) -> dict[str, object]:
    dom = await dump_dom(str(server.make_url(f"/measure-{name}")))
    found = re.search(r'<pre id="result">(.*?)</pre>', dom, re.S)
    assert found is not None
    return dict(json.loads(html.unescape(found.group(1))))


async def test_html_export_at_phone_width_has_nothing_overflowing(pages: TestServer) -> None:
    chromium()
    wide = await measure(pages, "wide.html")  # the measurement sees overflow when there is some
    assert wide["wide"] and int(str(wide["scroll"])) > PHONE_WIDTH
    result = await measure(pages, "export.html")
    assert int(str(result["width"])) <= PHONE_WIDTH  # less a vertical scrollbar, if any
    assert result["wide"] == [] and result["scroll"] == result["width"]
