"""The floor every other layer stands on: configuration, logging, metrics, and pure time rules."""
