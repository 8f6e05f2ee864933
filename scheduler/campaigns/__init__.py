"""Campaigns: records, audiences, schedules, the runner that sends them and their progress in Slack."""
