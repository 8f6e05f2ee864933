"""Measure the cost of turning a staff reply's Slack markup into WhatsApp messages (no I/O, one process).

Run from the repository root:

    .venv/bin/python -m bench.reply_conversion                 # 2,000 rounds of each reply
    .venv/bin/python -m bench.reply_conversion --rounds 20     # the smallest useful run

Each row is one kind of reply: the converter (`bot.slack.to_whatsapp`, emoji lookups included) and the cut
into WhatsApp messages (`bot.slack.reply_parts`), timed per reply. The baseline is the converter this one
replaced (links and entities only, `bot.slack.render.slack_to_whatsapp`) on the same text: the difference
is what emoji, names, quotes and lists cost on the reply path, next to a Graph call of tens of ms.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial

from bench._common import percentile, table
from bot.slack import render
from bot.slack.reply_parts import split_message
from bot.slack.to_whatsapp import Names, to_whatsapp

NAMES = Names(users={"U0STAFF1": "Asha"}, groups={"S0DESK": "front-desk"}, channels={"C0FEES": "fees"})

REPLIES: dict[str, str] = {
    "short": "Thanks :+1: see you Monday",
    "issue example": ("Hi <@U0STAFF1>, see *bold* _it_ ~strike~ `code` :smile: :+1::skin-tone-3: "
                      "<https://example.com/fees|fee page> &amp; &lt;3"),
    "list + quote": "&gt; Is the batch full?\n• Monday :white_check_mark:\n• Tuesday :x:\n    ◦ waitlist",
    "long, emoji-heavy (12k chars)": "\n\n".join(
        "The batch starts on Monday :calendar: :tada: ask <!subteam^S0DESK> " * 40 for _ in range(4)),
}

TARGET_US = 1000.0  # a reply should cost under 1 ms to convert: nothing next to the Graph call


def _convert(text: str) -> list[str]:
    return split_message(to_whatsapp(text, NAMES).text)


def _baseline(text: str) -> list[str]:
    return render.split_for_whatsapp(render.slack_to_whatsapp(text))


def _time(fn: Callable[[], object], rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e6)
    return samples


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2000, help="conversions of each reply (default 2000)")
    args = parser.parse_args(argv)
    rows = []
    missed = []
    for name, text in REPLIES.items():
        to_whatsapp(text, NAMES)  # the emoji package loads its tables on first use
        ours = _time(partial(_convert, text), args.rounds)
        base = _time(partial(_baseline, text), args.rounds)
        p50 = percentile(ours, 50)
        rows.append({"reply": name, "chars": len(text), "messages": len(_convert(text)),
                     "p50 µs": p50, "p99 µs": percentile(ours, 99), "baseline p50 µs": percentile(base, 50)})
        if p50 > TARGET_US:
            missed.append(name)
    print(table(rows, f"Slack reply → WhatsApp messages, {args.rounds} rounds each"))
    print(f"target: p50 under {TARGET_US:,.0f} µs per reply: " + (f"missed for {', '.join(missed)}" if missed
                                                                  else "met"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
