"""Tell a service that could not be reached from one that answered "no" (pure).

`doctor` must not tell an operator to generate a new token when the network is down: a refused connection,
a failed DNS lookup, a timeout or an answer that did not come from the service (a proxy's error page) say
nothing about the token or the webhook subscription.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
from slack_sdk.errors import SlackApiError

from bot.meta.errors import GraphError
from bot.slack.errors import http_status, slack_error_code


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        yield node
        node = node.__cause__ or node.__context__


def _transport_cause(exc: BaseException) -> str | None:
    """What went wrong on the way, when exc (or what caused it) is a failure to reach the other end."""
    causes = list(_chain(exc))
    if any(isinstance(e, socket.gaierror) for e in causes):
        return "the host name could not be resolved (DNS)"
    if any(isinstance(e, ConnectionRefusedError) for e in causes):
        return "the connection was refused"
    if any(isinstance(e, TimeoutError | httpx.TimeoutException) for e in causes):
        return "no answer in time (timeout)"
    if any(isinstance(e, OSError | httpx.TransportError) for e in causes):
        return f"network error ({type(causes[-1]).__name__}: {causes[-1]})"[:200]
    name = type(exc).__module__
    if name.startswith("aiohttp") and "Connect" in type(exc).__name__:
        return f"network error ({type(exc).__name__})"
    return None


def network_cause(exc: BaseException) -> str | None:
    """Why the service was not reached, or None when it answered (its answer is then about the request)."""
    if isinstance(exc, GraphError):
        if exc.http_status is None:
            return _transport_cause(exc) or exc.message or "no answer"
        if exc.code is None and exc.http_status >= 500:
            return f"HTTP {exc.http_status} without Meta's error body (Meta down, or a proxy on the way)"
        return None
    if isinstance(exc, SlackApiError):
        status = http_status(exc)
        if slack_error_code(exc) is None and status is not None and status != 200:
            return f"HTTP {status} without Slack's error body (a proxy on the way, or slack.api_url is wrong)"
        return None
    return _transport_cause(exc)


def network_fix(url: str) -> str:
    """The fix for an unreachable service: the network, not a token or a subscription."""
    host = urlsplit(url).hostname or url
    return (f"the network, not the token or the subscription: check that this machine reaches {host} "
            "(DNS, firewall, proxy settings such as HTTPS_PROXY), then run `wabridge doctor` again")
