"""`serve --processes N`: N processes of one role sharing one port (SO_REUSEPORT), one supervisor.

One Python process takes one core: webhook intake is CPU per request (HTTP, signature, JSON), and mirroring
is CPU per message (rendering, Slack calls, statements). The kernel spreads new connections over the N
listening sockets; each process commits its own groups, so every 200 still follows its own row, and the
background workers of several processes share their work through the database (claims, leases, fencing) and
Redis (the send throttle, the Slack pacer). The supervisor applies migrations once, starts the N children,
forwards SIGTERM/SIGINT to them, and if one dies stops the others and exits with its code (so a process
manager restarts the set as one service).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

STOP_TIMEOUT = 30.0  # seconds a child gets to finish its requests after SIGTERM


def child_args(args: argparse.Namespace, host: str, port: int, index: int) -> list[str]:
    """The command line of process `index` (0-based), of the set's role."""
    return [sys.executable, "-m", "bot", "--config", args.config, "serve", "--role", args.role, "--host", host,
            "--port", str(port), "--no-migrate", "--reuse-port", "--process-index", str(index)]


def supervise(commands: Sequence[Sequence[str]], *, poll: float = 0.2) -> int:
    """Run the children until a signal asks them to stop (exit 0) or one of them exits (its code, or 1)."""
    children = [subprocess.Popen(list(cmd)) for cmd in commands]
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stopping:
            dead = [c for c in children if c.poll() is not None]
            if dead:
                code = dead[0].returncode
                print(f"serve: process {dead[0].pid} exited with {code}; stopping the others",
                      file=sys.stderr)
                stop(signal.SIGTERM, None)
                _wait(children)
                return code or 1
            time.sleep(poll)
        _wait(children)
        return 0
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _wait(children: Sequence[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + STOP_TIMEOUT
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def default_processes() -> int:
    """One process per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
