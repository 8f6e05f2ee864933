"""Local stand-ins for Meta's Graph API and Slack's Web API: real HTTP servers on loopback.

The test suite and the `demo` command run the whole bridge against these instead of the real services.
"""

from bot.standins.graph import GraphStandin, SendRecord
from bot.standins.signing import sign_meta, sign_slack
from bot.standins.slack import SlackCall, SlackStandin

__all__ = ["GraphStandin", "SendRecord", "SlackCall", "SlackStandin", "sign_meta", "sign_slack"]
