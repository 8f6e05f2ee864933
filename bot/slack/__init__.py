"""The Slack side of the bridge: rendering, the ordered outbox, media transfer and the bolt app."""
