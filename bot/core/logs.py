"""One-line structured logs: `time level logger message key=value …`."""

from __future__ import annotations

import logging
import sys

SLACK_SDK_CLIENT_LOGGERS = ("slack_sdk.web.async_base_client", "slack_sdk.web.base_client")


class KeyValueFormatter(logging.Formatter):
    """Appends the `extra={...}` fields of a record as key=value pairs, so one line says everything."""

    _standard = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = {k: v for k, v in record.__dict__.items() if k not in self._standard}
        if not extras:
            return base
        return base + " " + " ".join(f"{k}={v}" for k, v in sorted(extras.items()))


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # httpx logs every request at INFO: one line per WhatsApp send drowns the useful lines (and costs CPU).
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # APScheduler logs two INFO lines per job run (the campaign poller runs every second) and its own start,
    # jobs and stop: serve's start-up and shutdown lines say what matters.
    logging.getLogger("apscheduler").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    # slack_sdk's clients test their own logger's `level`, not the effective one: left unset (NOTSET is 0) it
    # passes `level <= DEBUG`, and every Web API call formats two debug lines (parameters, headers, the whole
    # answer) that are then dropped, about a tenth of a Slack call's CPU.
    for name in SLACK_SDK_CLIENT_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if level == "DEBUG" else logging.INFO)
