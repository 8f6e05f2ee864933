"""Wiring: the aiohttp application factory and the components `serve` mounts, by process role."""
