"""Where the Slack bot token may go: Slack's file origin, the exact origin of `slack.api_url`, configured extras.

Slack documents that a remote file's `url_private` can point at any host; sending the bot token there would
hand it to whoever runs that host. Pure functions only; `bot/slack/file_fetch.py` applies them to requests.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

SLACK_FILE_ORIGIN = "https://files.slack.com"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str | None:
    """`scheme://host[:port]` of an absolute http(s) URL, lower-cased, default port dropped; None otherwise."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host or parts.username is not None or parts.password is not None:
        return None
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def allowed_origins(api_url: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The origins that may receive the bot token."""
    found = {SLACK_FILE_ORIGIN}
    for url in (api_url, *extra):
        o = origin_of(url)
        if o is not None:
            found.add(o)
    return frozenset(found)


def is_allowed(url: str, origins: frozenset[str]) -> bool:
    """True when url's origin is exactly one of origins (no suffix or sub-domain matching)."""
    o = origin_of(url)
    return o is not None and o in origins
