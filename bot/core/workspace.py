"""Which Slack workspace a row or a request belongs to: one key per workspace, one rule for making it.

A workspace key is the Slack team id (T…), or the enterprise id (E…) of an Enterprise Grid org-wide install,
whose channels span the org's workspaces. Single-workspace mode (`slack.bot_token`, no `slack.client_id`)
keeps every row under the sentinel key `default`, which stands for "the workspace of slack.bot_token": the
database needs no network call to be upgraded or read, and the key never changes while the mode does not.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

log = logging.getLogger(__name__)

DEFAULT_WORKSPACE = "default"

# Slack's team ids start with T, enterprise ids with E; both are upper-case letters and digits.
WORKSPACE_ID = re.compile(r"^[TE][A-Z0-9]{2,31}$")


def workspace_key(team_id: str | None, enterprise_id: str | None, is_enterprise_install: bool = False) -> str:
    """The key a Slack installation or payload is filed under: the org for an org-wide install, else the team."""
    if is_enterprise_install and enterprise_id:
        return enterprise_id
    if team_id:
        return team_id
    if enterprise_id:
        return enterprise_id
    raise ValueError("neither a team id nor an enterprise id")


def is_workspace_id(value: str) -> bool:
    """True for a Slack team (T…) or enterprise (E…) id."""
    return bool(WORKSPACE_ID.fullmatch(value))


def as_setting(key: str) -> str:
    """A stored workspace key as `channels[].slack_team` writes it: empty for single-workspace mode's sentinel."""
    return "" if key == DEFAULT_WORKSPACE else key


@dataclass(frozen=True)
class RequestScope:
    """The workspace a Slack request came from, and its bot token (None in single-workspace mode)."""

    workspace: str
    token: str | None = None


# Set for the length of one Slack request (and the tasks it starts): what every read and call is scoped by.
_SCOPE: ContextVar[RequestScope | None] = ContextVar("wabridge_request_scope", default=None)


def request_scope() -> RequestScope | None:
    """The current Slack request's workspace; None outside one (workers, commands, webhooks)."""
    return _SCOPE.get()


def enter_scope(scope: RequestScope | None) -> None:
    """Scope the rest of this task (and tasks it starts) to a request's workspace."""
    _SCOPE.set(scope)


def in_scope(workspace: str, what: str = "") -> bool:
    """Whether a row of `workspace` may be seen by the current request (always, outside a request); a refusal
    is logged, naming `what` was asked for (e.g. "campaign 7")."""
    scope = _SCOPE.get()
    if scope is None or scope.workspace == workspace:
        return True
    log.warning("Slack request from workspace %s names %s of workspace %s: refused", scope.workspace,
                what or "a row", workspace)
    return False


@contextmanager
def scoped(scope: RequestScope) -> Iterator[None]:
    """Work done outside a Slack request on one workspace's behalf (a Home tab refresh), scoped like one."""
    token = _SCOPE.set(scope)
    try:
        yield
    finally:
        _SCOPE.reset(token)
