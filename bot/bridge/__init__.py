"""The WhatsApp <-> Slack conversation bridge: storing webhook deliveries, applying them, mirroring threads."""
