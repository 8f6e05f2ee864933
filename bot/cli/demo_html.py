"""The demo's Slack channel as an HTML page drawn like Slack's own (pure): threads expanded, mrkdwn and emoji
as Slack shows them, reactions as chips, buttons as buttons. `docs/demo_picture.py` captures it in headless
Chromium for the README."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from bot.cli import slack_view as view
from bot.standins.slack import SlackStandin

_CSS = """
body { margin: 0; background: #fff; color: #1d1c1d; font: 15px/1.46 -apple-system, "Segoe UI", "Noto Sans",
       "Helvetica Neue", Arial, "Noto Color Emoji", sans-serif; }
header { padding: 14px 20px; border-bottom: 1px solid #ddd; font-weight: 900; font-size: 18px; }
.msg { display: flex; gap: 8px; padding: 8px 20px; }
.reply { padding-left: 68px; }
.avatar { width: 36px; height: 36px; border-radius: 6px; flex: none; display: flex; align-items: center;
          justify-content: center; color: #fff; font-weight: 700; font-size: 16px; }
.reply .avatar { width: 28px; height: 28px; font-size: 13px; }
.who { font-weight: 900; } .time { color: #616061; font-size: 12px; margin-left: 6px; }
.app { background: #e8e8e8; color: #616061; font-size: 10px; font-weight: 700; padding: 1px 3px;
       border-radius: 2px; margin-left: 4px; }
.text { white-space: pre-wrap; word-wrap: break-word; }
.context { color: #616061; font-size: 13px; white-space: pre-wrap; }
blockquote { margin: 2px 0; padding-left: 10px; border-left: 4px solid #ddd; }
code { font: 12px Menlo, Consolas, monospace; background: #f8f8f8; border: 1px solid #e8e8e8; padding: 1px 3px;
       border-radius: 3px; color: #e01e5a; }
a { color: #1264a3; text-decoration: none; }
.reactions { margin-top: 4px; display: flex; gap: 4px; }
.chip { border: 1px solid #e8e8e8; background: #f8f8f8; border-radius: 12px; padding: 0 7px; font-size: 13px; }
.button { display: inline-block; margin-top: 6px; border: 1px solid #bbb; border-radius: 4px; padding: 2px 12px;
          font-weight: 700; font-size: 13px; }
.thread { border-left: 2px solid #e8e8e8; margin-left: 38px; }
.legend { color: #616061; font-size: 13px; padding: 10px 20px; border-top: 1px solid #eee; }
"""

_COLOURS = ("#2eb67d", "#36c5f0", "#ecb22e", "#e01e5a", "#4a154b", "#1264a3")


def _avatar(name: str) -> str:
    letter = next((c for c in name if c.isalnum()), "?").upper()
    colour = _COLOURS[sum(map(ord, name)) % len(_COLOURS)]
    return f'<div class="avatar" style="background:{colour}">{html.escape(letter)}</div>'


def _message(message: dict[str, Any], who: str, names: view.Names, *, reply: bool) -> str:
    body: list[str] = []
    for block in message.get("blocks") or [{"type": "section", "text": {"text": message.get("text", "")}}]:
        kind = block.get("type")
        if kind in ("section", "header"):
            for text in view.message_mrkdwn({"blocks": [block]}):
                body.append(f'<div class="text">{view.mrkdwn(text, names, view.HTML)}</div>')
        elif kind == "context":
            for text in view.message_mrkdwn({"blocks": [block]}):
                body.append(f'<div class="context">{view.mrkdwn(text, names, view.HTML)}</div>')
        elif kind == "actions":
            labels = view.buttons({"blocks": [block]})
            body.extend(f'<span class="button">{html.escape(label)}</span> ' for label in labels)
    chips = "".join(f'<span class="chip">{html.escape(r)} 1</span>' for r in view.reactions(message))
    app = '<span class="app">APP</span>' if message.get("bot_id") or message.get("username") else ""
    return (f'<div class="msg{" reply" if reply else ""}">{_avatar(who)}<div><div><span class="who">'
            f'{html.escape(who)}</span>{app}</div>'
            f'{"".join(body)}{f"<div class=reactions>{chips}</div>" if chips else ""}</div></div>')


def channel_page(slack: SlackStandin, channel: str, title: str,
                 author: Callable[[SlackStandin, dict[str, Any]], str]) -> str:
    """A self-contained HTML page of the channel's conversation threads, each with its replies."""
    users = {uid: str(u.get("real_name") or u.get("name") or uid) for uid, u in slack.users.items()}
    names = view.Names(users, {})
    parts: list[str] = []
    used: list[str] = []
    for top in slack.messages(channel, top_level_only=True):
        if ":speech_balloon:" not in "".join(view.message_mrkdwn(top)):
            continue  # conversation threads only: the campaign's progress message has a thread of its own
        parts.append(_message(top, author(slack, top), names, reply=False))
        replies = slack.thread(channel, top["ts"])[1:]
        parts.append('<div class="thread">' + "".join(
            _message(r, author(slack, r), names, reply=True) for r in replies) + "</div>")
        used += [r["name"] for m in [top, *replies] for r in m.get("reactions", [])]
    legend = view.legend(used)
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>#"
            f"{html.escape(title)}</title><style>{_CSS}</style></head><body><header>#{html.escape(title)}</header>"
            + "".join(parts)
            + (f'<div class="legend">Reactions: {html.escape(legend)}</div>' if legend else "")
            + "</body></html>\n")
