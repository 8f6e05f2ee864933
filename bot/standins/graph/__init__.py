"""A local stand-in for Meta's Graph API (WhatsApp Cloud API): a real HTTP server on loopback.

It answers the calls the bridge makes with Meta's documented shapes and error bodies (`wire`), keeps what
Meta knows in one object (`state`), answers each endpoint family in its own module, enforces a per-number
messages-per-second cap over any sliding one-second window and lets tests inject errors (`faults`).
Used by the test suite and by `python -m bot demo`.
"""

from bot.standins.graph.faults import GraphFaults
from bot.standins.graph.messages import MEDIA_KINDS, MESSAGE_TYPES
from bot.standins.graph.numbers import DEFAULT_PHONE_FIELDS, SYNC_TYPES
from bot.standins.graph.server import GraphStandin
from bot.standins.graph.state import (
    DEFAULT_APP_FIELDS,
    WILDCARD,
    GraphAccount,
    PhoneNumber,
    SendRecord,
    StoredMedia,
)
from bot.standins.graph.templates import TEMPLATE_CATEGORIES
from bot.standins.graph.wire import ERROR_TITLES, graph_error

__all__ = [
    "DEFAULT_APP_FIELDS",
    "DEFAULT_PHONE_FIELDS",
    "ERROR_TITLES",
    "MEDIA_KINDS",
    "MESSAGE_TYPES",
    "SYNC_TYPES",
    "TEMPLATE_CATEGORIES",
    "WILDCARD",
    "GraphAccount",
    "GraphFaults",
    "GraphStandin",
    "PhoneNumber",
    "SendRecord",
    "StoredMedia",
    "graph_error",
]
