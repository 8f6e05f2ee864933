"""A local stand-in for Slack's Web API: a real HTTP server on loopback speaking Slack's conventions.

Point slack_sdk at it with `AsyncWebClient(token=..., base_url=standin.api_url)`. It keeps channels,
threads, files and views in memory (`state`), answers each API family in its own module, records every
call, and can rate-limit (429 + Retry-After) or go down on demand (`faults`). It can also play Slack's side
towards our server: signed events, slash commands and interactions (`towards_app`). Used by the test suite
and by `python -m bot demo`.
"""

from bot.standins.slack.faults import BROKEN_ANSWERS
from bot.standins.slack.server import SlackStandin
from bot.standins.slack.state import DEFAULT_SCOPES, SlackWorkspace
from bot.standins.slack.wire import MAX_BLOCKS, MAX_SECTION_TEXT, MAX_TEXT, SlackCall, SlackError

__all__ = [
    "BROKEN_ANSWERS",
    "DEFAULT_SCOPES",
    "MAX_BLOCKS",
    "MAX_SECTION_TEXT",
    "MAX_TEXT",
    "SlackCall",
    "SlackError",
    "SlackStandin",
    "SlackWorkspace",
]
