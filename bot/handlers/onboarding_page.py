"""The /onboard page `serve` offers: Meta's embedded signup for WhatsApp Business App numbers (Coexistence),
reachable only through a one-time link, and the endpoint the page posts the signup result to."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import json
import logging
from typing import Any

from aiohttp import web

from bot.core import json_limits
from bot.handlers import appkeys
from bot.onboarding import flow
from bot.onboarding.inviter import inviter_name
from bot.onboarding.links import LinkState, check_link, claim_link, finish_link
from bot.slack.outbox import wake_outbox

log = logging.getLogger(__name__)

PAGE_PATH = "/onboard"
COMPLETE_PATH = "/onboard/complete"
# The token is in the page's URL: never send it on to Facebook's scripts as a referrer, never cache the page.
_HEADERS = {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store", "X-Frame-Options": "DENY",
            "X-Content-Type-Options": "nosniff"}
PRODUCT = "Wabridge"
SDK_URL = "https://connect.facebook.net/en_US/sdk.js"
SDK_TIMEOUT_MS = 15000  # after this long without Facebook's SDK, say what to do instead of waiting
_LINK_PROBLEMS = {
    LinkState.UNKNOWN: "This link is not valid.",
    LinkState.EXPIRED: "This link has expired.",
    LinkState.USED: "This link was already used to connect a number.",
}
ASK_AGAIN = ("Please ask the person who sent it to you for a new link. Links work once, for a limited "
             "time, to keep your business account safe.")
SDK_FAILED = ("Facebook's sign-in did not load, so the button cannot work yet. It is often blocked by an ad "
              "or privacy blocker, a company network, or a slow connection. Turn the blocker off for this page, "
              "or try another browser or network (your phone's mobile data, for example), then reload this page. "
              "If it still does not load, tell the person who sent you this link.")
CANCELLED = "You closed the Facebook window before the end. Nothing was changed. Press the button to try again."

# White on #0b5ed7 is 5.8:1 and on #6b6b6b 5.3:1 (WCAG AA asks 4.5:1).
_STYLE = """body{font-family:system-ui,sans-serif;max-width:40em;margin:2em auto;padding:0 1em;color:#222;
line-height:1.5}.product{color:#4a4a4a;font-size:.95em;margin:0}
button{font-size:1.1em;padding:.7em 1.4em;border:0;border-radius:6px;background:#0b5ed7;color:#fff;cursor:pointer}
button:focus-visible{outline:3px solid #222;outline-offset:2px}
button[disabled]{background:#6b6b6b;cursor:default}.ok{color:#137333}.bad{color:#b3261e}li{margin:.4em 0}"""

_SCRIPT = """
const cfg = JSON.parse(document.getElementById('cfg').textContent);
const status = document.getElementById('status');
const button = document.getElementById('connect');
let signup = {};
function say(text, cls) { status.className = cls || ''; status.textContent = text; }
window.addEventListener('message', (event) => {
  if (!/^https:\\/\\/([a-z0-9-]+\\.)*facebook\\.com$/.test(event.origin)) return;
  let data;
  try { data = typeof event.data === 'string' ? JSON.parse(event.data) : event.data; } catch (e) { return; }
  if (!data || data.type !== 'WA_EMBEDDED_SIGNUP') return;
  if (data.event === 'FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING' || data.event === 'FINISH') {
    signup = data.data || {};
  } else if (data.event === 'CANCEL') {
    say(cfg.cancelled, 'bad');
  } else if (data.event === 'ERROR') {
    const why = (data.data || {}).error_message || 'unknown';
    say('Facebook reported a problem: ' + why + '. Please try again.', 'bad');
  }
});
let sdkReady = false;
function sdkFailed() {
  if (sdkReady) return;
  button.disabled = true;
  say(cfg.sdk_failed, 'bad');
}
window.fbAsyncInit = function () {
  FB.init({appId: cfg.app_id, autoLogAppEvents: true, xfbml: false, version: cfg.version});
  sdkReady = true;
  button.disabled = false;
  if (status.textContent === cfg.sdk_failed) say('');
};
// Loaded from here rather than a tag so that a blocked or failed download is noticed (no inline handlers:
// the page's Content-Security-Policy allows only this script).
const sdk = document.createElement('script');
sdk.async = true; sdk.defer = true; sdk.crossOrigin = 'anonymous'; sdk.src = cfg.sdk;
sdk.addEventListener('error', sdkFailed);
document.head.appendChild(sdk);
setTimeout(sdkFailed, cfg.sdk_timeout_ms);
function finish(code) {
  say('Connecting your number…');
  fetch(cfg.complete, {method: 'POST', headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({token: cfg.token, code: code, waba_id: signup.waba_id,
                          phone_number_id: signup.phone_number_id})})
    .then((r) => r.json())
    .then((result) => {
      const list = document.getElementById('steps');
      list.textContent = '';
      (result.steps || []).forEach((s) => {
        const li = document.createElement('li');
        li.className = s.ok ? 'ok' : 'bad';
        li.textContent = (s.ok ? '✓ ' : '✗ ') + s.message;
        list.appendChild(li);
      });
      say(result.message, result.connected ? 'ok' : 'bad');
      button.disabled = !result.retry;
    })
    .catch(() => { say('We could not reach Wabridge. Check your internet connection and try again.', 'bad');
                   button.disabled = false; });
}
button.addEventListener('click', () => {
  button.disabled = true;
  say('Follow the steps in the Facebook window…');
  FB.login((response) => {
    const code = response && response.authResponse && response.authResponse.code;
    if (!code) { say(cfg.cancelled, 'bad');
                 button.disabled = false; return; }
    // The session message with the account ids can arrive just after the login callback.
    let waited = 0;
    (function wait() {
      if (signup.waba_id || waited >= 5000) { finish(code); return; }
      waited += 100; setTimeout(wait, 100);
    })();
  }, {config_id: cfg.config_id, response_type: 'code', override_default_response_type: true,
      extras: {setup: {}, featureType: 'whatsapp_business_app_onboarding', sessionInfoVersion: '3'}});
});
"""


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


# Only this page's own script and style, and Facebook's SDK with the frames and calls it makes.
CSP = (f"default-src 'none'; script-src {_sha256(_SCRIPT)} https://connect.facebook.net; "
       # Facebook's SDK adds its own stylesheet at run time; styles cannot run code, so inline ones may load.
       "style-src 'self' 'unsafe-inline'; img-src 'self' data: https://*.facebook.com https://*.fbcdn.net; "
       "connect-src 'self' https://*.facebook.com https://*.facebook.net; frame-src https://*.facebook.com; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'; object-src 'none'")


def _page(title: str, body: str, *, status: int = 200) -> web.Response:
    doc = (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
           f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{html.escape(title)}"
           f" · {PRODUCT}</title><style>{_STYLE}</style></head><body>\n{body}\n</body></html>\n")
    return web.Response(text=doc, content_type="text/html", status=status,
                        headers={**_HEADERS, "Content-Security-Policy": CSP})


def invitation(inviter: str | None) -> str:
    """Who asks the owner to connect, in one sentence (plain text)."""
    who = inviter or "Your team"
    return (f"{who} invited you to connect your WhatsApp Business number to Slack with {PRODUCT}, so that "
            "your team can see and answer your WhatsApp chats there.")


def signup_page(config: dict[str, Any], inviter: str | None = None) -> str:
    """The page's body: who asks and why, what will happen, the button, and the script that loads Meta's SDK
    (its config passed as JSON data)."""
    data = json.dumps({**config, "sdk": SDK_URL, "sdk_timeout_ms": SDK_TIMEOUT_MS, "sdk_failed": SDK_FAILED,
                       "cancelled": CANCELLED}).replace("<", "\\u003c")
    return (
        f"<p class=\"product\">{PRODUCT}</p>\n"
        "<h1>Connect your WhatsApp Business number</h1>\n"
        f"<p>{html.escape(invitation(inviter))} You keep using the WhatsApp Business "
        "app on your phone as before. Facebook asks you to log in because it runs WhatsApp for businesses.</p>\n"
        "<ol><li>Press the button and log in with Facebook.</li>"
        "<li>Choose <b>Connect your existing WhatsApp Business app</b> and enter your number.</li>"
        "<li>On your phone, open the message from Facebook, tap <b>Connect</b>, and allow sharing your chat "
        "history if you want your earlier chats in Slack.</li></ol>\n"
        "<p><button id=\"connect\" disabled>Connect WhatsApp</button></p>\n"
        "<p id=\"status\" role=\"status\" aria-live=\"polite\"></p><ul id=\"steps\"></ul>\n"
        "<noscript><p class=\"bad\">This page needs JavaScript to talk to Facebook. Please turn it on and "
        "reload.</p></noscript>\n"
        f"<script id=\"cfg\" type=\"application/json\">{data}</script>\n"
        f"<script>{_SCRIPT}</script>"
    )


async def show_page(request: web.Request) -> web.Response:
    """GET /onboard?t=TOKEN: the signup page, or why the link does not work."""
    settings = request.app[appkeys.SETTINGS]
    token = request.query.get("t", "")
    async with request.app[appkeys.SESSIONS]() as session:
        state, link = await check_link(session, token) if token else (LinkState.UNKNOWN, None)
    if link is None:
        return _page("Link not valid", f"<p class=\"product\">{PRODUCT}</p>"
                     f"<h1>{html.escape(_LINK_PROBLEMS[state])}</h1><p>{html.escape(ASK_AGAIN)}</p>",
                     status=404 if state is LinkState.UNKNOWN else 410)
    meta = settings.meta
    if not meta.app_id or not meta.embedded_signup_config_id or not meta.token_key:
        log.error("/onboard cannot run: set meta.app_id, meta.embedded_signup_config_id and meta.token_key")
        return _page("Not ready", "<h1>Connecting numbers is not set up yet.</h1><p>Please tell the person who "
                     "sent you this link: Wabridge needs its Facebook app settings first.</p>", status=503)
    config = {"app_id": meta.app_id, "config_id": meta.embedded_signup_config_id, "version": meta.api_version,
              "token": token, "complete": COMPLETE_PATH}
    inviter = await inviter_name(request.app[appkeys.DEPS].slack, link.requested_by)
    return _page("Connect your WhatsApp Business number", signup_page(config, inviter))


def _answer(outcome: flow.Outcome) -> dict[str, Any]:
    if outcome.ok:
        message = "All done. Your WhatsApp chats will now appear in Slack. You can close this page."
    elif outcome.connected:
        message = "Your number is connected. Some extras did not work (see above); the team has been told."
    elif outcome.stored:
        message = "Your number is connected, but not everything worked (see above); the team has been told."
    else:
        message = "Your number is not connected yet. Please press the button to try again."
    return {"connected": outcome.connected, "message": message, "retry": not outcome.stored,
            "steps": [{"step": s.name, "ok": s.ok, "message": s.message} for s in outcome.steps]}


async def complete(request: web.Request) -> web.Response:
    """POST /onboard/complete {token, code, waba_id, phone_number_id}: run the onboarding, say how it went."""
    try:
        data = json_limits.loads((await request.read()).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        data = None
    token = str(data.get("token") or "") if isinstance(data, dict) else ""
    try:
        signup = flow.parse_signup(data)
    except flow.InvalidSignup as exc:
        return web.json_response({"connected": False, "retry": True, "steps": [],
                                  "message": f"{exc}. Please press the button and finish every step in the "
                                             "Facebook window."}, status=400, headers=_HEADERS)
    deps = request.app[appkeys.DEPS]
    state, link = await claim_link(deps.sessions, token)
    if link is None:
        return web.json_response({"connected": False, "retry": False, "steps": [],
                                  "message": f"{_LINK_PROBLEMS[state]} {ASK_AGAIN}"}, status=410, headers=_HEADERS)
    try:
        # Shielded: a closed browser tab must not leave a half-done onboarding behind.
        outcome = await asyncio.shield(flow.onboard(deps, link, signup))
    except Exception:
        log.exception("onboarding failed unexpectedly")
        await finish_link(deps.sessions, link, "error", release=True)
        return web.json_response({"connected": False, "retry": True, "steps": [],
                                  "message": "Something went wrong on our side. Please try again in a minute."},
                                 status=500, headers=_HEADERS)
    summary = "; ".join(f"{s.name}: {'ok' if s.ok else s.detail or 'failed'}" for s in outcome.steps)
    await finish_link(deps.sessions, link, summary, release=not outcome.stored)
    await flow.owe_report(deps, outcome, link)
    _wake(request.app)
    for step in outcome.steps:
        if not step.ok:
            log.warning("onboarding step %s failed: %s", step.name, step.detail)
    return web.json_response(_answer(outcome), headers=_HEADERS)


def _wake(app: web.Application) -> None:
    wake_outbox(app[appkeys.DEPS])
