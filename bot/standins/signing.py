"""Request signatures as Meta and Slack compute them, for delivering webhooks/events to our own server."""

from __future__ import annotations

import hashlib
import hmac
import time


def sign_meta(app_secret: str, body: bytes) -> str:
    """Value of `X-Hub-Signature-256` for a webhook body: `sha256=<hex HMAC-SHA256(app_secret, body)>`."""
    digest = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def sign_slack(signing_secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Headers Slack sends with a request: `X-Slack-Signature` (v0) and `X-Slack-Request-Timestamp`."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    base = b"v0:" + str(ts).encode() + b":" + body
    digest = hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Signature": f"v0={digest}", "X-Slack-Request-Timestamp": str(ts)}
