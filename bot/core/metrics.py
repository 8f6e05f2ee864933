"""Prometheus metrics, one registry per application so that several apps can live in one process."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.webhooks_received = Counter("wabridge_webhooks_received", "Meta deliveries stored",
                                         ["event_type"], registry=r)
        self.webhooks_rejected = Counter("wabridge_webhooks_rejected", "Meta deliveries refused",
                                         ["reason"], registry=r)
        self.webhooks_processed = Counter("wabridge_webhooks_processed", "Meta deliveries processed",
                                          ["event_type", "outcome"], registry=r)
        self.events_applied = Counter("wabridge_events_applied", "Typed webhook events applied",
                                      ["kind"], registry=r)
        self.processing_lag = Gauge("wabridge_webhook_processing_lag_seconds",
                                    "Age of the oldest unprocessed delivery", registry=r)
        self.ack_latency = Histogram("wabridge_webhook_ack_seconds", "Time to store and acknowledge",
                                     registry=r, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                          0.25, 0.5, 1.0))
        self.db_statements = Counter("wabridge_db_statements", "SQL statements sent to the database "
                                     "(an executemany counts once)", registry=r)
        self.slack_posts = Counter("wabridge_slack_posts", "Slack outbox deliveries", ["kind", "outcome"],
                                   registry=r)
        self.slack_backlog = Gauge("wabridge_slack_backlog_items", "Slack outbox items owed per Slack channel",
                                   ["channel"], registry=r)
        # Many workspaces: the WORKSPACE_LABELS workspaces owed most, the rest summed as workspace="other".
        self.workspace_backlog = Gauge("wabridge_workspace_slack_posts_owed",
                                       "Slack posts owed per workspace (the largest ones; the rest as other)",
                                       ["workspace"], registry=r)
        self.workspaces = Gauge("wabridge_workspaces", "Installed Slack workspaces by state", ["state"], registry=r)
        self.slack_backlog_wait = Gauge("wabridge_slack_backlog_wait_seconds",
                                        "Least time until a Slack channel's backlog is posted, at Slack's rate",
                                        ["channel"], registry=r)
        self.retention_rows = Counter("wabridge_retention_rows", "Rows the retention pass deleted (media: cleared)",
                                      ["table"], registry=r)
        self.listener_errors = Counter("wabridge_slack_listener_errors",
                                       "Exceptions raised in Slack listeners (each logged with its traceback)",
                                       ["kind"], registry=r)
        self.whatsapp_sends = Counter("wabridge_whatsapp_sends", "Messages sent through the Cloud API",
                                      ["channel", "source", "outcome"], registry=r)
        self.inbox_changes = Counter("wabridge_inbox_changes", "Inbox changes made from Slack (take, assign, "
                                     "resolve, reopen; by this process)", ["action"], registry=r)
        self.time_to_resolve = Histogram("wabridge_time_to_resolve_seconds", "From a conversation's opening (or "
                                         "its last reopening) to its resolve from Slack", registry=r,
                                         buckets=(60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 86400,
                                                  3 * 86400, 7 * 86400))
        # Read from the database at each scrape, so every process reports the cluster's count.
        self.throughput_errors = Gauge("wabridge_meta_throughput_errors_24h",
                                       "Sends Meta refused with 130429 or 131056 in the last 24 hours",
                                       ["channel", "code"], registry=r)
